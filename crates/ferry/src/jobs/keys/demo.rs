//! The keys job's part of `ferry demo`: seed-style keys in the old naming scheme, renamed with
//! the example rules through the whole life cycle.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ferry_connectors::redis::{Cmd, RedisEndpoint, cmd};
use tokio_util::sync::CancellationToken;

use crate::demo::DemoOptions;
use crate::jobs::keys::{self, KeysContext, KeysOptions};

/// The example rules shipped with Ferry (the seed's five mappings).
pub const SEED_RULES: &str = include_str!("../../../../../config/examples/seed-002-rules.toml");

pub(crate) const OLD: &str = "josancamon:rayban-meta-glasses-api:";

/// A tiny deterministic generator for demo data.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// Commands that fill a Redis with `n` seed-style keys (cache 53 %, reminder 17 %, history
/// 13 %, profile 10 %, cancellation 3 %, plus a few keys outside the old prefix); about half
/// carry a TTL.
pub fn seed_commands(n: usize, seed: u64) -> Vec<Cmd> {
    let mut rnd = Lcg(seed);
    let mut cmds = Vec::with_capacity(n * 2);
    for i in 0..n {
        let uid = 100_000_000_000 + rnd.below(900_000_000_000);
        let kind = rnd.below(100);
        let key = if kind < 53 {
            let query = format!("weather in city {i} on day {}", rnd.below(365));
            let key = format!("{OLD}{}", BASE64.encode(query.as_bytes()));
            let answer = "x".repeat(50 + rnd.below(550) as usize);
            cmds.push(
                cmd("SET")
                    .arg(&key)
                    .arg(format!("{{\"answer\":\"{answer}\",\"i\":{i}}}"))
                    .clone(),
            );
            key
        } else if kind < 70 {
            let key = format!("{OLD}reminder:evt_{i:08}_{}", rnd.below(1_000_000));
            let text = "call mom ".repeat(1 + rnd.below(5) as usize);
            cmds.push(
                cmd("HSET")
                    .arg(&key)
                    .arg("user")
                    .arg(uid)
                    .arg("text")
                    .arg(text)
                    .arg("at")
                    .arg(1_700_000_000 + rnd.below(10_000_000))
                    .clone(),
            );
            key
        } else if kind < 83 {
            let key = format!("{OLD}conversation_history:{uid}{i}");
            let mut c = cmd("RPUSH");
            c.arg(&key);
            for _ in 0..(1 + rnd.below(11)) {
                let role = if rnd.below(2) == 0 { "user" } else { "model" };
                c.arg(format!(
                    "{{\"role\":\"{role}\",\"text\":\"{}\"}}",
                    "hi ".repeat(3 + rnd.below(37) as usize)
                ));
            }
            cmds.push(c);
            key
        } else if kind < 93 {
            let key = format!("{OLD}user_profile:{uid}{i}");
            cmds.push(
                cmd("SET")
                    .arg(&key)
                    .arg(format!("{{\"name\":\"user {i}\",\"tz\":\"UTC\"}}"))
                    .clone(),
            );
            key
        } else if kind < 96 {
            let key = format!("{OLD}cancellation:wa:{uid}{i}");
            cmds.push(cmd("SET").arg(&key).arg("1").clone());
            key
        } else {
            let key = format!("other-app:session:{i}");
            cmds.push(cmd("SET").arg(&key).arg("unrelated").clone());
            key
        };
        if rnd.below(2) == 0 {
            cmds.push(
                cmd("PEXPIRE")
                    .arg(&key)
                    .arg((3600 + rnd.below(82_800)) * 1000)
                    .clone(),
            );
        }
    }
    cmds
}

/// The keys part of `ferry demo`: `opts.keys` seed-style keys in the old naming scheme, then
/// analyze → plan → apply → verify with the example rules, and the apply report written to
/// `opts.report`.
pub async fn part(
    endpoint: &RedisEndpoint,
    url: &str,
    dir: &Path,
    opts: &DemoOptions,
) -> anyhow::Result<()> {
    fill_old_keys(endpoint, opts.keys).await?;
    println!(
        "1. filled {} keys in the old naming scheme (josancamon:rayban-meta-glasses-api:…)",
        opts.keys
    );

    let rules = dir.join("seed-002-rules.toml");
    std::fs::write(&rules, SEED_RULES)?;
    let ctx = KeysContext::connect(KeysOptions {
        source: url.into(),
        rules,
        run_name: format!("demo-{}", std::process::id()),
        ..KeysOptions::default()
    })
    .await?;

    let analysis = keys::analyze(&ctx).await?;
    println!(
        "2. analyze: {} keys scanned, {} matched, {} left alone",
        analysis.scanned, analysis.matched, analysis.unmatched
    );
    for (rule, a) in &analysis.per_rule {
        println!(
            "     {rule:<13} {:>7} keys  e.g. {}",
            a.keys,
            a.samples
                .first()
                .map(|s| format!("{} -> {}", s[0], s[1]))
                .unwrap_or_default()
        );
    }
    let plan = keys::plan(&ctx).await?;
    println!("3. plan: {:?} (nothing written)", plan.actions);
    let applied = keys::apply(&ctx, CancellationToken::new()).await?;
    println!(
        "4. apply: {} migrated, {} skipped, {} failed, {:.0} keys/s",
        applied.stats.migrated,
        applied.stats.skipped_existing,
        applied.stats.failed,
        applied.keys_per_s
    );
    let verified = keys::verify(&ctx).await?;
    println!(
        "5. verify: {} checked, {} ok, {} differences",
        verified.checked,
        verified.ok,
        verified.failures()
    );

    let report = ferry_core::report::Report::new(
        "keys",
        "apply",
        false,
        applied.started,
        serde_json::to_value(&applied.stats)?,
        applied.errors.clone(),
    )
    .with("per_rule", &applied.per_rule)
    .with("keys_per_s", applied.keys_per_s)
    .with("analysis", &analysis)
    .with("verify", &verified);
    report.write(&opts.report, ferry_core::report::ReportFormat::Json)?;
    println!("report: {}", opts.report.display());
    if verified.failures() > 0 || applied.stats.failed > 0 {
        anyhow::bail!("the demo found differences; see the report");
    }
    Ok(())
}

/// Fills Redis with `n` seed-style keys (see [`seed_commands`]), 2000 commands at a time.
async fn fill_old_keys(endpoint: &RedisEndpoint, n: usize) -> anyhow::Result<()> {
    let data = seed_commands(n, 7);
    for chunk in data.chunks(2000) {
        for r in endpoint
            .run(chunk.iter().map(|c| (Vec::new(), c.clone())).collect())
            .await?
        {
            r?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn seed_data_uses_the_seed_key_shapes() {
        let cmds = super::seed_commands(200, 1);
        let keys: Vec<String> = cmds
            .iter()
            .filter_map(|c| c.args_iter().nth(1))
            .filter_map(|a| match a {
                redis::Arg::Simple(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect();
        for prefix in [
            "reminder:evt_",
            "conversation_history:",
            "user_profile:",
            "cancellation:wa:",
        ] {
            assert!(
                keys.iter()
                    .any(|k| k.starts_with(&format!("{}{prefix}", super::OLD))),
                "{prefix}"
            );
        }
        // Cache keys are the base64 of "weather in city …", as in the seed.
        let cache = format!("{}d2VhdGhlciBpbiBjaXR5", super::OLD);
        assert!(keys.iter().any(|k| k.starts_with(&cache)));
    }
}
