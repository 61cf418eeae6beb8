//! Upserts and deletes, one writer at a time.

use std::collections::HashMap;

use ferry_core::jobs::vectors::{IdKind, ItemFailure, VectorId, VectorResult};
use milvus::v2::prelude::{DeleteRequest, FieldData, InsertRequest, UpsertRequest};

use super::MilvusTarget;
use super::filter::{self, ID_FIELD, VECTOR_FIELD};
use super::schema::Layout;

type Item = (VectorId, Vec<f32>);

/// Splits `items` into those the collection can take (one per id, the last one given wins)
/// and failures for the rest: wrong dimension, wrong id kind, an over-long string id, or a
/// component that is not a finite number.
pub fn screen<'a>(items: &'a [Item], layout: &Layout) -> (Vec<&'a Item>, Vec<ItemFailure>) {
    let mut failures = Vec::new();
    let mut last: HashMap<&VectorId, usize> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match refusal(item, layout) {
            Some(error) => failures.push(ItemFailure {
                id: item.0.clone(),
                error,
            }),
            None => {
                last.insert(&item.0, i);
            }
        }
    }
    let mut keep: Vec<usize> = last.into_values().collect();
    keep.sort_unstable();
    (keep.into_iter().map(|i| &items[i]).collect(), failures)
}

fn refusal((id, vector): &Item, layout: &Layout) -> Option<String> {
    if vector.len() != layout.dimension {
        return Some(format!(
            "the vector has {} dimensions, the collection takes {}",
            vector.len(),
            layout.dimension
        ));
    }
    if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
        return Some(format!("component {i} is not a finite number"));
    }
    match (id, layout.kind) {
        (VectorId::Int(_), IdKind::Int) => None,
        (VectorId::Str(s), IdKind::Str) if s.len() > layout.max_id_bytes => Some(format!(
            "the id is {} bytes long, the collection's ids take at most {}",
            s.len(),
            layout.max_id_bytes
        )),
        (VectorId::Str(_), IdKind::Str) => None,
        (VectorId::Int(_), IdKind::Str) => {
            Some("an integer id, the collection's ids are strings".into())
        }
        (VectorId::Str(_), IdKind::Int) => {
            Some("a string id, the collection's ids are integers".into())
        }
    }
}

/// The id column of `ids`, all of `kind` (screened before).
fn id_column(ids: impl Iterator<Item = VectorId>, kind: IdKind) -> FieldData {
    match kind {
        IdKind::Int => FieldData::int64(
            ID_FIELD,
            ids.filter_map(|id| match id {
                VectorId::Int(i) => Some(i),
                VectorId::Str(_) => None,
            })
            .collect(),
        ),
        IdKind::Str => FieldData::varchar(
            ID_FIELD,
            ids.filter_map(|id| match id {
                VectorId::Str(s) => Some(s),
                VectorId::Int(_) => None,
            })
            .collect(),
        ),
    }
}

impl MilvusTarget {
    pub(super) async fn upsert_items(&self, items: &[Item]) -> VectorResult<Vec<ItemFailure>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let layout = self.layout().await?;
        let (good, mut failures) = screen(items, &layout);
        let _writing = self.writer.lock().await;
        let sizes = filter::upsert_batches(
            good.len(),
            layout.dimension,
            layout.kind,
            self.options.max_request_bytes,
        );
        let mut rest = &good[..];
        for n in sizes {
            let (batch, tail) = rest.split_at(n);
            rest = tail;
            failures.extend(self.upsert_batch(batch, layout.kind).await?);
        }
        Ok(failures)
    }

    async fn upsert_batch(&self, batch: &[&Item], kind: IdKind) -> VectorResult<Vec<ItemFailure>> {
        let ids = id_column(batch.iter().map(|(id, _)| id.clone()), kind);
        let vectors =
            FieldData::float_vector(VECTOR_FIELD, batch.iter().map(|(_, v)| v.clone()).collect());
        let insert = InsertRequest::builder()
            .collection_name(self.collection())
            .columns(vec![ids, vectors])
            .build()
            .map_err(|e| self.place.backend("upserting", e))?;
        let req = UpsertRequest::builder()
            .insert(insert)
            .build()
            .map_err(|e| self.place.backend("upserting", e))?;
        let done = self.client.upsert(req).await;
        let done = done.map_err(|e| self.place.sdk("upserting", e))?;
        Ok(done
            .failed_indices()
            .iter()
            .filter_map(|&i| batch.get(i as usize))
            .map(|(id, _)| ItemFailure {
                id: id.clone(),
                error: "Milvus refused the row".into(),
            })
            .collect())
    }

    pub(super) async fn delete_ids(&self, ids: &[VectorId]) -> VectorResult<u64> {
        let Some(layout) = self.layout_if_exists().await? else {
            return Ok(0);
        };
        let _writing = self.writer.lock().await;
        let mut deleted = 0;
        let wanted: Vec<VectorId> = ids
            .iter()
            .filter(|id| id.kind() == layout.kind)
            .cloned()
            .collect();
        for chunk in wanted.chunks(filter::delete_chunk()) {
            // Milvus counts the ids a delete names, not those that existed: look first.
            let existing = self.existing(chunk).await?;
            if existing.is_empty() {
                continue;
            }
            let req = DeleteRequest::builder()
                .collection_name(self.collection())
                .filter(filter::id_in(&existing))
                .build()
                .map_err(|e| self.place.backend("deleting", e))?;
            let done = self.client.delete(req).await;
            done.map_err(|e| self.place.sdk("deleting", e))?;
            deleted += existing.len() as u64;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(kind: IdKind) -> Layout {
        Layout {
            dimension: 2,
            kind,
            max_id_bytes: 4,
            metric: None,
        }
    }

    #[test]
    fn items_that_do_not_fit_are_failures_and_the_rest_is_kept_once() {
        let items: Vec<Item> = vec![
            (VectorId::Int(1), vec![0.0, 1.0]),
            (VectorId::Int(2), vec![0.0]),
            (VectorId::Int(3), vec![f32::NAN, 1.0]),
            (VectorId::from("x"), vec![0.0, 1.0]),
            (VectorId::Int(1), vec![2.0, 3.0]),
            (VectorId::Int(4), vec![5.0, 6.0]),
        ];
        let (good, failures) = screen(&items, &layout(IdKind::Int));
        let failed: Vec<_> = failures.iter().map(|f| f.id.clone()).collect();
        assert_eq!(
            failed,
            vec![VectorId::Int(2), VectorId::Int(3), VectorId::from("x")]
        );
        assert!(failures[0].error.contains("1 dimensions"));
        assert_eq!(good, vec![&items[4], &items[5]]);
    }

    #[test]
    fn string_ids_over_the_key_length_are_failures() {
        let items: Vec<Item> = vec![
            (VectorId::from("abcd"), vec![0.0, 1.0]),
            (VectorId::from("abcde"), vec![0.0, 1.0]),
            (VectorId::Int(7), vec![0.0, 1.0]),
        ];
        let (good, failures) = screen(&items, &layout(IdKind::Str));
        assert_eq!(good, vec![&items[0]]);
        assert_eq!(failures.len(), 2);
    }

    #[test]
    fn id_columns_match_the_key_type() {
        let ids = [VectorId::Int(1), VectorId::Int(2)];
        let column = id_column(ids.iter().cloned(), IdKind::Int);
        assert_eq!(column.as_int64(), Some(&[1_i64, 2][..]));
        let column = id_column([VectorId::from("a")].into_iter(), IdKind::Str);
        assert_eq!(column.as_varchar(), Some(&["a".to_string()][..]));
    }
}
