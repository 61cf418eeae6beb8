//! `ferry vectors validate`: the target's vectors compared with the source's by id, within the
//! tolerance of the target's quantisation; missing items (in the source, not the target),
//! mismatched ones and orphans (in the target only) counted and, with `--fix`, repaired.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use ferry_core::checkpoint::CheckpointStore;
use ferry_core::jobs::vectors::{
    Embedding, IdRange, SourceItem, Tolerance, VectorId, VectorSource, VectorTarget, compare,
};
use serde::Serialize;

use super::metrics::VectorsMetric;
use super::migrate::plan;
use super::{VectorsContext, VectorsError};

/// Discrepancies listed in the report (all are counted).
const LISTED: usize = 1000;

/// How a validation runs.
#[derive(Debug, Clone, Copy)]
pub struct ValidateRun {
    /// Compare about this many random items (`None`: every item).
    pub sample: Option<usize>,
    /// Re-copy missing and mismatched items, delete orphans.
    pub fix: bool,
}

/// One item that is not as it should be.
#[derive(Debug, Clone, Serialize)]
pub struct Discrepancy {
    /// The item.
    pub id: VectorId,
    /// `mismatch`, `missing` or `orphan`.
    pub kind: &'static str,
    /// Distance and cosine of a mismatch.
    pub detail: String,
}

/// What a validation found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ValidateStats {
    /// `full` or `sample`.
    pub scope: &'static str,
    /// The target's quantisation, which sets the tolerance.
    pub quantization: String,
    /// Source items with an embedding that were compared.
    pub compared: u64,
    /// Copies within the tolerance.
    pub matched: u64,
    /// Copies outside it.
    pub mismatched: u64,
    /// Source items the target lacks.
    pub missing: u64,
    /// Target items the source lacks (or holds without an embedding).
    pub orphans: u64,
    /// Source items without an embedding (nothing to compare).
    pub without_embedding: u64,
    /// Source items whose embedding is invalid (never copied).
    pub invalid: u64,
    /// Source items whose id is neither an integer nor a string (never copied; they count
    /// against the success rate of a full validation).
    pub unusable_ids: u64,
    /// Largest L2 distance among matches.
    pub max_l2: f64,
    /// Smallest cosine similarity among matches.
    pub min_cosine: f64,
    /// `matched / (matched + mismatched + missing + orphans)` (1 when nothing was compared).
    pub success_rate: f64,
    /// The pass threshold.
    pub threshold: f64,
    /// Whether the rate reached the threshold (after the fixes, with `--fix`).
    pub passed: bool,
    /// Items re-copied by `--fix`.
    pub recopied: u64,
    /// Orphans deleted by `--fix`.
    pub deleted: u64,
    /// Items `--fix` could not repair.
    pub unfixed: u64,
}

/// The outcome of `ferry vectors validate`.
#[derive(Debug, Clone)]
pub struct ValidateOutcome {
    /// When it started.
    pub started: DateTime<Utc>,
    /// The counts.
    pub stats: ValidateStats,
    /// The first discrepancies.
    pub discrepancies: Vec<Discrepancy>,
}

struct Tally {
    stats: ValidateStats,
    found: Vec<Discrepancy>,
    /// Source vectors to copy again (missing, mismatched).
    recopy: Vec<(VectorId, Vec<f32>)>,
    /// Target ids to delete.
    orphans: Vec<VectorId>,
    tolerance: Tolerance,
}

impl Tally {
    fn note(&mut self, id: VectorId, kind: &'static str, detail: String) {
        if self.found.len() < LISTED {
            self.found.push(Discrepancy { id, kind, detail });
        }
    }

    /// Compares a page of source items with the target's copies.
    async fn compare(
        &mut self,
        ctx: &VectorsContext,
        items: Vec<SourceItem>,
        dimension: usize,
    ) -> Result<(), VectorsError> {
        let mut vectors = Vec::new();
        let mut without = Vec::new();
        for item in items {
            match item.embedding {
                Embedding::Vector(v) if v.len() == dimension => vectors.push((item.id, v)),
                Embedding::Missing => without.push(item.id),
                _ => self.stats.invalid += 1,
            }
        }
        self.stats.without_embedding += without.len() as u64;
        let ids: Vec<VectorId> = vectors.iter().map(|(id, _)| id.clone()).collect();
        let copies = ctx.target.get(&ids).await?;
        for ((id, source), copy) in vectors.into_iter().zip(copies) {
            self.stats.compared += 1;
            let Some(copy) = copy else {
                self.stats.missing += 1;
                self.note(id.clone(), "missing", String::new());
                self.recopy.push((id, source));
                continue;
            };
            let c = compare(&source, &copy, &self.tolerance);
            if c.matches {
                self.stats.matched += 1;
                self.stats.max_l2 = self.stats.max_l2.max(c.l2);
                self.stats.min_cosine = self.stats.min_cosine.min(c.cosine);
            } else {
                self.stats.mismatched += 1;
                let detail = format!("l2 {:.6}, cosine {:.6}", c.l2, c.cosine);
                self.note(id.clone(), "mismatch", detail);
                self.recopy.push((id, source));
            }
        }
        // An item without an embedding whose old vector is still in the target is stale.
        let stale = ctx.target.get(&without).await?;
        for (id, copy) in without.into_iter().zip(stale) {
            if copy.is_some() {
                self.orphan(id, "the source item has no embedding");
            }
        }
        Ok(())
    }

