//! Planning a migration: what the source holds, the target made ready, and the ids cut into
//! ranges that workers read in parallel.

use ferry_core::jobs::vectors::{
    IdKind, IdRange, SourceInfo, VectorId, VectorSource, VectorTarget,
};

use super::super::{VectorsContext, VectorsError};

/// Ids read per page while cutting ranges.
const ID_PAGE: usize = 10_000;

/// The id kind and the embeddings' dimension a migration copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// The kind of every id.
    pub kind: IdKind,
    /// The dimension of the embeddings (the most common one; others fail per item).
    pub dimension: usize,
}

/// The shape of what `info` describes, or why it cannot be migrated (`None`: nothing to copy).
pub fn shape(info: &SourceInfo) -> Result<Option<Shape>, VectorsError> {
    if info.int_ids > 0 && info.str_ids > 0 {
        return Err(VectorsError::Usage(format!(
            "the source's ids mix integers ({}) and strings ({}); a vector set element or a Milvus primary key has one kind: make the ids one kind first",
            info.int_ids, info.str_ids
        )));
    }
    let Some(kind) = info.id_kind() else {
        return Ok(None);
    };
    let dimension = info
        .dimensions
        .iter()
        .max_by_key(|&(d, n)| (*n, std::cmp::Reverse(*d)))
        .map(|(d, _)| *d);
    Ok(dimension.map(|dimension| Shape { kind, dimension }))
}

/// Cuts the ids of `kind` into about `parts` ranges of equal size (walking the ids once).
pub async fn cut_ranges(
    ctx: &VectorsContext,
    kind: IdKind,
    total: u64,
    parts: usize,
) -> Result<Vec<IdRange>, VectorsError> {
    let per_range = total.div_ceil(parts.max(1) as u64).max(1);
    let mut cuts: Vec<VectorId> = Vec::new();
    let mut range = IdRange::all(kind);
    let mut seen = 0_u64;
    loop {
        let ids = ctx.source.ids(&range, ID_PAGE).await?;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        for id in ids.iter() {
            seen += 1;
            if seen.is_multiple_of(per_range) {
                cuts.push(id.clone());
            }
        }
        if ids.len() < ID_PAGE {
            break;
        }
        range = range.after(last);
    }
    // The last cut would leave an empty final range.
    if seen.is_multiple_of(per_range) {
        cuts.pop();
    }
    Ok(IdRange::split(kind, &cuts))
}

/// Makes the target ready for `shape` (creates a collection; refuses a misfit).
pub async fn prepare_target(ctx: &VectorsContext, shape: Shape) -> Result<(), VectorsError> {
    ctx.target.prepare(shape.dimension, shape.kind).await?;
    Ok(())
}
