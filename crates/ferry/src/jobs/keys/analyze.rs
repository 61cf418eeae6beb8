//! `ferry keys analyze` and `ferry keys plan`: read-only surveys of the source.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use chrono::{DateTime, Utc};
use ferry_connectors::redis::{Value, cmd};
use futures::StreamExt;
use serde::Serialize;

use super::scan::{estimate_keys, scan_batches};
use super::{KeysContext, KeysError, OnConflict, is_store_key};
use crate::observe::Progress;
use crate::report::display_key;

const SAMPLES_PER_RULE: usize = 5;
const BIGGEST: usize = 10;
const COLLISION_SAMPLES: usize = 20;
/// Planned actions listed in a plan report at most (counts are always complete).
pub const MAX_PLANNED_ACTIONS: usize = 10_000;

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

/// One planned action.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedAction {
    /// The source key.
    pub key: String,
    /// Its new name.
    pub new_key: String,
    /// The rule.
    pub rule: String,
    /// `copy`, `skip_existing`, `overwrite`, `fail_existing` or `unchanged`.
    pub action: &'static str,
    /// `server_copy` (COPY on the server) or `dump_restore`.
    pub method: &'static str,
}

/// A new name that more than one old key maps to.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedClash {
    /// The new name.
    pub new_key: String,
    /// The old keys, by rule order then name: `first-wins` migrates the first.
    pub sources: Vec<ClashSource>,
}

/// One old key of a clash.
#[derive(Debug, Clone, Serialize)]
pub struct ClashSource {
    /// The old key.
    pub key: String,
    /// The rule mapping it.
    pub rule: String,
}

/// The result of `ferry keys plan`: what apply would do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlanOutcome {
    /// Keys scanned.
    pub scanned: u64,
    /// Keys matched.
    pub matched: u64,
    /// Keys no rule matched (left alone).
    pub unmatched: u64,
    /// Counts by action.
    pub actions: BTreeMap<&'static str, u64>,
    /// Counts by rule and action.
    pub per_rule: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// The planned actions, capped at [`MAX_PLANNED_ACTIONS`].
    pub planned: Vec<PlannedAction>,
    /// Whether `--delete-source` would delete each copied source key.
    pub delete_source: bool,
    /// New names that more than one old key maps to (capped at [`MAX_PLANNED_ACTIONS`]).
    pub clashes: Vec<PlannedClash>,
    /// How many new names more than one old key maps to.
    pub clash_count: u64,
    /// What apply does with them (`--on-collision`).
    pub on_collision: super::OnCollision,
    /// Warnings from the rules file.
    pub rule_warnings: Vec<String>,
    /// When the plan started.
    #[serde(skip)]
    pub started: Option<DateTime<Utc>>,
}

/// What the survey of one batch found, per key.
struct Seen {
    key: Vec<u8>,
    mapped: Option<(usize, Vec<u8>)>,
    r#type: String,
    pttl: i64,
    bytes: Option<u64>,
    target_exists: bool,
}

