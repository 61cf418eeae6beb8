//! Learned wordings for one pass of the lexical backend: read the camera's captions ahead,
//! learn which wordings describe one scene (see [`ferry_core::jobs::tier::wordings`]), keep the table
//! for a pass run again after an interruption, and embed each chunk with its table.

use std::sync::Arc;

use ferry_core::jobs::tier::wordings::{CameraWordings, Wordings};
use ferry_core::jobs::tier::{EmbedError, EntryId, LexicalEmbedder};

use super::drain::{embed, read_chunk};
use super::{TierContext, TierError};

/// Most captions a pass reads ahead to learn a camera's wordings.
const LEARN_LIMIT: usize = 100_000;

/// The tables a pass groups with: `before` for the entries up to `until` (those an
/// interrupted pass learned from, grouped again as it grouped them), `after` for the rest.
pub(super) struct PassWordings {
    until: Option<EntryId>,
    before: Arc<Wordings>,
    after: Arc<Wordings>,
}

impl PassWordings {
    fn one(table: Wordings) -> Self {
        let table = Arc::new(table);
        PassWordings {
            until: None,
            before: table.clone(),
            after: table,
        }
    }

    /// Marks the table finished after the pass's last commit: the next pass learns from what
    /// comes next.
    pub(super) async fn finish(self, ctx: &TierContext, camera: &str) -> Result<(), TierError> {
        let done = CameraWordings {
            pass_finished: true,
            learned_until: None,
            wordings: Arc::unwrap_or_clone(self.after),
        };
        Ok(ctx.source.save_wordings(camera, &done).await?)
    }

    /// The vectors of one chunk's captions (`entries` in order), each with its table.
    pub(super) async fn embed(
        &self,
        ctx: &TierContext,
        norms: &[String],
        entries: &[EntryId],
    ) -> Result<Vec<Option<Arc<Vec<f32>>>>, TierError> {
        let Some(until) = self.until else {
            return embed(ctx, norms, Some(self.after.clone())).await;
        };
        let split = entries.partition_point(|e| *e <= until);
        let mut vectors = embed(ctx, &norms[..split], Some(self.before.clone())).await?;
        vectors.extend(embed(ctx, &norms[split..], Some(self.after.clone())).await?);
        Ok(vectors)
    }
}

/// The camera's wordings for this pass (see [`CameraWordings`]).
///
/// - After a finished pass (or none), the captions after `watermark` (up to [`LEARN_LIMIT`])
///   are grouped with plain vectors and what their events show is added to the table.
/// - After an interrupted pass, its table is used as it is for the entries it learned from,
///   so that the events it left unwritten come out the same; captions that came after those
///   (which it never saw) are learned from on top of it, as the next pass would have.
///
/// The table is kept unfinished, with the last entry learned from, when `keep` is set.
pub(super) async fn learn_wordings(
    ctx: &TierContext,
    camera: &str,
    index: &[u64],
    watermark: Option<EntryId>,
    keep: bool,
) -> Result<PassWordings, TierError> {
    let stored = ctx.source.load_wordings(camera).await?;
    let mut interrupted_until = None;
    if let Some(s) = &stored
        && !s.pass_finished
    {
        let until: Option<EntryId> = s.learned_until.as_deref().and_then(|u| u.parse().ok());
        match until {
            Some(u) if ctx.source.read(camera, Some(u), 1, index).await?.is_empty() => {
                return Ok(PassWordings::one(s.wordings.clone()));
            }
            Some(u) => interrupted_until = Some(u),
            None => {}
        }
    }
    let before = stored.map(|s| s.wordings).unwrap_or_default();
    let mut wordings = before.clone();
    let mut captions = Vec::new();
    // After an interrupted pass, only what came after what it learned from is new.
    let mut after = interrupted_until;
    while captions.len() < LEARN_LIMIT {
        let chunk = read_chunk(ctx, camera, after, index).await?;
        let Some(last) = chunk.last() else { break };
        after = Some(last.entry);
        captions.extend(
            chunk
                .into_iter()
                .filter_map(|raw| raw.caption.ok())
                .filter(|c| watermark.is_none_or(|w| c.entry > w)),
        );
    }
    // Entry, time and normalised text only: plain vectors are made as the learning groups.
    let read: Vec<(EntryId, i64, String)> = captions
        .into_iter()
        .map(|c| (c.entry, c.ts_ms, ctx.normalizer.normalize(&c.text)))
        .collect();
    let grouping = ctx.grouping.clone();
    let wordings = tokio::task::spawn_blocking(move || {
        let lexical = LexicalEmbedder::default();
        let captions: Vec<(EntryId, i64, &str)> =
            read.iter().map(|(e, t, n)| (*e, *t, n.as_str())).collect();
        wordings.learn_from(&grouping, &captions, |t| lexical.vector(t));
        wordings
    })
    .await
    .map_err(|e| EmbedError(format!("the learning thread panicked: {e}")))?;
    if keep {
        let unfinished = CameraWordings {
            pass_finished: false,
            learned_until: after.or(interrupted_until).map(|a| a.to_string()),
            wordings: wordings.clone(),
        };
        ctx.source.save_wordings(camera, &unfinished).await?;
    }
    Ok(match interrupted_until {
        Some(until) => PassWordings {
            until: Some(until),
            before: Arc::new(before),
            after: Arc::new(wordings),
        },
        None => PassWordings::one(wordings),
    })
}
