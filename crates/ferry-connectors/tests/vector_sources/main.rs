//! The vector sources against real servers: every item read exactly once in id order over
//! ranges cut from `ids()`, missing and invalid embeddings reported as such, `describe`
//! counts, `get`, `sample`, and hostile names.

mod falkordb;
#[cfg(feature = "neo4j")]
mod neo4j;
mod postgres_table;
mod redis_hashes;

use std::collections::BTreeMap;

use ferry_core::jobs::vectors::{Embedding, IdKind, IdRange, SourceItem, VectorId, VectorSource};

/// Reads every item of `kind`: ranges split at every `cut_every`-th id of `ids()`, each read
/// in pages of `limit`; checks that each page stays in its range and in id order.
pub async fn walk<S: VectorSource>(
    source: &S,
    kind: IdKind,
    cut_every: usize,
    limit: usize,
) -> Vec<SourceItem> {
    let all = source.ids(&IdRange::all(kind), usize::MAX).await.unwrap();
    let cuts: Vec<VectorId> = all
        .iter()
        .skip(cut_every - 1)
        .step_by(cut_every)
        .cloned()
        .collect();
    let mut out: Vec<SourceItem> = Vec::new();
    for range in IdRange::split(kind, &cuts) {
        let mut rest = range.clone();
        loop {
            let page = source.page(&rest, limit).await.unwrap();
            assert!(page.len() <= limit, "{} > {limit}", page.len());
            for item in &page {
                assert!(range.contains(&item.id), "{:?} outside {range:?}", item.id);
                if let Some(last) = out.last() {
                    assert!(last.id < item.id, "{:?} after {:?}", item.id, last.id);
                }
                out.push(item.clone());
            }
            match page.last() {
                Some(last) if page.len() == limit => rest = range.after(last.id.clone()),
                _ => break,
            }
        }
    }
    out
}

/// The ids of `items`.
pub fn ids(items: &[SourceItem]) -> Vec<VectorId> {
    items.iter().map(|i| i.id.clone()).collect()
}

/// The items by id.
pub fn by_id(items: Vec<SourceItem>) -> BTreeMap<VectorId, Embedding> {
    items.into_iter().map(|i| (i.id, i.embedding)).collect()
}

/// Whether `e` is invalid with a reason that mentions `what`.
pub fn invalid_with(e: &Embedding, what: &str) -> bool {
    matches!(e, Embedding::Invalid(reason) if reason.contains(what))
}
