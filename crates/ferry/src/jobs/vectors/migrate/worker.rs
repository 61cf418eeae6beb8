//! One worker: reads its id range page by page (keyset, in id order) and upserts each page
//! into the target while it reads the next; reports every committed batch to the coordinator.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::jobs::vectors::{
    Embedding, IdRange, SourceItem, VectorError, VectorId, VectorResult, VectorSource, VectorTarget,
};
use ferry_core::retry::Backoff;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::super::metrics::VectorsMetric;
use super::super::{AnySource, AnyTarget};
use super::plan::Shape;

/// How long a store may keep failing before the run stops (its checkpoint stays).
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// What one committed batch did.
#[derive(Debug, Default)]
pub struct BatchDone {
    /// The range's index in the plan.
    pub range: usize,
    /// The last id of the batch: the range's new cursor.
    pub last: Option<VectorId>,
    /// Whether the range has no ids after this batch.
    pub done: bool,
    /// Items read.
    pub read: u64,
    /// Items written.
    pub written: u64,
    /// Items without an embedding.
    pub missing: u64,
    /// Failed items with their errors.
    pub failures: Vec<(String, String)>,
}

/// Reads and writes the ranges it takes from the queue.
#[derive(Debug, Clone)]
pub struct Worker {
    /// The source.
    pub source: Arc<AnySource>,
    /// The target.
    pub target: Arc<AnyTarget>,
    /// What is copied.
    pub shape: Shape,
    /// Items per page and upsert.
    pub batch: usize,
    /// Read only: nothing is written.
    pub dry_run: bool,
    /// Stops between batches.
    pub stop: CancellationToken,
}

/// Runs `op` until it succeeds, a permanent error, `stop`, or [`GIVE_UP_AFTER`] of failures.
macro_rules! retrying {
    ($stop:expr, $what:expr, $op:expr) => {{
        let mut backoff = Backoff::for_services();
        let first_failure = Instant::now();
        loop {
            match $op.await {
                Ok(v) => break Ok(v),
                Err(e)
                    if ferry_core::error::Classify::retryable(&e)
                        && first_failure.elapsed() < GIVE_UP_AFTER
                        && !$stop.is_cancelled() =>
                {
                    tracing::warn!(error = %e, "{} failed; retrying", $what);
                    metrics::counter!(VectorsMetric::RetriesTotal.name()).increment(1);
                    tokio::time::sleep(backoff.next()).await;
                }
                Err(e) => break Err::<_, VectorError>(e),
            }
        }
    }};
}

impl Worker {
    /// Handles `rest` (what is left of range `index`) until it is done or `stop`.
    pub async fn run_range(
        &self,
        index: usize,
        mut rest: IdRange,
        progress: &mpsc::UnboundedSender<BatchDone>,
    ) -> VectorResult<()> {
        let mut page = retrying!(
            self.stop,
            "reading the source",
            self.source.page(&rest, self.batch)
        )?;
        loop {
            let started = Instant::now();
            let Some(last) = page.last().map(|i| i.id.clone()) else {
                let _ = progress.send(BatchDone {
                    range: index,
                    done: true,
                    ..BatchDone::default()
                });
                return Ok(());
            };
            let full = page.len() >= self.batch;
            let mut done = self.sort(index, &page);
            let writes = write_list(&page, self.shape.dimension);
            let next_rest = rest.after(last.clone());
            let write = async {
                if self.dry_run || writes.is_empty() {
                    return Ok(Vec::new());
                }
                retrying!(
                    self.stop,
                    "writing to the target",
                    self.target.upsert(&writes)
                )
            };
            let read_next = async {
                if !full || self.stop.is_cancelled() {
                    return Ok(Vec::new());
                }
                retrying!(
                    self.stop,
                    "reading the source",
                    self.source.page(&next_rest, self.batch)
                )
            };
            let (refused, next) = tokio::join!(write, read_next);
            let refused = refused?;
            crate::runtime::failpoint("vectors-after-upsert");
            let refused_ids: std::collections::HashSet<&VectorId> =
                refused.iter().map(|f| &f.id).collect();
            done.written = writes
                .iter()
                .filter(|(id, _)| !refused_ids.contains(id))
                .count() as u64;
            if self.dry_run {
                done.written = writes.len() as u64;
            }
            for f in &refused {
                done.failures.push((f.id.to_text(), f.error.clone()));
            }
            done.last = Some(last);
            done.done = !full;
            metrics::histogram!(VectorsMetric::BatchSeconds.name())
                .record(started.elapsed().as_secs_f64());
            let _ = progress.send(done);
            if !full || self.stop.is_cancelled() {
                return Ok(());
            }
            page = next?;
            rest = next_rest;
        }
    }

    /// Counts a page's items by what they hold; records those that cannot be copied.
    fn sort(&self, index: usize, page: &[SourceItem]) -> BatchDone {
        let mut done = BatchDone {
            range: index,
            read: page.len() as u64,
            ..BatchDone::default()
        };
        for item in page {
            match &item.embedding {
                Embedding::Missing => done.missing += 1,
                Embedding::Invalid(why) => done
                    .failures
                    .push((item.id.to_text(), format!("invalid embedding: {why}"))),
                Embedding::Vector(v) if v.len() != self.shape.dimension => done.failures.push((
                    item.id.to_text(),
                    format!(
                        "embedding has {} dimensions, the migration copies {}-dimensional ones",
                        v.len(),
                        self.shape.dimension
                    ),
                )),
                Embedding::Vector(_) => {}
            }
        }
        done
    }
}

/// The items of a page that are copied: valid embeddings of the migration's dimension.
fn write_list(page: &[SourceItem], dimension: usize) -> Vec<(VectorId, Vec<f32>)> {
    page.iter()
        .filter_map(|item| match &item.embedding {
            Embedding::Vector(v) if v.len() == dimension => Some((item.id.clone(), v.clone())),
            _ => None,
        })
        .collect()
}
