//! `ferry keys analyze`: a read-only survey of the source (counts per rule, types, sizes, TTLs,
//! collisions). [`plan`] is the dry run of apply; [`survey`] scans and inspects the keys for
//! both.

mod plan;
mod survey;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{KeysContext, KeysError};
use ferry_core::report::display_key;
use survey::survey;

pub use plan::{PlanOutcome, plan};

const SAMPLES_PER_RULE: usize = 5;
const BIGGEST: usize = 10;
const COLLISION_SAMPLES: usize = 20;

/// Size statistics from `MEMORY USAGE` over the sampled keys.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SizeStats {
    /// Keys measured.
    pub sampled: u64,
    /// Smallest, in bytes.
    pub min: u64,
    /// Largest, in bytes.
    pub max: u64,
    /// Mean, in bytes.
    pub mean: f64,
    /// Median, in bytes.
    pub p50: u64,
    /// 95th percentile, in bytes.
    pub p95: u64,
    /// Mean × keys: the estimated memory of all keys in scope.
    pub estimated_total: u64,
}

/// How many keys have which time to live.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TtlBuckets {
    /// No expiry.
    pub none: u64,
    /// Under a minute.
    pub under_1m: u64,
    /// Under an hour.
    pub under_1h: u64,
    /// Under a day.
    pub under_1d: u64,
    /// Under a week.
    pub under_7d: u64,
    /// A week or more.
    pub week_or_more: u64,
}

impl TtlBuckets {
    fn add(&mut self, pttl: i64) {
        const M: i64 = 60_000;
        match pttl {
            t if t < 0 => self.none += 1,
            t if t < M => self.under_1m += 1,
            t if t < 60 * M => self.under_1h += 1,
            t if t < 24 * 60 * M => self.under_1d += 1,
            t if t < 7 * 24 * 60 * M => self.under_7d += 1,
            _ => self.week_or_more += 1,
        }
    }
}

/// One rule's share of the keys.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleAnalysis {
    /// Keys matched.
    pub keys: u64,
    /// Keys by type.
    pub types: BTreeMap<String, u64>,
    /// Example renames `[old, new]`.
    pub samples: Vec<[String; 2]>,
}

/// A key and its measured size.
#[derive(Debug, Clone, Serialize)]
pub struct BigKey {
    /// The key.
    pub key: String,
    /// Its type.
    pub r#type: String,
    /// `MEMORY USAGE`, bytes.
    pub bytes: u64,
}

/// New names claimed twice, or already taken on the target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Collisions {
    /// New names that two or more source keys map to.
    pub duplicate_new_names: u64,
    /// Examples: `[new name, one of its source keys]`.
    pub duplicate_samples: Vec<[String; 2]>,
    /// New names that already exist on the target.
    pub target_exists: u64,
    /// Examples: `[old, new]`.
    pub target_exists_samples: Vec<[String; 2]>,
}

/// The result of `ferry keys analyze`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AnalyzeOutcome {
    /// Keys scanned.
    pub scanned: u64,
    /// Keys some rule matched.
    pub matched: u64,
    /// Keys no rule matched.
    pub unmatched: u64,
    /// Example unmatched keys.
    pub unmatched_samples: Vec<String>,
    /// Per rule, in rule order.
    pub per_rule: BTreeMap<String, RuleAnalysis>,
    /// Keys by type (matched and unmatched).
    pub types: BTreeMap<String, u64>,
    /// TTL distribution of the matched keys.
    pub ttl: TtlBuckets,
    /// Sizes of the sampled matched keys.
    pub memory: SizeStats,
    /// The biggest sampled keys.
    pub biggest: Vec<BigKey>,
    /// Name collisions.
    pub collisions: Collisions,
    /// Warnings from the rules file.
    pub rule_warnings: Vec<String>,
    /// When the survey started.
    #[serde(skip)]
    pub started: Option<DateTime<Utc>>,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

/// Surveys the keys: counts per rule, types, sizes (sampled), TTLs, samples, biggest keys and
/// collisions. Writes nothing.
pub async fn analyze(ctx: &KeysContext) -> Result<AnalyzeOutcome, KeysError> {
    let mut out = AnalyzeOutcome {
        started: Some(Utc::now()),
        rule_warnings: ctx.rule_warnings.clone(),
        ..Default::default()
    };
    for rule in ctx.rules.rules() {
        out.per_rule
            .insert(rule.name.clone(), RuleAnalysis::default());
    }
    let mut sizes = Vec::new();
    let mut biggest: Vec<BigKey> = Vec::new();
    let mut new_names: HashMap<u64, ()> = HashMap::new();
    let names: Vec<String> = ctx.rules.rules().iter().map(|r| r.name.clone()).collect();
    out.scanned = survey(ctx, true, |s| {
        *out.types.entry(s.r#type.clone()).or_default() += 1;
        let Some((rule, new)) = s.mapped else {
            out.unmatched += 1;
            if out.unmatched_samples.len() < SAMPLES_PER_RULE * 2 {
                out.unmatched_samples.push(display_key(&s.key));
            }
            return;
        };
        out.matched += 1;
        out.ttl.add(s.pttl);
        let ra = out.per_rule.entry(names[rule].clone()).or_default();
        ra.keys += 1;
        *ra.types.entry(s.r#type.clone()).or_default() += 1;
        if ra.samples.len() < SAMPLES_PER_RULE {
            ra.samples.push([display_key(&s.key), display_key(&new)]);
        }
        if let Some(b) = s.bytes {
            sizes.push(b);
            if biggest.len() < BIGGEST || biggest.last().is_some_and(|l| l.bytes < b) {
                biggest.push(BigKey {
                    key: display_key(&s.key),
                    r#type: s.r#type.clone(),
                    bytes: b,
                });
                biggest.sort_by_key(|b| std::cmp::Reverse(b.bytes));
                biggest.truncate(BIGGEST);
            }
        }
        let mut h = DefaultHasher::new();
        new.hash(&mut h);
        if new_names.insert(h.finish(), ()).is_some() {
            out.collisions.duplicate_new_names += 1;
            if out.collisions.duplicate_samples.len() < COLLISION_SAMPLES {
                out.collisions
                    .duplicate_samples
                    .push([display_key(&new), display_key(&s.key)]);
            }
        }
        if s.target_exists {
            out.collisions.target_exists += 1;
            if out.collisions.target_exists_samples.len() < COLLISION_SAMPLES {
                out.collisions
                    .target_exists_samples
                    .push([display_key(&s.key), display_key(&new)]);
            }
        }
    })
    .await?;
    sizes.sort_unstable();
    if !sizes.is_empty() {
        let sum: u64 = sizes.iter().sum();
        let mean = sum as f64 / sizes.len() as f64;
        out.memory = SizeStats {
            sampled: sizes.len() as u64,
            min: sizes[0],
            max: *sizes.last().expect("non-empty"),
            mean,
            p50: percentile(&sizes, 0.5),
            p95: percentile(&sizes, 0.95),
            estimated_total: (mean * out.matched as f64) as u64,
        };
    }
    out.biggest = biggest;
    Ok(out)
}
