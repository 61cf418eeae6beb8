//! `ferry vectors status` and `monitor`: a migration's progress from its saved state — done
//! and total, rate, ETA, errors — once, or refreshed until it finishes.

use std::time::Duration;

use ferry_core::checkpoint::now_ms;
use ferry_core::report::ItemError;
use serde::Serialize;

use super::state::{RunState, Totals};
use super::{VectorsError, VectorsOptions, mode};
use ferry_connectors::redis::RedisCheckpointStore;

/// Where a migration stands.
#[derive(Debug, Clone, Serialize)]
pub struct StatusOutcome {
    /// The migration's name.
    pub name: String,
    /// `not started`, `running`, `stopped` or `complete`.
    pub state: &'static str,
    /// The storage mode applications read.
    pub mode: String,
    /// The source and target, as shown.
    pub source: Option<String>,
    /// The target.
    pub target: Option<String>,
    /// Items in the source when planned.
    pub total: u64,
    /// Counts over every run.
    pub totals: Totals,
    /// Share done (0..1).
    pub fraction: f64,
    /// Items per second of the current (or last) run.
    pub rate: f64,
    /// Seconds left at that rate.
    pub eta_seconds: Option<f64>,
    /// Who runs it (`host:pid`), while it runs.
    pub holder: Option<String>,
    /// Failed items in all.
    pub errors_total: u64,
    /// The last item errors.
    pub last_errors: Vec<ItemError>,
}

/// A state not saved for this long is not running (its process died or stopped).
const STALE_MS: i64 = 10_000;

/// Reads the migration's progress.
pub async fn status(
    store: &RedisCheckpointStore,
    options: &VectorsOptions,
) -> Result<StatusOutcome, VectorsError> {
    let mode = mode::read(store.endpoint(), &options.mode_key).await?;
    let saved = RunState::load(store, options).await?;
    let Some(s) = saved else {
        return Ok(StatusOutcome {
            name: options.name.clone(),
            state: "not started",
            mode: mode.to_string(),
            source: None,
            target: None,
            total: 0,
            totals: Totals::default(),
            fraction: 0.0,
            rate: 0.0,
            eta_seconds: None,
            holder: None,
            errors_total: 0,
            last_errors: Vec::new(),
        });
    };
    let t = s.totals();
    let now = now_ms();
    let running = s.holder.is_some() && now - s.updated_ms < STALE_MS;
    let state = match (s.is_finished(), running) {
        (true, _) => "complete",
        (false, true) => "running",
        (false, false) => "stopped",
    };
    let end = if running { now } else { s.updated_ms };
    let seconds = (end - s.run_started_ms).max(1) as f64 / 1000.0;
    let rate = t.read.saturating_sub(s.run_read_at_start) as f64 / seconds;
    let left = s.total.saturating_sub(t.read);
    Ok(StatusOutcome {
        name: options.name.clone(),
        state,
        mode: mode.to_string(),
        fraction: if s.is_finished() {
            1.0
        } else {
            (t.read as f64 / s.total.max(1) as f64).min(1.0)
        },
        eta_seconds: (!s.is_finished() && rate > 0.0).then(|| left as f64 / rate),
        rate,
        total: s.total,
        totals: t,
        holder: if running { s.holder.clone() } else { None },
        errors_total: s.errors.total,
        last_errors: s.errors.items.iter().rev().take(5).cloned().collect(),
        source: Some(s.source),
        target: Some(s.target),
    })
}

/// One line for people: done/total, rate, ETA, errors.
pub fn line(s: &StatusOutcome) -> String {
    let eta = s
        .eta_seconds
        .map(|e| format!("eta {}", format_seconds(e)))
        .unwrap_or_default();
    format!(
        "{}: {} {}/{} ({:.1}%)  written {}  no embedding {}  failed {}  {:.0} items/s {eta}  mode {}",
        s.name,
        s.state,
        s.totals.read,
        s.total,
        s.fraction * 100.0,
        s.totals.written,
        s.totals.missing,
        s.totals.failed,
        s.rate,
        s.mode
    )
}

fn format_seconds(s: f64) -> String {
    let s = s.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Prints the status every `every` until the migration is complete or `stop`; `once` prints
/// it one time.
pub async fn monitor(
    store: &RedisCheckpointStore,
    options: &VectorsOptions,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> Result<StatusOutcome, VectorsError> {
    loop {
        let s = status(store, options).await?;
        println!("{}", line(&s));
        for e in &s.last_errors {
            println!("    {}: {}", e.item, e.error);
        }
        if s.state != "running" || stop.is_cancelled() {
            return Ok(s);
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return Ok(s),
        }
    }
}
