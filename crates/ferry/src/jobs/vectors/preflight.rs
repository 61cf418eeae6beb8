//! `ferry vectors preflight`: is everything ready for the migration? Connects to every store,
//! surveys the source, checks that the target fits, and estimates the target's storage and
//! memory and the run's duration from a sample copied into a scratch set or collection.

use std::time::Instant;

use chrono::{DateTime, Utc};
use ferry_core::jobs::vectors::{
    Embedding, IdRange, SourceInfo, TargetInfo, VectorId, VectorSource, VectorTarget,
};
use serde::Serialize;

use super::migrate::plan::{self, Shape};
use super::mode;
use super::state::RunState;
use super::{AnyTarget, VectorsContext, VectorsError};

/// Items copied into the scratch target to measure the write rate and memory.
const SAMPLE: usize = 500;

/// One check and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// Estimates from the measured sample.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Estimate {
    /// Items copied into the scratch target.
    pub sample_items: usize,
    /// Items read per second from the source (one reader).
    pub read_per_second: f64,
    /// Vectors written per second into the target (one writer).
    pub write_per_second: f64,
    /// Raw vector bytes the target will hold (4 bytes a component).
    pub vector_bytes: u64,
    /// Memory the target will take, from the sample's measured footprint where the store tells
    /// it (vector sets), else from the raw size and the index's usual overhead.
    pub memory_bytes: u64,
    /// Expected duration of the migration.
    pub seconds: f64,
}

/// The outcome of `ferry vectors preflight`.
#[derive(Debug, Clone, Serialize)]
pub struct PreflightOutcome {
    /// When it started.
    #[serde(skip)]
    pub started: DateTime<Utc>,
    /// Whether the migration can start.
    pub ready: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// What the source holds.
    pub source: SourceInfo,
    /// What the target holds.
    pub target: TargetInfo,
    /// The state Redis's version.
    pub state_version: String,
    /// The storage mode applications read now.
    pub mode: String,
    /// The saved migration's progress, if one was started.
    pub saved_progress: Option<super::state::Totals>,
    /// Estimates from the sample (absent when a check failed first).
    pub estimate: Option<Estimate>,
    /// Warnings that do not block the migration.
    pub warnings: Vec<String>,
}

/// Runs the checks.
pub async fn preflight(ctx: &VectorsContext) -> Result<PreflightOutcome, VectorsError> {
    let started = Utc::now();
    let mut checks = Vec::new();
    let mut warnings = Vec::new();
    let mut check = |name: &str, ok: bool, detail: String| {
        checks.push(Check {
            name: name.into(),
            ok,
            detail,
        });
    };
    let source = ctx.source.describe().await?;
    check(
        "source",
        true,
        format!("{} {} reachable", source.store, source.version),
    );
    let target = ctx.target.describe().await?;
    check(
        "target",
        true,
        format!("{} {} reachable", target.store, target.version),
    );
    let (major, minor) = ctx.state().version();
    let state_version = format!("{major}.{minor}");
    let shape = match plan::shape(&source) {
        Ok(Some(shape)) => {
            check(
                "embeddings",
                true,
                format!(
                    "{} items, {} with embeddings of {} dimensions, {} without",
                    source.items,
                    source.with_embedding,
                    shape.dimension,
                    source.items.saturating_sub(source.with_embedding)
                ),
            );
            Some(shape)
        }
        Ok(None) => {
            check(
                "embeddings",
                false,
                format!(
                    "{} items, none with an embedding: nothing to migrate (check --label, --id-property and --embedding-property)",
                    source.items
                ),
            );
            None
        }
        Err(e) => {
            check("ids", false, e.to_string());
            None
        }
    };
    if let Some(shape) = shape {
        let (ok, detail) = fits(&target, shape, ctx);
        check("target fits", ok, detail);
    }
    warnings.extend(source_warnings(&source, shape));
    let current = mode::get(ctx).await.ok();
    let saved = RunState::load(&ctx.checkpoints, &ctx.options).await?;
    if let Some(saved) = &saved
        && saved.matches(&ctx.options).is_err()
    {
        warnings.push(format!(
            "a migration named `{}` from {} to {} is saved; pass --name to run another one",
            ctx.options.name, saved.source, saved.target
        ));
    }
    let ready = checks.iter().all(|c| c.ok);
    let estimate = match (ready, shape) {
        (true, Some(shape)) => Some(estimate(ctx, &source, shape).await?),
        _ => None,
    };
    Ok(PreflightOutcome {
        started,
        ready,
        checks,
        source,
        target,
        state_version,
        mode: current.map_or("unknown".into(), |m| m.to_string()),
        saved_progress: saved.map(|s| s.totals()),
        estimate,
        warnings,
    })
}

/// What in the source will not be copied, without blocking the migration.
fn source_warnings(source: &SourceInfo, shape: Option<Shape>) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(shape) = shape {
        let others: u64 = source
            .dimensions
            .iter()
            .filter(|(d, _)| **d != shape.dimension)
            .map(|(_, n)| n)
            .sum();
        if others > 0 {
            warnings.push(format!(
                "{others} embeddings do not have {} dimensions ({:?}); they will fail and be reported",
                shape.dimension, source.dimensions
            ));
        }
    }
    if source.bad_ids > 0 {
        warnings.push(format!(
            "{} items have an id that is neither an integer nor a string (a float, a boolean, a list or none): they cannot be copied",
            source.bad_ids
        ));
    }
    warnings
}