    fn orphan(&mut self, id: VectorId, why: &str) {
        self.stats.orphans += 1;
        self.note(id.clone(), "orphan", why.to_string());
        self.orphans.push(id);
    }
}

/// Runs the validation.
pub async fn validate(
    ctx: &VectorsContext,
    run: ValidateRun,
) -> Result<ValidateOutcome, VectorsError> {
    let started = Utc::now();
    let info = ctx.source.describe().await?;
    // How the target really stores its vectors (a vector set says so), else what the run asks.
    let described = ctx.target.describe().await?;
    let quantization = described
        .quantization
        .unwrap_or_else(|| ctx.target.quantization());
    let mut tally = Tally {
        stats: ValidateStats {
            scope: if run.sample.is_some() {
                "sample"
            } else {
                "full"
            },
            quantization: quantization.to_string(),
            min_cosine: 1.0,
            threshold: ctx.options.threshold,
            ..ValidateStats::default()
        },
        found: Vec::new(),
        recopy: Vec::new(),
        orphans: Vec::new(),
        tolerance: quantization.tolerance(),
    };
    if run.sample.is_none() {
        tally.stats.unusable_ids = info.bad_ids;
    }
    if let Some(shape) = plan::shape(&info)? {
        match run.sample {
            Some(n) => sample(ctx, &mut tally, n, shape).await?,
            None => full(ctx, &mut tally, shape).await?,
        }
    }
    if run.fix {
        fix(ctx, &mut tally).await?;
    }
    let s = &mut tally.stats;
    let checked = s.matched + s.mismatched + s.missing + s.orphans + s.unusable_ids;
    let good = s.matched + if run.fix { s.recopied + s.deleted } else { 0 };
    s.success_rate = if checked == 0 {
        1.0
    } else {
        good as f64 / checked as f64
    };
    s.passed = s.success_rate >= s.threshold;
    record_metrics(s);
    save_last(ctx, started, s).await;
    Ok(ValidateOutcome {
        started,
        stats: tally.stats,
        discrepancies: tally.found,
    })
}

/// The checkpoint scope holding a migration's last validation (`ferry serve` shows it).
pub fn last_validation_scope(options: &super::VectorsOptions) -> String {
    format!("{}/validation", options.scope())
}

/// The last validation as saved: when it started and what it found.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LastValidation {
    /// When it started.
    pub started: DateTime<Utc>,
    /// `full` or `sample`.
    pub scope: String,
    /// Items compared.
    pub compared: u64,
    /// Equal within the tolerance.
    pub matched: u64,
    /// Different beyond it.
    pub mismatched: u64,
    /// In the source, not in the target.
    pub missing: u64,
    /// In the target only.
    pub orphans: u64,
    /// Share that passed (0..1).
    pub success_rate: f64,
    /// Whether it reached the threshold.
    pub passed: bool,
}

/// Saves the validation's figures beside the migration's state; a failure to save is logged,
/// never a failed validation.
async fn save_last(ctx: &VectorsContext, started: DateTime<Utc>, s: &ValidateStats) {
    let last = LastValidation {
        started,
        scope: s.scope.to_string(),
        compared: s.compared,
        matched: s.matched,
        mismatched: s.mismatched,
        missing: s.missing,
        orphans: s.orphans,
        success_rate: s.success_rate,
        passed: s.passed,
    };
    let bytes = serde_json::to_vec(&last).unwrap_or_default();
    let scope = last_validation_scope(&ctx.options);
    if let Err(e) = ctx.checkpoints.save(&scope, &bytes).await {
        tracing::warn!(error = %e, "could not save the validation's figures");
    }
}

