//! The `tier` job: keep Redis as the hot cache of camera captions and drain what ages out into a
//! durable store, merging each camera's consecutive near-duplicate captions into time-range
//! events.
//!
//! One pass, per camera, under a per-camera lease (so two `ferry serve` replicas never drain one
//! camera at once): read the captions oldest first in chunks, group them ([`ferry_core::jobs::tier`]),
//! and for every event whose oldest unstored caption is *due* (older than `hot_window -
//! migrate_before`): **1.** upsert the events and the camera's watermark in one store
//! transaction, **2.** delete exactly the entries those events consumed (by id, never newer
//! ones), **3.** record the run in the history. A crash between any two steps is repaired by the
//! next pass: entries at or before the stored watermark are only deleted, and event ids are
//! deterministic, so upserts never duplicate.
//!
//! Steps 1 and 2 are fenced by the lease's token ([`ferry_core::checkpoint::Lease::token`]): the
//! store refuses a commit whose token is lower than one it has already recorded for the camera,
//! and the delete checks the camera's fence in the same Lua script when the lease store lives
//! on the captions' Redis (the `source` module says where it cannot), so a pass that lost its
//! lease while paused writes and deletes nothing once another replica took the camera over.

pub mod args;
pub mod cli;
pub mod config;
pub mod demo;
mod drain;
mod learn;
pub mod metrics;
pub mod routes;
pub mod service;
mod similarity;
mod sink;
mod source;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ferry_connectors::redis::{ConnError, RedisEndpoint};
use ferry_core::checkpoint::StoreError;
use ferry_core::error::{Classify, ErrorClass};
use ferry_core::jobs::tier::normalize::{DEFAULT_BOILERPLATE_PREFIXES, Normalizer};
use ferry_core::jobs::tier::{
    EmbedError, EventStore, EventStoreError, GroupingConfig, GroupingConfigError, RunRecord,
    StoreCounts, TierEvent,
};
use ferry_core::secret::{ExposeSecret, Secret, SecretUrl};
use serde::Serialize;

use crate::store::{AnyStore, OpenStoreError};

pub use drain::{CameraOutcome, PassOutcome, PassRequest, run_pass};
pub use similarity::{Backend, SharedSimilarity, Similarity};
pub use sink::AnyEventStore;
pub use source::{CaptionSource, Layout, decode_embedding, encode_embedding};

/// Checked options of the tier job.
#[derive(Debug, Clone)]
pub struct TierOptions {
    /// The Redis holding the captions (`{:?}` shows it redacted).
    pub redis: SecretUrl,
    /// Password overriding the URL's.
    pub redis_password: Option<Secret>,
    /// The durable store: `sqlite://…`, `postgres://…`, `falkordb://…`.
    pub store: SecretUrl,
    /// Where leases live (default: the caption Redis).
    pub checkpoint: Option<SecretUrl>,
    /// Input layout.
    pub layout: Layout,
    /// Stream prefix (`captions:`) or key prefix (`caption:`); `None`: the layout's default.
    pub prefix: Option<String>,
    /// How long Redis keeps captions (ms).
    pub hot_window_ms: i64,
    /// Migrate this long before a caption would expire (ms).
    pub migrate_before_ms: i64,
    /// Similarity backend.
    pub similarity: Backend,
    /// Threshold; `None`: the backend's calibrated default.
    pub similarity_threshold: Option<f32>,
    /// Model directory for `minilm`.
    pub model_dir: Option<PathBuf>,
    /// Consecutive dissimilar captions needed to split.
    pub split_confirm: usize,
    /// A longer gap closes an event (ms).
    pub max_gap_ms: i64,
    /// A split of an event younger than this (ms) is undone when the next event is alike.
    pub min_duration_ms: i64,
    /// Longest event; a continuation follows (ms).
    pub max_duration_ms: i64,
    /// Distinct captions kept per event.
    pub max_distinct_captions: usize,
    /// Boilerplate prefixes removed before comparing.
    pub boilerplate_prefixes: Vec<String>,
    /// Entries read per Redis round trip.
    pub chunk_size: usize,
    /// Events per store transaction.
    pub commit_events: usize,
}

