//! The survey under analyze and plan: the source scanned, every key mapped by the rules and
//! looked up on the target, and (for analyze) its type, TTL and, sampled, its size.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_connectors::redis::{Cmd, ConnError, RedisEndpoint, RedisResult, Value, cmd};
use ferry_core::jobs::keys::rules::RuleSet;
use futures::StreamExt;

use crate::jobs::keys::scan::{ScanBatch, estimate_keys, scan_batches};
use crate::jobs::keys::{KeysContext, KeysError, is_store_key};
use crate::observe::Progress;

/// What the survey of one batch found, per key.
pub(super) struct Seen {
    /// The key.
    pub(super) key: Vec<u8>,
    /// The index of the rule that matches it and its new name.
    pub(super) mapped: Option<(usize, Vec<u8>)>,
    /// Its type (empty unless measured).
    pub(super) r#type: String,
    /// Its PTTL (-1 unless measured).
    pub(super) pttl: i64,
    /// `MEMORY USAGE`, when measured and sampled.
    pub(super) bytes: Option<u64>,
    /// Whether its new name exists on the target.
    pub(super) target_exists: bool,
}

/// Scans the source and inspects every key; `measure` adds TYPE/PTTL/MEMORY USAGE.
pub(super) async fn survey(
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
    let surveyor = Surveyor {
        rules: ctx.rules.clone(),
        source: ctx.source.clone(),
        target: ctx.target.clone(),
        skip: ctx.skip_prefix.clone(),
        measure,
        sample_every,
    };
    let mut counter = 0u64;
    let batches = scan_batches(
        &ctx.source,
        &BTreeMap::new(),
        &[],
        ctx.scan_pattern(),
        ctx.opts.batch_size,
    )
    .map(|batch| {
        let first = counter;
        counter += batch.as_ref().map(|b| b.keys.len() as u64).unwrap_or(0);
        surveyor.clone().batch(batch, first)
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

/// What the survey of each batch needs: cheaply cloned into each batch's future.
#[derive(Clone)]
struct Surveyor {
    rules: Arc<RuleSet>,
    source: Arc<RedisEndpoint>,
    target: Arc<RedisEndpoint>,
    skip: Option<Vec<u8>>,
    /// Whether TYPE, PTTL and (sampled) MEMORY USAGE are asked.
    measure: bool,
    /// Every how many keys one is measured by MEMORY USAGE.
    sample_every: u64,
}

impl Surveyor {
    /// Surveys one batch, whose first key is the `first`-th of the scan: each key's new name,
    /// whether it exists on the target, and (when measuring) its type, TTL and size.
    async fn batch(
        self,
        batch: Result<ScanBatch, ConnError>,
        first: u64,
    ) -> Result<Vec<Seen>, KeysError> {
        let keys: Vec<Vec<u8>> = batch?
            .keys
            .into_iter()
            .filter(|k| !is_store_key(self.skip.as_deref(), k))
            .collect();
        let mapped: Vec<_> = keys.iter().map(|k| self.rules.rename(k)).collect();
        let src_cmds = if self.measure {
            self.measure_cmds(&keys, first)
        } else {
            Vec::new()
        };
        let src_replies = self.source.run(src_cmds).await?;
        let exists_cmds = mapped
            .iter()
            .filter_map(|m| m.as_ref())
            .map(|(_, new)| (new.clone(), cmd("EXISTS").arg(new).clone()))
            .collect();
        let mut exists = self.target.run(exists_cmds).await?.into_iter();
        let mut seen = Vec::with_capacity(keys.len());
        for (n, (key, mapped)) in keys.into_iter().zip(mapped).enumerate() {
            let target_exists =
                mapped.is_some() && matches!(exists.next(), Some(Ok(Value::Int(1))));
            let (r#type, pttl, bytes) = if self.measure {
                measured(&src_replies[3 * n..3 * n + 3])
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
        Ok(seen)
    }

    /// TYPE, PTTL and MEMORY USAGE of each key (an ECHO in place of the MEMORY USAGE of the
    /// keys not sampled), three commands per key.
    fn measure_cmds(&self, keys: &[Vec<u8>], first: u64) -> Vec<(Vec<u8>, Cmd)> {
        let mut src_cmds = Vec::with_capacity(keys.len() * 3);
        for (n, k) in keys.iter().enumerate() {
            src_cmds.push((k.clone(), cmd("TYPE").arg(k).clone()));
            src_cmds.push((k.clone(), cmd("PTTL").arg(k).clone()));
            let sampled = (first + n as u64).is_multiple_of(self.sample_every);
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
        src_cmds
    }
}

/// Type, PTTL and size (when sampled) from the three replies of [`Surveyor::measure_cmds`]
/// for one key.
fn measured(replies: &[RedisResult<Value>]) -> (String, i64, Option<u64>) {
    let t = match &replies[0] {
        Ok(Value::SimpleString(s)) => s.clone(),
        Ok(Value::Okay) => "string".into(),
        _ => "none".into(),
    };
    let pttl = match &replies[1] {
        Ok(Value::Int(t)) => *t,
        _ => -2,
    };
    let bytes = match &replies[2] {
        Ok(Value::Int(b)) => Some(*b as u64),
        _ => None,
    };
    (t, pttl, bytes)
}