/// Every source item, then every target id the source lacks.
async fn full(
    ctx: &VectorsContext,
    tally: &mut Tally,
    shape: plan::Shape,
) -> Result<(), VectorsError> {
    let batch = ctx.options.batch.max(1);
    let mut with_vectors: HashSet<VectorId> = HashSet::new();
    let mut range = IdRange::all(shape.kind);
    loop {
        let page = ctx.source.page(&range, batch).await?;
        let Some(last) = page.last().map(|i| i.id.clone()) else {
            break;
        };
        let full_page = page.len() >= batch;
        for item in &page {
            if matches!(item.embedding, Embedding::Vector(_)) {
                with_vectors.insert(item.id.clone());
            }
        }
        tally.compare(ctx, page, shape.dimension).await?;
        if !full_page {
            break;
        }
        range = range.after(last);
    }
    let stale: HashSet<VectorId> = tally.orphans.iter().cloned().collect();
    for id in ctx.target.ids(shape.kind).await? {
        if !with_vectors.contains(&id) && !stale.contains(&id) {
            tally.orphan(id, "not in the source");
        }
    }
    Ok(())
}

/// `n` random source items, and `n` random target ids checked against the source.
async fn sample(
    ctx: &VectorsContext,
    tally: &mut Tally,
    n: usize,
    shape: plan::Shape,
) -> Result<(), VectorsError> {
    let ids = ctx.source.sample(n).await?;
    for chunk in ids.chunks(ctx.options.batch.max(1)) {
        let items = ctx.source.get(chunk).await?;
        tally.compare(ctx, items, shape.dimension).await?;
    }
    let target_ids = ctx.target.sample(n, shape.kind).await?;
    let known: HashSet<VectorId> = tally.recopy.iter().map(|(id, _)| id.clone()).collect();
    for chunk in target_ids.chunks(ctx.options.batch.max(1)) {
        let in_source = with_vectors_in_source(ctx, chunk).await?;
        for id in chunk {
            let wrong_kind = id.kind() != shape.kind;
            if (wrong_kind || !in_source.contains(id)) && !known.contains(id) {
                tally.orphan(id.clone(), "not in the source");
            }
        }
    }
    Ok(())
}

/// Copies the missing and mismatched items again and deletes the orphans, then checks them.
///
/// The source is read again first: an application writing both stores meanwhile (dual
/// writes) may have added an item that looked like an orphan, or changed a vector — the fix
/// copies what the source holds now and deletes only ids the source still lacks.
async fn fix(ctx: &VectorsContext, tally: &mut Tally) -> Result<(), VectorsError> {
    let batch = ctx.options.batch.max(1);
    let mut again: Vec<VectorId> = tally.recopy.drain(..).map(|(id, _)| id).collect();
    let mut orphans = Vec::new();
    for chunk in std::mem::take(&mut tally.orphans).chunks(batch) {
        let present = with_vectors_in_source(ctx, chunk).await?;
        for id in chunk {
            if present.contains(id) {
                // Written to the source since it was read: a copy to check, not an orphan.
                tally.stats.orphans -= 1;
                tally.stats.mismatched += 1;
                again.push(id.clone());
            } else {
                orphans.push(id.clone());
            }
        }
    }
    let mut recopy = Vec::new();
    for chunk in again.chunks(batch) {
        for item in ctx.source.get(chunk).await? {
            if let Embedding::Vector(v) = item.embedding {
                recopy.push((item.id, v));
            }
        }
    }
    for chunk in recopy.chunks(batch) {
        let refused = ctx.target.upsert(chunk).await?;
        let refused: HashSet<&VectorId> = refused.iter().map(|f| &f.id).collect();
        let ids: Vec<VectorId> = chunk.iter().map(|(id, _)| id.clone()).collect();
        let copies = ctx.target.get(&ids).await?;
        for ((id, source), copy) in chunk.iter().zip(copies) {
            let ok = !refused.contains(id)
                && copy.is_some_and(|c| compare(source, &c, &tally.tolerance).matches);
            if ok {
                tally.stats.recopied += 1;
            } else {
                tally.stats.unfixed += 1;
            }
        }
    }
    for chunk in orphans.chunks(batch) {
        ctx.target.delete(chunk).await?;
        let left = ctx.target.get(chunk).await?;
        for copy in left {
            if copy.is_none() {
                tally.stats.deleted += 1;
            } else {
                tally.stats.unfixed += 1;
            }
        }
    }
    Ok(())
}

/// Which of `ids` the source holds with an embedding.
async fn with_vectors_in_source(
    ctx: &VectorsContext,
    ids: &[VectorId],
) -> Result<HashSet<VectorId>, VectorsError> {
    Ok(ctx
        .source
        .get(ids)
        .await?
        .into_iter()
        .filter(|i| matches!(i.embedding, Embedding::Vector(_)))
        .map(|i| i.id)
        .collect())
}

fn record_metrics(s: &ValidateStats) {
    let g = |result: &'static str, n: u64| {
        metrics::gauge!(VectorsMetric::ValidationItems.name(), "result" => result).set(n as f64);
    };
    g("match", s.matched);
    g("mismatch", s.mismatched);
    g("missing", s.missing);
    g("orphan", s.orphans);
    metrics::gauge!(VectorsMetric::ValidationSuccessRatio.name()).set(s.success_rate);
}
