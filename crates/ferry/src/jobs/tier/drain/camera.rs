//! One camera's drain within a pass: read its entries oldest first, set aside what is not a
//! caption or was stored already, group the captions into events, and hand the due events to
//! the camera's commits ([`super::commit`]).

use std::sync::Arc;

use ferry_core::jobs::tier::embed::normalize_l2;
use ferry_core::jobs::tier::grouping::GroupInput;
use ferry_core::jobs::tier::{Caption, EntryId, EventStatus, Grouper, OpenEventState, TierEvent};
use tokio_util::sync::CancellationToken;

use super::commit::PendingCommit;
use super::read::{camera_state, embed, read_chunk};
use super::{CameraOutcome, PassRequest};
use crate::jobs::tier::learn::{PassWordings, learn_wordings};
use crate::jobs::tier::metrics::TierMetric;
use crate::jobs::tier::similarity::Backend;
use crate::jobs::tier::source::RawEntry;
use crate::jobs::tier::{TierContext, TierError, now_ms};
use crate::runtime::LeaseGuard;
use crate::store::AnyStore;

/// Malformed entries of a camera logged one by one; the rest are only counted.
const MALFORMED_LOGGED: u64 = 5;

/// Drains one camera: reads its captions, groups them, and commits the due events (then
/// deletes their entries), as often as they pile up and once at the end.
#[allow(clippy::too_many_arguments)]
pub(super) async fn drain_camera(
    ctx: &TierContext,
    camera: &str,
    index: &[u64],
    req: &PassRequest,
    run_id: &str,
    lease: Option<&LeaseGuard<AnyStore>>,
    stop: &CancellationToken,
    out: &mut CameraOutcome,
) -> Result<(), TierError> {
    let now = now_ms();
    let cutoff = if req.all {
        u64::MAX
    } else {
        (now - ctx.options.due_age_ms()).max(0) as u64
    };
    let state = camera_state(ctx, camera).await?;

    // Nothing due and nothing open: leave the camera alone without reading it.
    let oldest = ctx.source.oldest(camera, index).await?;
    if !req.all && state.open.is_none() && oldest.is_none_or(|o| o.ms > cutoff) {
        return Ok(());
    }

    // The lexical backend first learns which wordings describe one scene on this camera.
    let keeps_wordings = ctx.options.similarity == Backend::Lexical && !req.dry_run;
    let wordings = if ctx.options.similarity == Backend::Lexical {
        Some(learn_wordings(ctx, camera, index, state.watermark, keeps_wordings).await?)
    } else {
        None
    };

    let mut drain = CameraDrain {
        ctx,
        camera,
        index,
        now,
        cutoff,
        resumed_id: state.open.as_ref().map(|o| o.id.clone()),
        first_new: None,
        grouper: match state.open {
            Some(open) => Grouper::resume(ctx.grouping.clone(), run_id, open),
            None => Grouper::new(camera, ctx.grouping.clone(), run_id),
        },
        wordings,
        pending: PendingCommit::new(ctx, camera, req.dry_run, lease, state.watermark),
    };
    let open_state = match drain.read_and_group(stop, out).await? {
        // Stop requested: store what is ready, leave the rest for the next pass.
        ReadEnd::Stopped => return drain.pending.commit(None, out).await,
        ReadEnd::Exhausted => drain.settle(false),
        ReadEnd::NotDue => drain.settle(true),
    };
    drain.pending.commit(open_state, out).await?;
    if keeps_wordings && let Some(wordings) = drain.wordings {
        wordings.finish(ctx, camera).await?;
    }
    Ok(())
}

/// Why a camera's read stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    /// The pass was asked to stop.
    Stopped,
    /// Every entry was read.
    Exhausted,
    /// An event (closed or still open) is not due yet: what comes after it is not either.
    NotDue,
}

/// What one camera's drain keeps while it reads and groups.
struct CameraDrain<'a> {
    ctx: &'a TierContext,
    camera: &'a str,
    index: &'a [u64],
    /// When the drain started (events idle since long enough before it are closed).
    now: i64,
    /// Entries at or before this time (entry-id ms) are due.
    cutoff: u64,
    /// The event an earlier pass wrote open, grown on by this one.
    resumed_id: Option<String>,
    /// The first caption this pass read (the first not stored yet).
    first_new: Option<EntryId>,
    grouper: Grouper,
    /// The lexical backend's wordings for this pass.
    wordings: Option<PassWordings>,
    /// What waits for the next commit.
    pending: PendingCommit<'a>,
}