/// Whether an existing target takes vectors of `shape` as the run would write them.
fn fits(target: &TargetInfo, shape: Shape, ctx: &VectorsContext) -> (bool, String) {
    if !target.exists {
        return (
            true,
            format!(
                "`{}` does not exist yet; the migration creates it",
                ctx.options.target.name()
            ),
        );
    }
    if let Some(d) = target.dimension
        && d != shape.dimension
    {
        return (
            false,
            format!(
                "`{}` holds {d}-dimensional vectors, the source's are {}-dimensional: use another name or drop it",
                ctx.options.target.name(),
                shape.dimension
            ),
        );
    }
    if let Some(q) = target.quantization
        && q != ctx.target.quantization()
    {
        return (
            false,
            format!(
                "`{}` is quantised as {q}, the run asks for {}: pass --quant {q} or use another name",
                ctx.options.target.name(),
                ctx.target.quantization()
            ),
        );
    }
    if let Some(metric) = &target.metric
        && !metric.eq_ignore_ascii_case("cosine")
    {
        return (
            false,
            format!(
                "`{}` uses the {metric} metric; Ferry writes cosine collections: use another name or drop it",
                ctx.options.target.name()
            ),
        );
    }
    if let Some(k) = target.id_kind
        && k != shape.kind
    {
        return (
            false,
            format!(
                "`{}` has {k:?} ids, the source's are {:?}: use another collection",
                ctx.options.target.name(),
                shape.kind
            ),
        );
    }
    (
        true,
        format!(
            "`{}` exists with {} items, {} dimensions, metric {}",
            ctx.options.target.name(),
            target.items,
            target.dimension.unwrap_or(shape.dimension),
            target.metric.as_deref().unwrap_or("unknown")
        ),
    )
}

/// Measures reading and writing a sample (into a scratch set or collection, dropped after).
async fn estimate(
    ctx: &VectorsContext,
    source: &SourceInfo,
    shape: Shape,
) -> Result<Estimate, VectorsError> {
    let clock = Instant::now();
    let page = ctx.source.page(&IdRange::all(shape.kind), SAMPLE).await?;
    let read_seconds = clock.elapsed().as_secs_f64();
    let sample: Vec<(VectorId, Vec<f32>)> = page
        .into_iter()
        .filter_map(|i| match i.embedding {
            Embedding::Vector(v) if v.len() == shape.dimension => Some((i.id, v)),
            _ => None,
        })
        .collect();
    let mut spec = ctx.options.target.clone();
    // A name of its own (process and time), and never one that exists: preflight writes
    // nothing a user owns.
    let name = format!(
        "ferry_preflight_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    if spec.vector_set.is_some() {
        spec.vector_set = Some(name.clone());
    } else {
        spec.collection = Some(name.clone());
    }
    let scratch = AnyTarget::open(&spec).await?;
    if scratch.describe().await?.exists {
        return Err(VectorsError::Conflict(format!(
            "the scratch name `{name}` is taken on the target; run preflight again"
        )));
    }
    scratch.prepare(shape.dimension, shape.kind).await?;
    let clock = Instant::now();
    let written = scratch.upsert(&sample).await;
    let write_seconds = clock.elapsed().as_secs_f64();
    let measured = match &scratch {
        AnyTarget::VectorSet(t) => t.memory_usage().await?,
        AnyTarget::Milvus(_) => None,
    };
    scratch.drop_all().await?;
    written?;
    let n = sample.len().max(1) as f64;
    let items = source.with_embedding;
    let vector_bytes = items * shape.dimension as u64 * 4;
    let memory_bytes = match measured {
        Some(bytes) => (bytes as f64 / n * items as f64) as u64,
        // HNSW links and ids: about half again the raw vectors.
        None => vector_bytes + vector_bytes / 2,
    };
    let read_per_second = rate(n, read_seconds);
    let write_per_second = rate(n, write_seconds);
    let workers = ctx.options.workers.max(1) as f64;
    let per_second = (read_per_second * workers).min(write_per_second).max(1.0);
    Ok(Estimate {
        sample_items: sample.len(),
        read_per_second,
        write_per_second,
        vector_bytes,
        memory_bytes,
        seconds: source.items as f64 / per_second,
    })
}

fn rate(n: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { n / seconds } else { n }
}

/// Prints the checks, the survey and the estimates for people.
pub fn print(p: &PreflightOutcome) {
    println!(
        "{}",
        if p.ready {
            "READY FOR MIGRATION"
        } else {
            "NOT READY"
        }
    );
    for c in &p.checks {
        println!(
            "  [{}] {:<12} {}",
            if c.ok { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    println!("  state Redis {}; storage mode {}", p.state_version, p.mode);
    if let Some(t) = &p.saved_progress {
        println!(
            "  saved migration: {} read, {} written, {}/{} ranges done",
            t.read, t.written, t.ranges_done, t.ranges
        );
    }
    if let Some(e) = &p.estimate {
        println!(
            "  estimate (from {} items): read {:.0}/s, write {:.0}/s; vectors {:.1} MB, target memory {:.1} MB; about {:.0} s",
            e.sample_items,
            e.read_per_second,
            e.write_per_second,
            e.vector_bytes as f64 / 1e6,
            e.memory_bytes as f64 / 1e6,
            e.seconds
        );
    }
    for w in &p.warnings {
        println!("  warning: {w}");
    }
}
