//! A camera's commits: store the ready events with the camera's new watermark, then delete from
//! Redis exactly the entries they consumed (and those stored by an earlier pass), both fenced by
//! the camera's lease.

use std::collections::VecDeque;
use std::mem;

use ferry_core::checkpoint::StoreError;
use ferry_core::jobs::tier::{
    CameraState, EntryId, EventStore, OpenEventState, TierEvent, store::Fence,
};

use super::CameraOutcome;
use crate::jobs::tier::metrics::TierMetric;
use crate::jobs::tier::{TierContext, TierError};
use crate::runtime::{LeaseGuard, failpoint, pausepoint};
use crate::store::AnyStore;

/// Most events a dry run returns per camera.
const MAX_PREVIEW_EVENTS: usize = 1000;

/// Stale entries (stored already) that make a commit worth it even with no event ready.
const MAX_PENDING_STALE: usize = 10_000;

/// What a camera's drain keeps between commits.
pub(super) struct PendingCommit<'a> {
    ctx: &'a TierContext,
    camera: &'a str,
    dry_run: bool,
    /// The camera's run lease (none in a dry run).
    lease: Option<&'a LeaseGuard<AnyStore>>,
    /// Its fencing token, checked by the store commit and the Redis delete (none when the lease
    /// store does not fence).
    fence: Option<Fence>,
    /// Last entry stored in an event.
    watermark: Option<EntryId>,
    /// Entries grouped but not yet in a stored event, oldest first.
    unconsumed: VecDeque<EntryId>,
    /// Entries at or before the stored watermark: stored already, to delete.
    stale: Vec<EntryId>,
    /// Events ready to store.
    ready: Vec<TierEvent>,
}

impl<'a> PendingCommit<'a> {
    /// Nothing pending yet for `camera`, whose events are stored up to `watermark`.
    pub(super) fn new(
        ctx: &'a TierContext,
        camera: &'a str,
        dry_run: bool,
        lease: Option<&'a LeaseGuard<AnyStore>>,
        watermark: Option<EntryId>,
    ) -> Self {
        PendingCommit {
            ctx,
            camera,
            dry_run,
            lease,
            fence: lease.and_then(|l| Fence::of(l.lease().scope.clone(), l.lease().token)),
            watermark,
            unconsumed: VecDeque::new(),
            stale: Vec::new(),
            ready: Vec::new(),
        }
    }

    /// Whether `entry` is at or before the stored watermark (an earlier pass stored it).
    pub(super) fn is_stored(&self, entry: EntryId) -> bool {
        self.watermark.is_some_and(|w| entry <= w)
    }

    /// Notes an entry stored already: deleted by the next commit.
    pub(super) fn push_stale(&mut self, entry: EntryId) {
        self.stale.push(entry);
    }

    /// Notes an entry handed to the grouper: deleted once an event holding it is stored.
    pub(super) fn push_unconsumed(&mut self, entry: EntryId) {
        self.unconsumed.push_back(entry);
    }

    /// Adds an event to store with the next commit.
    pub(super) fn push_ready(&mut self, event: TierEvent) {
        self.ready.push(event);
    }

    /// Whether enough is pending (`commit_events` events, or many stale entries) to commit
    /// before reading on.
    pub(super) fn is_full(&self, commit_events: usize) -> bool {
        self.ready.len() >= commit_events || self.stale.len() >= MAX_PENDING_STALE
    }

    /// Fails when the lease was lost (its renewal found it taken over or expired). The fence is
    /// what guarantees a stale pass writes nothing; this only stops one that already knows.
    fn check_lease(&self) -> Result<(), TierError> {
        match self.lease {
            Some(l) if l.is_lost() => Err(StoreError::LeaseLost {
                scope: l.lease().scope.clone(),
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// Stores the ready events with the camera's new watermark and `open` state (one
    /// transaction), then deletes exactly the entries they consumed and the stale ones. Both
    /// are fenced by the lease's token: once a newer run took the camera over, the store refuses
    /// the commit and Redis the delete, and the pass stops for this camera.
    pub(super) async fn commit(
        &mut self,
        open: Option<OpenEventState>,
        out: &mut CameraOutcome,
    ) -> Result<(), TierError> {
        let mut doomed = mem::take(&mut self.stale);
        if !self.ready.is_empty() {
            let watermark = self.store_ready(open).await?;
            self.watermark = watermark;
            let consumed = self.take_consumed(watermark);
            self.count_stored(consumed.len() as u64, out);
            doomed.extend(consumed);
        }
        if !doomed.is_empty() && !self.dry_run {
            self.delete(&doomed, out).await?;
        }
        Ok(())
    }

    /// Writes the ready events and the camera's state in one store transaction (nothing in a
    /// dry run); the camera's new watermark.
    async fn store_ready(
        &self,
        open: Option<OpenEventState>,
    ) -> Result<Option<EntryId>, TierError> {
        let last = self.ready.iter().map(|e| e.last_entry).max();
        let watermark = self.watermark.max(last);
        let state = CameraState {
            camera_id: self.camera.to_string(),
            watermark,
            open,
        };
        if !self.dry_run {
            self.check_lease()?;
            pausepoint("tier-before-commit");
            self.ctx
                .store
                .commit(&self.ready, &state, self.fence.as_ref())
                .await?;
            failpoint("tier-after-commit");
        }
        Ok(watermark)
    }

    /// The grouped entries at or before `watermark`, oldest first: in stored events now.
    fn take_consumed(&mut self, watermark: Option<EntryId>) -> Vec<EntryId> {
        let mut consumed = Vec::new();
        while let Some(&front) = self.unconsumed.front() {
            if Some(front) > watermark {
                break;
            }
            consumed.push(front);
            self.unconsumed.pop_front();
        }
        consumed
    }

    /// Counts the stored events and the `consumed` captions they hold; a dry run keeps the
    /// events (capped) to show them.
    fn count_stored(&mut self, consumed: u64, out: &mut CameraOutcome) {
        out.captions_migrated += consumed;
        out.events_written += self.ready.len() as u64;
        metrics::counter!(TierMetric::CaptionsMigratedTotal.name()).increment(consumed);
        metrics::counter!(TierMetric::EventsWrittenTotal.name()).increment(self.ready.len() as u64);
        if self.dry_run {
            let room = MAX_PREVIEW_EVENTS.saturating_sub(out.events.len());
            out.events.extend(self.ready.drain(..).take(room));
        }
        self.ready.clear();
    }

    /// Deletes `doomed` from Redis, by id and fenced by the lease's token.
    async fn delete(&self, doomed: &[EntryId], out: &mut CameraOutcome) -> Result<(), TierError> {
        self.check_lease()?;
        pausepoint("tier-before-delete");
        let deleted = self
            .ctx
            .source
            .delete(self.camera, doomed, self.fence.as_ref())
            .await?;
        out.entries_deleted += deleted;
        metrics::counter!(TierMetric::EntriesDeletedTotal.name()).increment(deleted);
        failpoint("tier-after-delete");
        Ok(())
    }
}
