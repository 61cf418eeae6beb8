//! Reading a camera for a pass: its stored state, its entries chunk by chunk, and the vectors of
//! their normalised texts (shared with the lexical backend's learning, see `learn`).

use std::sync::Arc;

use ferry_core::jobs::tier::wordings::Wordings;
use ferry_core::jobs::tier::{CameraState, EmbedError, EntryId, EventStore};

use crate::jobs::tier::similarity::Backend;
use crate::jobs::tier::source::RawEntry;
use crate::jobs::tier::{TierContext, TierError};

/// Embeds normalised texts on a blocking thread (the model is CPU-bound), mixed with their
/// related wordings when a table is given.
pub(in crate::jobs::tier) async fn embed(
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
pub(in crate::jobs::tier) async fn read_chunk(
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
pub(super) async fn camera_state(
    ctx: &TierContext,
    camera: &str,
) -> Result<CameraState, TierError> {
    Ok(ctx
        .store
        .camera_state(camera)
        .await?
        .unwrap_or(CameraState {
            camera_id: camera.to_string(),
            ..CameraState::default()
        }))
}
