//! The PostgreSQL side: chunks from the reader are gathered into batches of `--batch` rows (or
//! as many keys); each batch is one transaction holding its rows and the checkpoints of the
//! keys they came from; after the commit the keys read to their end are validated.

use std::time::Instant;

use ferry_connectors::postgres::agentdb::{AgentDbStore, AgentKind, Batch, Written};
use ferry_connectors::redis::RedisEndpoint;
use tokio::sync::mpsc::Receiver;

use super::AgentDbError;
use super::metrics::AgentDbMetric;
use super::outcome::MigrateOutcome;
use super::read::Chunk;
use super::validate::{self, Finished};
use crate::observe::Progress;

/// Gathers chunks into batches and writes them (or, in a dry run, only counts them).
#[derive(Debug)]
pub struct Writer<'a> {
    store: Option<&'a mut AgentDbStore>,
    redis: &'a RedisEndpoint,
    batch_rows: usize,
    pending: Batch,
    finished: Vec<Finished>,
    bar: Progress,
}

impl<'a> Writer<'a> {
    /// A writer to `store` (`None`: a dry run) of batches of `batch_rows` rows.
    pub fn new(
        store: Option<&'a mut AgentDbStore>,
        redis: &'a RedisEndpoint,
        batch_rows: usize,
    ) -> Self {
        Writer {
            store,
            redis,
            batch_rows,
            pending: Batch::default(),
            finished: Vec::new(),
            bar: Progress::new("agentdb items", 0),
        }
    }

    /// Takes chunks until the reader is done (or gone), writing as batches fill up and at the
    /// end.
    pub async fn run(
        mut self,
        mut rx: Receiver<Chunk>,
        outcome: &mut MigrateOutcome,
    ) -> Result<(), AgentDbError> {
        while let Some(chunk) = rx.recv().await {
            self.add(chunk, outcome);
            if self.pending.rows() >= self.batch_rows
                || self.pending.progress.len() >= self.batch_rows
            {
                self.flush(outcome).await?;
            }
        }
        self.flush(outcome).await?;
        self.bar.finish();
        Ok(())
    }

    /// Counts `chunk` and adds it to the pending batch.
    fn add(&mut self, chunk: Chunk, outcome: &mut MigrateOutcome) {
        let kind = chunk.kind;
        let label = kind.as_str();
        metrics::counter!(AgentDbMetric::ItemsReadTotal.name(), "kind" => label)
            .increment(chunk.read);
        if !chunk.failures.is_empty() {
            metrics::counter!(AgentDbMetric::FailedItemsTotal.name(), "kind" => label)
                .increment(chunk.failures.len() as u64);
        }
        self.bar.inc(chunk.read);
        let stats = outcome.kind_mut(kind);
        stats.keys += u64::from(chunk.first);
        stats.items_read += chunk.read;
        stats.already_moved += chunk.skipped;
        stats.rows += chunk.batch.rows() as u64;
        stats.failed += chunk.failures.len() as u64;
        if let Some(agent) = chunk.agent()
            && !outcome.agents.contains(agent)
        {
            outcome.agents.insert(agent.to_string());
        }
        for (item, error) in chunk.failures {
            outcome.errors.push(item, error);
        }
        let Batch {
            experiences,
            q_values,
            policies,
            progress,
        } = chunk.batch;
        self.pending.experiences.extend(experiences);
        self.pending.q_values.extend(q_values);
        self.pending.policies.extend(policies);
        for p in progress {
            if p.done {
                self.finished.push(Finished {
                    kind,
                    agent: p.agent_id.clone(),
                    key: chunk.key.clone(),
                    shown: chunk.shown.clone(),
                    key_type: p.key_type.clone(),
                    failed: p.failed,
                });
            }
            // Chunks of one key come one after another: only the last entry can be its own.
            match self.pending.progress.last_mut() {
                Some(last) if last.agent_id == p.agent_id && last.kind == p.kind => *last = p,
                _ => self.pending.progress.push(p),
            }
        }
    }

    /// Writes the pending batch in one transaction, then validates the keys it finished.
    async fn flush(&mut self, outcome: &mut MigrateOutcome) -> Result<(), AgentDbError> {
        let batch = std::mem::take(&mut self.pending);
        let finished = std::mem::take(&mut self.finished);
        let Some(store) = self.store.as_deref_mut() else {
            return Ok(()); // a dry run
        };
        if batch.progress.is_empty() && batch.rows() == 0 {
            return Ok(());
        }
        let n = outcome.batches + 1;
        let started = Instant::now();
        let written = store
            .write(&batch, || {
                crate::runtime::failpoint(&format!("agentdb-before-commit-{n}"))
            })
            .await?;
        crate::runtime::failpoint(&format!("agentdb-after-commit-{n}"));
        metrics::histogram!(AgentDbMetric::CommitSeconds.name())
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(AgentDbMetric::BatchesTotal.name()).increment(1);
        outcome.batches = n;
        count_written(written, outcome);
        if finished.is_empty() {
            return Ok(());
        }
        let mismatches = validate::check(self.redis, store, &finished).await?;
        for f in &finished {
            outcome.kind_mut(f.kind).validated += 1;
        }
        for m in mismatches {
            outcome.kind_mut(m.kind).mismatched += 1;
            metrics::counter!(AgentDbMetric::ValidationMismatchesTotal.name(), "kind" => m.kind.as_str())
                .increment(1);
            outcome.errors.push(m.shown.clone(), m.message());
        }
        Ok(())
    }
}

/// Adds what a batch wrote to the counts and metrics.
fn count_written(written: Written, outcome: &mut MigrateOutcome) {
    for (kind, n) in [
        (AgentKind::Experiences, written.experiences),
        (AgentKind::QValues, written.q_values),
        (AgentKind::Policy, written.policies),
    ] {
        outcome.kind_mut(kind).rows_written += n;
        metrics::counter!(AgentDbMetric::RowsWrittenTotal.name(), "kind" => kind.as_str())
            .increment(n);
    }
}
