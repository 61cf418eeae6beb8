//! `ferry keys status`: the current or last run, from the checkpoint store.

use ferry_core::checkpoint::CheckpointStore;
use serde::Serialize;

use super::{KeysContext, KeysError, KeysState, LEDGER_BACKUP, LEDGER_CREATED};

/// The state of a run.
#[derive(Debug, Clone, Serialize)]
pub struct StatusOutcome {
    /// The run name.
    pub run_name: String,
    /// The saved state, if any run was recorded.
    pub state: Option<KeysState>,
    /// Keys recorded as written by apply.
    pub ledger_entries: u64,
    /// Overwritten values kept for rollback.
    pub backups: u64,
    /// Progress in percent of the estimated key count.
    pub percent: Option<f64>,
}

/// Reads the state of the run named by `--run-name`.
pub async fn status(ctx: &KeysContext) -> Result<StatusOutcome, KeysError> {
    let state: Option<KeysState> = match ctx.store.load(&ctx.scope).await? {
        Some(b) => serde_json::from_slice(&b).ok(),
        None => None,
    };
    let percent = state.as_ref().map(|s| {
        if s.state == "completed" {
            100.0
        } else if s.estimated_total == 0 {
            0.0
        } else {
            (s.stats.scanned as f64 * 100.0 / s.estimated_total as f64).min(99.9)
        }
    });
    Ok(StatusOutcome {
        run_name: ctx.opts.run_name.clone(),
        ledger_entries: ctx.store.ledger_len(&ctx.scope, LEDGER_CREATED).await?,
        backups: ctx.store.ledger_len(&ctx.scope, LEDGER_BACKUP).await?,
        state,
        percent,
    })
}
