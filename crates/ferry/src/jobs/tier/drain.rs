//! One pass of the tier job: drain each camera's due captions into stored events.

use std::collections::VecDeque;
use std::mem;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_core::checkpoint::StoreError;
use ferry_core::telemetry::Metric;
use ferry_core::tier::embed::normalize_l2;
use ferry_core::tier::grouping::GroupInput;
use ferry_core::tier::wordings::Wordings;
use ferry_core::tier::{
    CameraState, EmbedError, EntryId, EventStatus, EventStore, Grouper, OpenEventState, RunRecord,
    TierEvent, store::Fence,
};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::learn::learn_wordings;
use super::similarity::Backend;
use super::source::RawEntry;
use super::{TierContext, TierError, check_camera, now_ms};
use crate::runtime::{LeaseGuard, failpoint, pausepoint};
use crate::store::AnyStore;

/// What one pass should do.
#[derive(Debug, Clone, Default)]
pub struct PassRequest {
    /// Only this camera (default: every camera with captions in Redis).
    pub camera: Option<String>,
    /// Migrate everything now, due or not (an event still growing is written open).
    pub all: bool,
    /// Group and report, but write and delete nothing.
    pub dry_run: bool,
    /// What started the pass: `cli`, `serve`, `api`.
    pub trigger: String,
}

/// Most events a dry run returns per camera.
const MAX_PREVIEW_EVENTS: usize = 1000;

/// What a pass did for one camera.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CameraOutcome {
    /// The camera.
    pub camera_id: String,
    /// Captions read and grouped.
    pub captions_read: u64,
    /// Captions merged into events that were stored (or would be, in a dry run).
    pub captions_migrated: u64,
    /// Events written (inserted or extended).
    pub events_written: u64,
    /// Entries deleted from Redis.
    pub entries_deleted: u64,
    /// Entries already stored by an earlier, interrupted pass (deleted now).
    pub already_stored: u64,
    /// Entries that are not readable captions (left in Redis).
    pub malformed: u64,
    /// Another process holds this camera's lease; skipped.
    pub busy: bool,
    /// Why the camera failed, if it did.
    pub error: Option<String>,
    /// The events made, in a dry run (capped).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<TierEvent>,
}

/// What a pass did.
#[derive(Debug, Clone, Serialize)]
pub struct PassOutcome {
    /// The history record (also stored, unless dry run).
    pub run: RunRecord,
    /// Per camera.
    pub cameras: Vec<CameraOutcome>,
    /// Whether nothing was written.
    pub dry_run: bool,
}

impl PassOutcome {
    /// Cameras that failed.
    pub fn failed(&self) -> u64 {
        self.run.failed
    }
}

static RUN_SEQ: AtomicU64 = AtomicU64::new(0);

