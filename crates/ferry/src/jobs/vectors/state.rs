//! A migration's saved state: its plan (the id ranges, what it copies where) and each range's
//! progress, kept in the checkpoint store on the state Redis and saved only after the target
//! committed the batch it counts.

use ferry_connectors::redis::{RedisCheckpointStore, RedisEndpoint};
use ferry_core::checkpoint::{CheckpointStore, now_ms};
use ferry_core::jobs::vectors::{IdKind, IdRange, VectorId};
use ferry_core::report::ErrorLog;
use ferry_core::secret::SecretUrl;
use serde::{Deserialize, Serialize};

use super::{VectorsError, VectorsOptions};

/// Format version of [`RunState`].
const STATE_VERSION: u32 = 1;
/// Item errors kept in the state (the count goes on).
pub const ERRORS_KEPT: usize = 100;

/// Connects to the state Redis.
pub async fn connect(url: &SecretUrl) -> Result<RedisEndpoint, VectorsError> {
    Ok(RedisEndpoint::connect(url.expose(), None).await?)
}

/// One id range's progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RangeState {
    /// The ids it covers.
    pub range: IdRange,
    /// The last id whose batch the target committed (`None`: none yet).
    pub cursor: Option<VectorId>,
    /// Whether every id of the range was handled.
    pub done: bool,
    /// Items read.
    pub read: u64,
    /// Items written to the target.
    pub written: u64,
    /// Items without an embedding (nothing to copy).
    pub missing: u64,
    /// Items that failed (invalid embedding, refused by the target).
    pub failed: u64,
}

impl RangeState {
    /// A range not started.
    pub fn new(range: IdRange) -> Self {
        RangeState {
            range,
            cursor: None,
            done: false,
            read: 0,
            written: 0,
            missing: 0,
            failed: 0,
        }
    }

    /// What is left of the range to read.
    pub fn rest(&self) -> IdRange {
        match &self.cursor {
            Some(id) => self.range.after(id.clone()),
            None => self.range.clone(),
        }
    }
}

/// A migration's plan and progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    /// Format version.
    pub version: u32,
    /// The source, as shown (no password), with what is read from it.
    pub source: String,
    /// The target, as shown, with the set or collection.
    pub target: String,
    /// The kind of every id.
    pub id_kind: IdKind,
    /// The embeddings' dimension.
    pub dimension: usize,
    /// Items in the source when the migration was planned.
    pub total: u64,
    /// The id ranges with their progress.
    pub ranges: Vec<RangeState>,
    /// When the migration started (ms since the epoch).
    pub started_ms: i64,
    /// When this state was saved.
    pub updated_ms: i64,
    /// When the last range was done.
    pub finished_ms: Option<i64>,
    /// When the current (or last) run of the migration started.
    pub run_started_ms: i64,
    /// Items read before the current run started (its rate counts only its own).
    pub run_read_at_start: u64,
    /// `host:pid` of the process running it, while it runs.
    pub holder: Option<String>,
    /// The first item errors.
    pub errors: ErrorLog,
}

/// Totals over every range.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    /// Items read.
    pub read: u64,
    /// Items written.
    pub written: u64,
    /// Items without an embedding.
    pub missing: u64,
    /// Items that failed.
    pub failed: u64,
    /// Ranges done.
    pub ranges_done: usize,
    /// Ranges in the plan.
    pub ranges: usize,
}

impl RunState {
    /// A new plan over `ranges`.
    pub fn new(
        options: &VectorsOptions,
        id_kind: IdKind,
        dimension: usize,
        total: u64,
        ranges: Vec<IdRange>,
    ) -> Self {
        let now = now_ms();
        RunState {
            version: STATE_VERSION,
            source: describe_source(options),
            target: describe_target(options),
            id_kind,
            dimension,
            total,
            ranges: ranges.into_iter().map(RangeState::new).collect(),
            started_ms: now,
            updated_ms: now,
            finished_ms: None,
            run_started_ms: now,
            run_read_at_start: 0,
            holder: None,
            errors: ErrorLog::default(),
        }
    }

    /// The saved state of the migration `options` names, if any.
    pub async fn load(
        store: &RedisCheckpointStore,
        options: &VectorsOptions,
    ) -> Result<Option<Self>, VectorsError> {
        let Some(bytes) = store.load(&options.scope()).await? else {
            return Ok(None);
        };
        let state: RunState = serde_json::from_slice(&bytes).map_err(|e| {
            VectorsError::Conflict(format!(
                "the saved state of migration `{}` cannot be read ({e}); start over with --restart",
                options.name
            ))
        })?;
        if state.version != STATE_VERSION {
            return Err(VectorsError::Conflict(format!(
                "the saved state of migration `{}` has format {} (this Ferry writes {STATE_VERSION}); start over with --restart",
                options.name, state.version
            )));
        }
        Ok(Some(state))
    }

    /// Saves it (fenced: refused once another run took the migration over).
    pub async fn save(
        &mut self,
        store: &RedisCheckpointStore,
        options: &VectorsOptions,
    ) -> Result<(), VectorsError> {
        self.updated_ms = now_ms();
        let bytes = serde_json::to_vec(self).map_err(|e| VectorsError::Usage(e.to_string()))?;
        store.save(&options.scope(), &bytes).await?;
        Ok(())
    }

    /// Whether it copies what `options` names (the same source and target).
    pub fn matches(&self, options: &VectorsOptions) -> Result<(), VectorsError> {
        let (source, target) = (describe_source(options), describe_target(options));
        if self.source != source || self.target != target {
            return Err(VectorsError::Conflict(format!(
                "migration `{}` was started from {} to {}, not from {source} to {target}: pass --name to run another migration, or --restart to start this one over",
                options.name, self.source, self.target
            )));
        }
        Ok(())
    }

    /// Totals over every range.
    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            ranges: self.ranges.len(),
            ..Totals::default()
        };
        for r in &self.ranges {
            t.read += r.read;
            t.written += r.written;
            t.missing += r.missing;
            t.failed += r.failed;
            t.ranges_done += usize::from(r.done);
        }
        t
    }

    /// Whether every range is done.
    pub fn is_finished(&self) -> bool {
        self.ranges.iter().all(|r| r.done)
    }
}

fn describe_source(o: &VectorsOptions) -> String {
    let s = &o.source;
    let what = match (&s.key_pattern, &s.table) {
        (Some(p), _) => format!("keys {p} field {}", s.embedding_property),
        (_, Some(t)) => format!("table {t} ({}, {})", s.id_property, s.embedding_property),
        _ => format!(":{} ({}, {})", s.label, s.id_property, s.embedding_property),
    };
    format!("{} {what}", s.url.redacted())
}

fn describe_target(o: &VectorsOptions) -> String {
    format!("{} {}", o.target.url.redacted(), o.target.name())
}
