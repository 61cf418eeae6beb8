//! `tier clear --discard`: drop a camera's captions from Redis without storing them.

use ferry_core::checkpoint::StoreError;
use ferry_core::jobs::tier::{EventStore, store::Fence};
use tokio_util::sync::CancellationToken;

use super::read::read_chunk;
use crate::jobs::tier::{TierContext, TierError};
use crate::runtime::{LeaseGuard, pausepoint};
use crate::store::AnyStore;

/// Drops a camera's captions without storing them (`tier clear --discard`).
///
/// Under the camera's lease, like a pass: while another run holds it, nothing is read or
/// deleted and the lease error (naming the holder) is returned. The entries are read first and
/// exactly those are deleted, by id and fenced by the lease's token, so a caption written after
/// the read survives.
pub(in crate::jobs::tier) async fn discard(
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