/// Scans the source and inspects every key; `measure` adds TYPE/PTTL/MEMORY USAGE.
async fn survey(
    ctx: &KeysContext,
    measure: bool,
    mut visit: impl FnMut(Seen),
) -> Result<u64, KeysError> {
    let total = estimate_keys(&ctx.source).await;
    let sample_every = match ctx.opts.sample {
        Some(n) if n > 0 && total > n => total.div_ceil(n),
        _ => 1,
    };
    let mut progress = Progress::new("surveying keys", total);
    let rules = ctx.rules.clone();
    let source = ctx.source.clone();
    let target = ctx.target.clone();
    let skip = ctx.skip_prefix.clone();
    let mut counter = 0u64;
    let batches = scan_batches(
        &ctx.source,
        &BTreeMap::new(),
        &[],
        ctx.scan_pattern(),
        ctx.opts.batch_size,
    )
    .map(|batch| {
        let (rules, source, target, skip) =
            (rules.clone(), source.clone(), target.clone(), skip.clone());
        let first = counter;
        counter += batch.as_ref().map(|b| b.keys.len() as u64).unwrap_or(0);
        async move {
            let keys: Vec<Vec<u8>> = batch?
                .keys
                .into_iter()
                .filter(|k| !is_store_key(skip.as_deref(), k))
                .collect();
            let mapped: Vec<_> = keys.iter().map(|k| rules.rename(k)).collect();
            let mut src_cmds = Vec::new();
            if measure {
                for (n, k) in keys.iter().enumerate() {
                    src_cmds.push((k.clone(), cmd("TYPE").arg(k).clone()));
                    src_cmds.push((k.clone(), cmd("PTTL").arg(k).clone()));
                    let sampled = (first + n as u64).is_multiple_of(sample_every);
                    src_cmds.push((
                        k.clone(),
                        if sampled {
                            cmd("MEMORY")
                                .arg("USAGE")
                                .arg(k)
                                .arg("SAMPLES")
                                .arg(5)
                                .clone()
                        } else {
                            cmd("ECHO").arg("").clone()
                        },
                    ));
                }
            }
            let src_replies = source.run(src_cmds).await?;
            let exists_cmds = mapped
                .iter()
                .filter_map(|m| m.as_ref())
                .map(|(_, new)| (new.clone(), cmd("EXISTS").arg(new).clone()))
                .collect();
            let mut exists = target.run(exists_cmds).await?.into_iter();
            let mut seen = Vec::with_capacity(keys.len());
            for (n, (key, mapped)) in keys.into_iter().zip(mapped).enumerate() {
                let target_exists =
                    mapped.is_some() && matches!(exists.next(), Some(Ok(Value::Int(1))));
                let (r#type, pttl, bytes) = if measure {
                    let t = match &src_replies[3 * n] {
                        Ok(Value::SimpleString(s)) => s.clone(),
                        Ok(Value::Okay) => "string".into(),
                        _ => "none".into(),
                    };
                    let pttl = match &src_replies[3 * n + 1] {
                        Ok(Value::Int(t)) => *t,
                        _ => -2,
                    };
                    let bytes = match &src_replies[3 * n + 2] {
                        Ok(Value::Int(b)) => Some(*b as u64),
                        _ => None,
                    };
                    (t, pttl, bytes)
                } else {
                    (String::new(), -1, None)
                };
                seen.push(Seen {
                    key,
                    mapped,
                    r#type,
                    pttl,
                    bytes,
                    target_exists,
                });
            }
            Ok::<_, KeysError>(seen)
        }
    })
    .buffered(ctx.opts.concurrency);
    futures::pin_mut!(batches);
    let mut scanned = 0;
    while let Some(seen) = batches.next().await {
        let seen = seen?;
        progress.inc(seen.len() as u64);
        scanned += seen.len() as u64;
        for s in seen {
            visit(s);
        }
    }
    progress.finish();
    Ok(scanned)
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

/// The dry run: every action apply would take, writing nothing.
pub async fn plan(ctx: &KeysContext) -> Result<PlanOutcome, KeysError> {
    let mut out = PlanOutcome {
        started: Some(Utc::now()),
        delete_source: ctx.opts.delete_source,
        rule_warnings: ctx.rule_warnings.clone(),
        on_collision: ctx.opts.on_collision,
        ..Default::default()
    };
    let names: Vec<String> = ctx.rules.rules().iter().map(|r| r.name.clone()).collect();
    let clashes = super::find_clashes(ctx).await?;
    out.clash_count = clashes.len() as u64;
    out.clashes = clashes
        .into_iter()
        .take(MAX_PLANNED_ACTIONS)
        .map(|c| PlannedClash {
            new_key: display_key(&c.new_key),
            sources: c
                .sources
                .iter()
                .map(|(r, k)| ClashSource {
                    key: display_key(k),
                    rule: names[*r].clone(),
                })
                .collect(),
        })
        .collect();
    let same_server = ctx.same_server && ctx.source.version() >= (6, 2);
    let cluster = ctx.source.is_cluster();
    let policy = ctx.opts.on_conflict;
    out.scanned = survey(ctx, false, |s| {
        let Some((rule, new)) = s.mapped else {
            out.unmatched += 1;
            return;
        };
        out.matched += 1;
        let action = if same_server && new == s.key {
            "unchanged"
        } else if s.target_exists {
            match policy {
                OnConflict::Skip => "skip_existing",
                OnConflict::Overwrite => "overwrite",
                OnConflict::Fail => "fail_existing",
            }
        } else {
            "copy"
        };
        let method = if same_server
            && (!cluster
                || ferry_connectors::redis::key_slot(&s.key)
                    == ferry_connectors::redis::key_slot(&new))
        {
            "server_copy"
        } else {
            "dump_restore"
        };
        *out.actions.entry(action).or_default() += 1;
        *out.per_rule
            .entry(names[rule].clone())
            .or_default()
            .entry(action)
            .or_default() += 1;
        if out.planned.len() < MAX_PLANNED_ACTIONS {
            out.planned.push(PlannedAction {
                key: display_key(&s.key),
                new_key: display_key(&new),
                rule: names[rule].clone(),
                action,
                method,
            });
        }
    })
    .await?;
    Ok(out)
}