impl CameraDrain<'_> {
    /// Reads the camera chunk by chunk and groups what it reads, committing whenever enough is
    /// pending, until the end, the first event not due yet, or a stop request.
    async fn read_and_group(
        &mut self,
        stop: &CancellationToken,
        out: &mut CameraOutcome,
    ) -> Result<ReadEnd, TierError> {
        let mut after: Option<EntryId> = None;
        loop {
            if stop.is_cancelled() {
                return Ok(ReadEnd::Stopped);
            }
            let chunk = read_chunk(self.ctx, self.camera, after, self.index).await?;
            let Some(last) = chunk.last() else {
                return Ok(ReadEnd::Exhausted);
            };
            after = Some(last.entry);
            let captions = self.sort_out(chunk, out);
            let (norms, vectors) = self.embed_chunk(&captions).await?;
            if !self.group_chunk(captions, norms, vectors) {
                return Ok(ReadEnd::NotDue);
            }
            if self.pending.is_full(self.ctx.options.commit_events) {
                self.pending.commit(None, out).await?;
            }
        }
    }

    /// The chunk's captions to group: entries that are not captions are counted (and left in
    /// Redis), those stored already by an earlier pass set aside to delete.
    fn sort_out(&mut self, chunk: Vec<RawEntry>, out: &mut CameraOutcome) -> Vec<Caption> {
        let camera = self.camera;
        let mut captions = Vec::with_capacity(chunk.len());
        for raw in chunk {
            match raw.caption {
                Err(problem) => {
                    out.malformed += 1;
                    metrics::counter!(TierMetric::MalformedTotal.name()).increment(1);
                    if out.malformed <= MALFORMED_LOGGED {
                        tracing::warn!(camera, entry = %raw.entry, problem, "not a caption; left in Redis");
                    }
                }
                Ok(c) if self.pending.is_stored(c.entry) => {
                    out.already_stored += 1;
                    self.pending.push_stale(c.entry);
                }
                Ok(c) => captions.push(c),
            }
        }
        out.captions_read += captions.len() as u64;
        metrics::counter!(TierMetric::CaptionsReadTotal.name()).increment(captions.len() as u64);
        captions
    }

    /// The captions' normalised texts and their vectors (with the pass's wordings, if any).
    async fn embed_chunk(
        &self,
        captions: &[Caption],
    ) -> Result<(Vec<String>, Vec<Option<Arc<Vec<f32>>>>), TierError> {
        let norms: Vec<String> = captions
            .iter()
            .map(|c| self.ctx.normalizer.normalize(&c.text))
            .collect();
        let vectors = match &self.wordings {
            Some(w) => {
                let entries: Vec<EntryId> = captions.iter().map(|c| c.entry).collect();
                w.embed(self.ctx, &norms, &entries).await?
            }
            None => embed(self.ctx, &norms, None).await?,
        };
        Ok((norms, vectors))
    }

    /// Groups the captions in order, handing each event they close to the commit while it is
    /// due; false as soon as an event (closed, or the open one) is not due yet: the read stops
    /// there, and the captions after it wait for a later pass.
    fn group_chunk(
        &mut self,
        captions: Vec<Caption>,
        norms: Vec<String>,
        vectors: Vec<Option<Arc<Vec<f32>>>>,
    ) -> bool {
        for ((caption, norm), vector) in captions.into_iter().zip(norms).zip(vectors) {
            let embedding = match self.ctx.options.similarity {
                Backend::Provided => caption.embedding.map(|mut e| {
                    normalize_l2(&mut e);
                    e
                }),
                _ => vector.map(|v| v.as_ref().clone()),
            };
            self.first_new.get_or_insert(caption.entry);
            self.pending.push_unconsumed(caption.entry);
            let closed = self.grouper.push(GroupInput {
                entry: caption.entry,
                ts_ms: caption.ts_ms,
                text: caption.text,
                norm,
                embedding,
            });
            if !self.push_due_prefix(closed) {
                return false;
            }
            if let Some(open) = self.grouper.open()
                && self.first_unstored(&open.id, open.first_entry).ms > self.cutoff
            {
                return false;
            }
        }
        true
    }

    /// After the read: settles a pending split, and unless the read stopped at an event not
    /// due yet (`reached_undue`), closes idle events and snapshots the open one when due. The
    /// open event's state to store with the last commit, if it is written open.
    fn settle(&mut self, mut reached_undue: bool) -> Option<OpenEventState> {
        // A split still waiting for the next event's first captions is settled with what was read.
        for event in self.grouper.settle_split() {
            if self.is_due(&event) {
                self.pending.push_ready(event);
            } else {
                reached_undue = true;
            }
        }
        if reached_undue {
            return None;
        }
        // Read to the end: close what no caption can join any more, then write early what is
        // still open but due (it is extended in place by later passes).
        let idle = self.grouper.close_if_idle(self.now);
        self.push_due_prefix(idle);
        self.snapshot_open_if_due()
    }

    /// The open event, written open with its state, when it grew in this pass and is due.
    fn snapshot_open_if_due(&mut self) -> Option<OpenEventState> {
        let open = self.grouper.open()?;
        let first = self.first_unstored(&open.id, open.first_entry);
        let grew = !self.is_resumed(&open.id) || self.first_new.is_some();
        if !grew || first.ms > self.cutoff {
            return None;
        }
        let (event, state) = self.grouper.snapshot_open()?;
        debug_assert_eq!(event.status, EventStatus::Open);
        self.pending.push_ready(event);
        Some(state)
    }

    /// Hands `events` to the commit in order while they are due; false when one is not (it
    /// and those after it are not stored by this pass).
    fn push_due_prefix(&mut self, events: Vec<TierEvent>) -> bool {
        for event in events {
            if !self.is_due(&event) {
                return false;
            }
            self.pending.push_ready(event);
        }
        true
    }

    /// Whether an event (or the part of it not stored yet) is due: its oldest unstored entry is
    /// at or before `cutoff` (entry-id time, the time Redis trims and expires by). The event
    /// an earlier pass wrote open always is: it is extended in place.
    fn is_due(&self, event: &TierEvent) -> bool {
        self.is_resumed(&event.id)
            || self.first_unstored(&event.id, event.first_entry).ms <= self.cutoff
    }

    /// An event's oldest entry not stored yet: for the resumed event, the first caption this
    /// pass read (its first entry when none was read).
    fn first_unstored(&self, event_id: &str, event_first: EntryId) -> EntryId {
        if self.is_resumed(event_id) {
            self.first_new.unwrap_or(event_first)
        } else {
            event_first
        }
    }

    /// Whether `event_id` is the event an earlier pass wrote open.
    fn is_resumed(&self, event_id: &str) -> bool {
        self.resumed_id.as_deref() == Some(event_id)
    }
}