/// Runs one pass over the requested cameras. Per-camera failures are counted and the pass goes
/// on; a camera whose lease another process holds is skipped.
pub async fn run_pass(
    ctx: &TierContext,
    req: PassRequest,
    stop: CancellationToken,
) -> Result<PassOutcome, TierError> {
    let started = now_ms();
    let run_id = format!(
        "tier-{started}-{}-{}",
        std::process::id(),
        RUN_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let (cameras, index) = match &req.camera {
        Some(c) => {
            check_camera(c)?;
            let index = if ctx.source.layout() == super::Layout::Keys {
                ctx.source.cameras().await?.1
            } else {
                Default::default()
            };
            (vec![c.clone()], index)
        }
        None => ctx.source.cameras().await?,
    };
    let mut run = RunRecord {
        run_id: run_id.clone(),
        trigger: req.trigger.clone(),
        started_ms: started,
        ..RunRecord::default()
    };
    let mut outcomes = Vec::with_capacity(cameras.len());
    for camera in cameras {
        if stop.is_cancelled() {
            break;
        }
        let idx = index.get(&camera).map(Vec::as_slice).unwrap_or(&[]);
        let camera_stop = stop.child_token();
        let lease = if req.dry_run {
            None
        } else {
            match LeaseGuard::acquire(
                ctx.leases.clone(),
                &format!("tier/{camera}"),
                camera_stop.clone(),
            )
            .await
            {
                Ok(l) => Some(l),
                Err(StoreError::LeaseHeld { holder, .. }) => {
                    tracing::info!(camera, holder, "camera is being drained elsewhere; skipped");
                    outcomes.push(CameraOutcome {
                        camera_id: camera,
                        busy: true,
                        ..CameraOutcome::default()
                    });
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let mut out = CameraOutcome {
            camera_id: camera.clone(),
            ..CameraOutcome::default()
        };
        let result = drain_camera(
            ctx,
            &camera,
            idx,
            &req,
            &run_id,
            lease.as_ref(),
            &camera_stop,
            &mut out,
        )
        .await;
        if let Some(l) = lease {
            l.release().await;
        }
        if let Err(e) = result {
            tracing::error!(camera, error = %e, "camera failed");
            metrics::counter!(Metric::ErrorsTotal.name(), "job" => "tier", "stage" => "drain", "error_type" => e.class_name()).increment(1);
            run.failed += 1;
            if run.error.is_none() {
                run.error = Some(format!("{camera}: {e}"));
            }
            out.error = Some(e.to_string());
        }
        run.cameras += 1;
        run.captions_read += out.captions_read;
        run.captions_migrated += out.captions_migrated;
        run.events_written += out.events_written;
        run.entries_deleted += out.entries_deleted;
        outcomes.push(out);
    }
    run.finished_ms = now_ms();
    if !req.dry_run {
        failpoint("tier-before-history");
        ctx.store.record_run(&run).await?;
        let outcome = if run.failed == 0 { "ok" } else { "failed" };
        metrics::counter!(Metric::TierPassesTotal.name(), "outcome" => outcome).increment(1);
        metrics::histogram!(Metric::TierPassDurationSeconds.name())
            .record((run.finished_ms - run.started_ms) as f64 / 1000.0);
    }
    Ok(PassOutcome {
        run,
        cameras: outcomes,
        dry_run: req.dry_run,
    })
}

impl TierError {
    fn class_name(&self) -> &'static str {
        use ferry_core::error::Classify;
        match self.class() {
            ferry_core::error::ErrorClass::User => "user",
            ferry_core::error::ErrorClass::External => "external",
            ferry_core::error::ErrorClass::Internal => "internal",
        }
    }
}

/// What a camera's drain keeps between chunks.
struct Drain<'a> {
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

impl Drain<'_> {
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
    async fn commit(
        &mut self,
        open: Option<OpenEventState>,
        out: &mut CameraOutcome,
    ) -> Result<(), TierError> {
        let mut doomed = mem::take(&mut self.stale);
        if !self.ready.is_empty() {
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
            self.watermark = watermark;
            let mut consumed = 0;
            while let Some(&front) = self.unconsumed.front() {
                if Some(front) > watermark {
                    break;
                }
                doomed.push(front);
                self.unconsumed.pop_front();
                consumed += 1;
            }
            out.captions_migrated += consumed;
            out.events_written += self.ready.len() as u64;
            metrics::counter!(Metric::TierCaptionsMigratedTotal.name()).increment(consumed);
            metrics::counter!(Metric::TierEventsWrittenTotal.name())
                .increment(self.ready.len() as u64);
            if self.dry_run {
                let room = MAX_PREVIEW_EVENTS.saturating_sub(out.events.len());
                out.events.extend(self.ready.drain(..).take(room));
            }
            self.ready.clear();
        }
        if !doomed.is_empty() && !self.dry_run {
            self.check_lease()?;
            pausepoint("tier-before-delete");
            let deleted = self
                .ctx
                .source
                .delete(self.camera, &doomed, self.fence.as_ref())
                .await?;
            out.entries_deleted += deleted;
            metrics::counter!(Metric::TierEntriesDeletedTotal.name()).increment(deleted);
            failpoint("tier-after-delete");
        }
        Ok(())
    }
}

/// Whether an event (or the part of it not stored yet) is due: its oldest unstored entry is
/// at or before `cutoff` (entry-id time, the time Redis trims and expires by).
fn first_unstored(event_first: EntryId, resumed: bool, first_new: Option<EntryId>) -> EntryId {
    if resumed {
        first_new.unwrap_or(event_first)
    } else {
        event_first
    }
}

#[allow(clippy::too_many_arguments)]
async fn drain_camera(
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
    let resumed_id = state.open.as_ref().map(|o| o.id.clone());
    let mut grouper = match state.open.clone() {
        Some(open) => Grouper::resume(ctx.grouping.clone(), run_id, open),
        None => Grouper::new(camera, ctx.grouping.clone(), run_id),
    };
    let mut drain = Drain {
        ctx,
        camera,
        dry_run: req.dry_run,
        lease,
        fence: lease.and_then(|l| Fence::of(l.lease().scope.clone(), l.lease().token)),
        watermark: state.watermark,
        unconsumed: VecDeque::new(),
        stale: Vec::new(),
        ready: Vec::new(),
    };

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

    let is_resumed = |id: &str| resumed_id.as_deref() == Some(id);
    let mut first_new: Option<EntryId> = None;
    let mut after: Option<EntryId> = None;
    let mut reached_undue = false;
    'read: loop {
        if stop.is_cancelled() {
            // Stop requested: store what is ready, leave the rest for the next pass.
            return drain.commit(None, out).await;
        }
        let chunk = read_chunk(ctx, camera, after, index).await?;
        let Some(last) = chunk.last() else { break };
        after = Some(last.entry);
        let mut captions = Vec::with_capacity(chunk.len());
        for raw in chunk {
            match raw.caption {
                Err(problem) => {
                    out.malformed += 1;
                    metrics::counter!(Metric::TierMalformedTotal.name()).increment(1);
                    if out.malformed <= 5 {
                        tracing::warn!(camera, entry = %raw.entry, problem, "not a caption; left in Redis");
                    }
                }
                Ok(c) if drain.watermark.is_some_and(|w| c.entry <= w) => {
                    out.already_stored += 1;
                    drain.stale.push(c.entry);
                }
                Ok(c) => captions.push(c),
            }
        }
        out.captions_read += captions.len() as u64;
        metrics::counter!(Metric::TierCaptionsReadTotal.name()).increment(captions.len() as u64);
        let norms: Vec<String> = captions
            .iter()
            .map(|c| ctx.normalizer.normalize(&c.text))
            .collect();
        let vectors = match &wordings {
            Some(w) => {
                let entries: Vec<EntryId> = captions.iter().map(|c| c.entry).collect();
                w.embed(ctx, &norms, &entries).await?
            }
            None => embed(ctx, &norms, None).await?,
        };
        for ((caption, norm), vector) in captions.into_iter().zip(norms).zip(vectors) {
            let embedding = match ctx.options.similarity {
                Backend::Provided => caption.embedding.map(|mut e| {
                    normalize_l2(&mut e);
                    e
                }),
                _ => vector.map(|v| v.as_ref().clone()),
            };
            first_new.get_or_insert(caption.entry);
            drain.unconsumed.push_back(caption.entry);
            let closed = grouper.push(GroupInput {
                entry: caption.entry,
                ts_ms: caption.ts_ms,
                text: caption.text,
                norm,
                embedding,
            });
            for event in closed {
                let first = first_unstored(event.first_entry, is_resumed(&event.id), first_new);
                if is_resumed(&event.id) || first.ms <= cutoff {
                    drain.ready.push(event);
                } else {
                    reached_undue = true;
                    break 'read;
                }
            }
            if let Some(open) = grouper.open() {
                let first = first_unstored(open.first_entry, is_resumed(&open.id), first_new);
                if first.ms > cutoff {
                    reached_undue = true;
                    break 'read;
                }
            }
        }
        if drain.ready.len() >= ctx.options.commit_events || drain.stale.len() >= 10_000 {
            drain.commit(None, out).await?;
        }
    }

    // A split still waiting for the next event's first captions is settled with what was read.
    for event in grouper.settle_split() {
        let first = first_unstored(event.first_entry, is_resumed(&event.id), first_new);
        if is_resumed(&event.id) || first.ms <= cutoff {
            drain.ready.push(event);
        } else {
            reached_undue = true;
        }
    }
    let mut open_state = None;
    if !reached_undue {
        // Read to the end: close what no caption can join any more, then write early what is
        // still open but due (it is extended in place by later passes).
        for event in grouper.close_if_idle(now) {
            let first = first_unstored(event.first_entry, is_resumed(&event.id), first_new);
            if is_resumed(&event.id) || first.ms <= cutoff {
                drain.ready.push(event);
            } else {
                break;
            }
        }
        if let Some(open) = grouper.open() {
            let first = first_unstored(open.first_entry, is_resumed(&open.id), first_new);
            let grew = !is_resumed(&open.id) || first_new.is_some();
            if grew
                && first.ms <= cutoff
                && let Some((event, state)) = grouper.snapshot_open()
            {
                debug_assert_eq!(event.status, EventStatus::Open);
                drain.ready.push(event);
                open_state = Some(state);
            }
        }
    }
    drain.commit(open_state, out).await?;
    if keeps_wordings && let Some(wordings) = wordings {
        wordings.finish(ctx, camera).await?;
    }
    Ok(())
}

/// Embeds normalised texts on a blocking thread (the model is CPU-bound), mixed with their
/// related wordings when a table is given.
pub(super) async fn embed(
    ctx: &TierContext,
    norms: &[String],
    wordings: Option<Arc<Wordings>>,
) -> Result<Vec<Option<Arc<Vec<f32>>>>, TierError> {
    if ctx.options.similarity == Backend::Provided || norms.is_empty() {
        return Ok(vec![None; norms.len()]);
    }
    let similarity = ctx.similarity.clone();
    let texts = norms.to_vec();
    let result = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        similarity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .embed_mixed(&refs, wordings.as_deref())
    })
    .await
    .map_err(|e| EmbedError(format!("the embedding thread panicked: {e}")))??;
    Ok(result)
}

