//! One pass of the tier job: drain each camera's due captions into stored events.
//!
//! The pass ([`run_pass`], here) takes each camera's lease in turn and drains it
//! ([`camera`]: read → group), storing and deleting as events pile up ([`commit`]: commit to
//! the store, then delete from Redis), and records the pass in the history. [`read`] holds the
//! readers the lexical learning shares; [`discard`] drops a camera's captions unstored.

mod camera;
mod commit;
mod discard;
mod read;

use std::sync::atomic::{AtomicU64, Ordering};

use ferry_core::checkpoint::StoreError;
use ferry_core::jobs::tier::{EventStore, RunRecord, TierEvent};
use ferry_core::telemetry::Metric;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::source::KeyIndex;
use super::{TierContext, TierError, check_camera, now_ms};
use crate::jobs::tier::metrics::TierMetric;
use crate::runtime::{LeaseGuard, failpoint};
use camera::drain_camera;

pub(super) use discard::discard;
pub(super) use read::{embed, read_chunk};

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

/// The cameras a pass drains, with the keys layout's index of each camera's caption keys.
type CamerasToDrain = (Vec<String>, KeyIndex);

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
    let (cameras, index) = cameras_to_drain(ctx, &req).await?;
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
        let out = drain_under_lease(ctx, &req, &run_id, camera, idx, &stop).await?;
        if !out.busy {
            tally(&mut run, &out);
        }
        outcomes.push(out);
    }
    run.finished_ms = now_ms();
    if !req.dry_run {
        record_history(ctx, &run).await?;
    }
    Ok(PassOutcome {
        run,
        cameras: outcomes,
        dry_run: req.dry_run,
    })
}

/// The requested camera (checked), or every camera with captions in Redis.
async fn cameras_to_drain(
    ctx: &TierContext,
    req: &PassRequest,
) -> Result<CamerasToDrain, TierError> {
    Ok(match &req.camera {
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
    })
}

/// Drains one camera under its lease (none in a dry run) and gives the lease up. A camera
/// whose lease another process holds comes back `busy`; a drain that fails comes back with
/// its `error` (logged and counted here), and the pass goes on.
async fn drain_under_lease(
    ctx: &TierContext,
    req: &PassRequest,
    run_id: &str,
    camera: String,
    index: &[u64],
    stop: &CancellationToken,
) -> Result<CameraOutcome, TierError> {
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
                return Ok(CameraOutcome {
                    camera_id: camera,
                    busy: true,
                    ..CameraOutcome::default()
                });
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
        index,
        req,
        run_id,
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
        out.error = Some(e.to_string());
    }
    Ok(out)
}

/// Adds what a drained camera did (and its failure, the pass's first kept) to the run's totals.
fn tally(run: &mut RunRecord, out: &CameraOutcome) {
    if let Some(e) = &out.error {
        run.failed += 1;
        if run.error.is_none() {
            run.error = Some(format!("{}: {e}", out.camera_id));
        }
    }
    run.cameras += 1;
    run.captions_read += out.captions_read;
    run.captions_migrated += out.captions_migrated;
    run.events_written += out.events_written;
    run.entries_deleted += out.entries_deleted;
}

/// Records the finished run in the store's history, last, after every camera's commits and
/// deletes.
async fn record_history(ctx: &TierContext, run: &RunRecord) -> Result<(), TierError> {
    failpoint("tier-before-history");
    ctx.store.record_run(run).await?;
    let outcome = if run.failed == 0 { "ok" } else { "failed" };
    metrics::counter!(TierMetric::PassesTotal.name(), "outcome" => outcome).increment(1);
    metrics::histogram!(TierMetric::PassDurationSeconds.name())
        .record((run.finished_ms - run.started_ms) as f64 / 1000.0);
    Ok(())
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