impl Default for TierOptions {
    fn default() -> Self {
        let g = GroupingConfig::default();
        TierOptions {
            redis: "redis://127.0.0.1:6379/0".into(),
            redis_password: None,
            store: "sqlite://ferry.db".into(),
            checkpoint: None,
            layout: Layout::Stream,
            prefix: None,
            hot_window_ms: 7_200_000,
            migrate_before_ms: 300_000,
            similarity: Backend::Minilm,
            similarity_threshold: None,
            model_dir: None,
            split_confirm: g.split_confirm,
            max_gap_ms: g.max_gap_ms,
            min_duration_ms: g.min_duration_ms,
            max_duration_ms: g.max_duration_ms,
            max_distinct_captions: g.max_distinct_captions,
            boilerplate_prefixes: DEFAULT_BOILERPLATE_PREFIXES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            chunk_size: 1000,
            commit_events: 500,
        }
    }
}

impl TierOptions {
    /// The grouping parameters, validated.
    pub fn grouping(&self) -> Result<GroupingConfig, TierError> {
        let g = GroupingConfig {
            similarity_threshold: self
                .similarity_threshold
                .unwrap_or(self.similarity.default_threshold()),
            split_confirm: self.split_confirm,
            max_gap_ms: self.max_gap_ms,
            min_duration_ms: self.min_duration_ms,
            max_duration_ms: self.max_duration_ms,
            max_distinct_captions: self.max_distinct_captions,
        };
        g.validate()?;
        Ok(g)
    }

