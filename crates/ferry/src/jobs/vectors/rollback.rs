//! `ferry vectors rollback`: applications back to the primary store alone (the storage mode
//! set to `primary_only`), and with `--drop-target` the target's vector set or collection and
//! the migration's checkpoint removed. The source is never touched, so nothing is lost.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ferry_connectors::redis::RedisCheckpointStore;
use ferry_core::checkpoint::CheckpointStore;
use ferry_core::jobs::vectors::{StorageMode, VectorTarget};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{AnyTarget, VectorsError, VectorsOptions, mode};
use crate::runtime::LeaseGuard;

/// What a rollback did (or, without `-y`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RollbackOutcome {
    /// When it started.
    #[serde(skip)]
    pub started: DateTime<Utc>,
    /// Whether nothing was changed (no `-y`).
    pub dry_run: bool,
    /// The mode before (`None`: the key held something unreadable).
    pub mode_before: Option<StorageMode>,
    /// The mode after.
    pub mode_after: Option<StorageMode>,
    /// Whether the target's data is (or would be) dropped.
    pub drop_target: bool,
    /// Items the target held.
    pub target_items: Option<u64>,
}

/// Rolls back; with `dry_run` only says what it would do. `target` is needed to drop it.
pub async fn rollback(
    checkpoints: &Arc<RedisCheckpointStore>,
    options: &VectorsOptions,
    target: Option<&AnyTarget>,
    drop_target: bool,
    dry_run: bool,
) -> Result<RollbackOutcome, VectorsError> {
    let started = Utc::now();
    let endpoint = checkpoints.endpoint();
    if drop_target && target.is_none() {
        return Err(VectorsError::Usage(
            "--drop-target needs --target (and --vector-set or --collection)".into(),
        ));
    }
    // The mode first and whatever the target's state: applications must leave the new store
    // even when it is down. An unreadable old value is reported as unknown, then replaced.
    let before = mode::read(endpoint, &options.mode_key).await.ok();
    if !dry_run {
        mode::write(endpoint, &options.mode_key, StorageMode::PrimaryOnly).await?;
    }
    let target_items = match target {
        Some(t) => match t.describe().await {
            Ok(info) => Some(info.items),
            Err(e) if !drop_target => {
                tracing::warn!(error = %e, "the target cannot be described; the mode is set anyway");
                None
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    if let (false, true, Some(target)) = (dry_run, drop_target, target) {
        // The run lease keeps a migration that is still running from writing on.
        let scope = options.scope();
        let lease =
            LeaseGuard::acquire(checkpoints.clone(), &scope, CancellationToken::new()).await?;
        let dropped = async {
            target.drop_all().await?;
            checkpoints.clear(&scope).await?;
            Ok::<_, VectorsError>(())
        }
        .await;
        lease.release().await;
        dropped?;
    }
    Ok(RollbackOutcome {
        started,
        dry_run,
        mode_before: before,
        mode_after: if dry_run {
            before
        } else {
            Some(StorageMode::PrimaryOnly)
        },
        drop_target,
        target_items,
    })
}