/// The camera's next `chunk_size` entries after `after`.
pub(super) async fn read_chunk(
    ctx: &TierContext,
    camera: &str,
    after: Option<EntryId>,
    index: &[u64],
) -> Result<Vec<RawEntry>, TierError> {
    Ok(ctx
        .source
        .read(camera, after, ctx.options.chunk_size, index)
        .await?)
}

/// The camera's stored state, or a fresh one for a camera the store does not know yet.
async fn camera_state(ctx: &TierContext, camera: &str) -> Result<CameraState, TierError> {
    Ok(ctx
        .store
        .camera_state(camera)
        .await?
        .unwrap_or(CameraState {
            camera_id: camera.to_string(),
            ..CameraState::default()
        }))
}

/// Drops a camera's captions without storing them (`tier clear --discard`).
///
/// Under the camera's lease, like a pass: while another run holds it, nothing is read or
/// deleted and the lease error (naming the holder) is returned. The entries are read first and
/// exactly those are deleted, by id and fenced by the lease's token, so a caption written after
/// the read survives.
pub(super) async fn discard(
    ctx: &TierContext,
    camera: &str,
    index: &[u64],
    stop: CancellationToken,
) -> Result<u64, TierError> {
    let lease = LeaseGuard::acquire(ctx.leases.clone(), &format!("tier/{camera}"), stop).await?;
    let result = discard_leased(ctx, camera, index, &lease).await;
    lease.release().await;
    result
}

async fn discard_leased(
    ctx: &TierContext,
    camera: &str,
    index: &[u64],
    lease: &LeaseGuard<AnyStore>,
) -> Result<u64, TierError> {
    let fence = Fence::of(lease.lease().scope.clone(), lease.lease().token);
    if let Some(fence) = &fence {
        // Record this lease's token in the store before reading: a pass that lost the camera to
        // this discard (paused, then resumed) must not store captions that are dropped here.
        ctx.store.raise_fence(fence).await?;
    }
    let mut read = Vec::new();
    let mut after = None;
    loop {
        let chunk = read_chunk(ctx, camera, after, index).await?;
        let Some(last) = chunk.last() else { break };
        after = Some(last.entry);
        read.extend(chunk.into_iter().map(|raw| raw.entry));
    }
    if read.is_empty() {
        return Ok(0);
    }
    if lease.is_lost() {
        return Err(StoreError::LeaseLost {
            scope: lease.lease().scope.clone(),
        }
        .into());
    }
    pausepoint("tier-discard-before-delete");
    ctx.source.delete(camera, &read, fence.as_ref()).await
}