    /// Checks everything that can be checked without connecting.
    pub fn validate(&self) -> Result<(), TierError> {
        self.grouping()?;
        if self.hot_window_ms <= 0 {
            return Err(TierError::Options("hot_window must be positive".into()));
        }
        if self.migrate_before_ms <= 0 || self.migrate_before_ms >= self.hot_window_ms {
            return Err(TierError::Options(
                "migrate_before must be positive and shorter than hot_window".into(),
            ));
        }
        if self.chunk_size == 0 || self.commit_events == 0 {
            return Err(TierError::Options(
                "chunk_size and commit_events must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Age in ms after which a caption is due for migration.
    pub fn due_age_ms(&self) -> i64 {
        self.hot_window_ms - self.migrate_before_ms
    }

    fn prefix(&self) -> String {
        self.prefix.clone().unwrap_or_else(|| {
            match self.layout {
                Layout::Stream => "captions:",
                Layout::Keys => "caption:",
            }
            .to_string()
        })
    }
}

/// Fatal errors of the tier job (per-camera failures are counted in the outcome instead).
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// An option is out of range.
    #[error("tier options: {0}")]
    Options(String),
    /// Grouping parameters are out of range.
    #[error(transparent)]
    Grouping(#[from] GroupingConfigError),
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] ConnError),
    /// The durable store failed.
    #[error(transparent)]
    Store(#[from] EventStoreError),
    /// The lease store failed.
    #[error(transparent)]
    Lease(#[from] StoreError),
    /// The lease store could not be opened.
    #[error(transparent)]
    OpenLease(#[from] OpenStoreError),
    /// The similarity backend failed to load or run.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// A camera id is unusable.
    #[error("camera id `{0}` is empty or contains `:`/whitespace")]
    Camera(String),
    /// A newer run took the camera's lease over: Redis refused this pass's delete.
    #[error(
        "camera {camera} was taken over by a newer run (the fence of `{scope}` in Redis is {current}, this run's token {token}); this pass stops without deleting"
    )]
    Fenced {
        /// The camera.
        camera: String,
        /// The lease scope (`tier/<camera>`).
        scope: String,
        /// This run's fencing token.
        token: u64,
        /// The fence found in Redis (`missing` when absent).
        current: String,
    },
}

impl Classify for TierError {
    fn class(&self) -> ErrorClass {
        match self {
            TierError::Options(_)
            | TierError::Grouping(_)
            | TierError::Camera(_)
            | TierError::Embed(_) => ErrorClass::User,
            TierError::Redis(e) => e.class(),
            TierError::Store(e) => e.class(),
            TierError::Lease(e) => e.class(),
            TierError::OpenLease(_) | TierError::Fenced { .. } => ErrorClass::External,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            TierError::Fenced { .. } => false,
            TierError::Store(e) => e.retryable(),
            TierError::Lease(e) => e.retryable(),
            other => other.class() == ErrorClass::External,
        }
    }
}

/// Everything a pass needs, connected once and shared (cheap to clone).
#[derive(Debug, Clone)]
pub struct TierContext {
    /// The options.
    pub options: Arc<TierOptions>,
    /// Validated grouping parameters.
    pub grouping: GroupingConfig,
    /// The captions.
    pub source: Arc<CaptionSource>,
    /// The durable store.
    pub store: Arc<AnyEventStore>,
    /// Where per-camera leases live.
    pub leases: Arc<AnyStore>,
    /// The similarity backend with its cache.
    pub similarity: SharedSimilarity,
    /// Caption normaliser.
    pub normalizer: Arc<Normalizer>,
}

impl TierContext {
    /// Validates the options, connects to Redis and the store (creating or upgrading its
    /// schema) and loads the similarity backend.
    pub async fn connect(options: TierOptions) -> Result<Self, TierError> {
        options.validate()?;
        let grouping = options.grouping()?;
        let password = options.redis_password.as_ref().map(|p| p.expose_secret());
        let redis = RedisEndpoint::connect(options.redis.expose(), password).await?;
        let leases = AnyStore::open(
            options.checkpoint.as_ref().map(SecretUrl::expose),
            options.redis.expose(),
            password,
        )
        .await?;
        let store = AnyEventStore::open(options.store.expose()).await?;
        let backend = options.similarity;
        let model_dir = options.model_dir.clone();
        let similarity = tokio::task::spawn_blocking(move || Similarity::load(backend, model_dir))
            .await
            .map_err(|e| EmbedError(format!("loading the model panicked: {e}")))??;
        let source = CaptionSource::new(redis, options.layout, options.prefix())
            .with_fences_on(leases.redis_endpoint());
        Ok(TierContext {
            normalizer: Arc::new(Normalizer::new(&options.boilerplate_prefixes)),
            options: Arc::new(options),
            grouping,
            source: Arc::new(source),
            store: Arc::new(store),
            leases: Arc::new(leases),
            similarity: Arc::new(Mutex::new(similarity)),
        })
    }
}

/// One camera as `tier status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CameraStatus {
    /// The camera.
    pub camera_id: String,
    /// Entries in Redis.
    pub entries: u64,
    /// Age of the oldest entry (ms), if any.
    pub oldest_age_ms: Option<i64>,
    /// Whether the oldest entry is due for migration.
    pub due: bool,
    /// Last entry stored in an event.
    pub watermark: Option<String>,
    /// The open event written early, if any.
    pub open_event_id: Option<String>,
}

/// What `tier status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct TierStatus {
    /// The store backend.
    pub store: &'static str,
    /// The similarity backend.
    pub similarity: &'static str,
    /// The input layout.
    pub layout: Layout,
    /// Captions due at this age (ms).
    pub due_age_ms: i64,
    /// Store row counts.
    pub counts: StoreCounts,
    /// Cameras with captions in Redis.
    pub cameras: Vec<CameraStatus>,
    /// Captions in Redis in all.
    pub pending_captions: u64,
    /// The last recorded run.
    pub last_run: Option<RunRecord>,
}

/// The state of Redis and the store.
pub async fn status(ctx: &TierContext) -> Result<TierStatus, TierError> {
    let (cameras, index) = ctx.source.cameras().await?;
    let now = now_ms();
    let mut out = Vec::with_capacity(cameras.len());
    let mut pending = 0;
    for camera in cameras {
        let idx = index.get(&camera).map(Vec::as_slice).unwrap_or(&[]);
        let entries = ctx.source.len(&camera, idx).await?;
        pending += entries;
        let oldest = ctx.source.oldest(&camera, idx).await?;
        let state = ctx.store.camera_state(&camera).await?.unwrap_or_default();
        let oldest_age_ms = oldest.map(|e| now - e.ms as i64);
        out.push(CameraStatus {
            due: oldest_age_ms.is_some_and(|a| a >= ctx.options.due_age_ms()),
            camera_id: camera,
            entries,
            oldest_age_ms,
            watermark: state.watermark.map(|w| w.to_string()),
            open_event_id: state.open.map(|o| o.id),
        });
    }
    Ok(TierStatus {
        store: ctx.store.backend(),
        similarity: ctx.options.similarity.as_str(),
        layout: ctx.options.layout,
        due_age_ms: ctx.options.due_age_ms(),
        counts: ctx.store.counts().await?,
        cameras: out,
        pending_captions: pending,
        last_run: ctx.store.history(1).await?.into_iter().next(),
    })
}

/// The newest `limit` runs.
pub async fn history(ctx: &TierContext, limit: usize) -> Result<Vec<RunRecord>, TierError> {
    Ok(ctx.store.history(limit).await?)
}

/// The captions of one camera still in Redis, oldest first (at most `limit`).
#[derive(Debug, Clone, Serialize)]
pub struct HotCaptions {
    /// The camera.
    pub camera_id: String,
    /// Entries the camera holds in all.
    pub entries: u64,
    /// The oldest `limit` of them.
    pub captions: Vec<HotCaption>,
}

/// One caption in Redis.
#[derive(Debug, Clone, Serialize)]
pub struct HotCaption {
    /// Its capture time (the entry's time when unreadable), Unix ms.
    pub ts_ms: i64,
    /// Its text, when it is a readable caption.
    pub caption: Option<String>,
    /// Why it is not readable.
    pub error: Option<String>,
}

/// The captions of `camera` still in Redis, oldest first.
pub async fn hot(ctx: &TierContext, camera: &str, limit: usize) -> Result<HotCaptions, TierError> {
    let (_, index) = ctx.source.cameras().await?;
    let idx = index.get(camera).map(Vec::as_slice).unwrap_or(&[]);
    let entries = ctx.source.len(camera, idx).await?;
    let raw = ctx.source.read(camera, None, limit, idx).await?;
    let captions = raw
        .into_iter()
        .map(|r| {
            let (ts_ms, caption, error) = match r.caption {
                Ok(c) => (c.ts_ms, Some(c.text), None),
                Err(e) => (r.entry.ms as i64, None, Some(e)),
            };
            HotCaption {
                ts_ms,
                caption,
                error,
            }
        })
        .collect();
    Ok(HotCaptions {
        camera_id: camera.to_string(),
        entries,
        captions,
    })
}

/// The newest stored events.
pub async fn events(
    ctx: &TierContext,
    camera: Option<&str>,
    limit: usize,
) -> Result<Vec<TierEvent>, TierError> {
    Ok(ctx.store.events(camera, limit).await?)
}

/// What `tier clear` did.
#[derive(Debug, Clone, Serialize)]
pub struct ClearOutcome {
    /// The camera.
    pub camera_id: String,
    /// The migration pass run first (absent with `--discard`).
    pub migrated: Option<PassOutcome>,
    /// Entries dropped without migrating (with `--discard`).
    pub discarded: u64,
    /// Entries left because they are not readable captions.
    pub left: u64,
}

/// Empties one camera's captions from Redis: migrates everything first (due or not), or with
/// `discard` drops them without storing.
pub async fn clear(
    ctx: &TierContext,
    camera: &str,
    discard: bool,
    trigger: &str,
    stop: tokio_util::sync::CancellationToken,
) -> Result<ClearOutcome, TierError> {
    check_camera(camera)?;
    if discard {
        let (_, index) = ctx.source.cameras().await?;
        let idx = index.get(camera).map(Vec::as_slice).unwrap_or(&[]);
        let discarded = drain::discard(ctx, camera, idx, stop).await?;
        return Ok(ClearOutcome {
            camera_id: camera.to_string(),
            migrated: None,
            discarded,
            left: 0,
        });
    }
    let outcome = run_pass(
        ctx,
        PassRequest {
            camera: Some(camera.to_string()),
            all: true,
            dry_run: false,
            trigger: trigger.to_string(),
        },
        stop,
    )
    .await?;
    let left = outcome.cameras.iter().map(|c| c.malformed).sum();
    Ok(ClearOutcome {
        camera_id: camera.to_string(),
        migrated: Some(outcome),
        discarded: 0,
        left,
    })
}

/// Rejects camera ids that cannot name a stream or key.
pub fn check_camera(camera: &str) -> Result<(), TierError> {
    if camera.is_empty() || camera.contains(':') || camera.chars().any(char::is_whitespace) {
        Err(TierError::Camera(camera.to_string()))
    } else {
        Ok(())
    }
}

/// Unix time in ms.
pub fn now_ms() -> i64 {
    ferry_core::checkpoint::now_ms()
}
