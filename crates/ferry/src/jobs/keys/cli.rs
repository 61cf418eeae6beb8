//! `ferry keys …`: runs one action of the keys job from the command line, prints its outcome
//! and writes its report.

use std::path::Path;

use ferry_core::error::{Classify, ExitStatus};
use tokio_util::sync::CancellationToken;

use super::args::{Common, KeysAction, ValueOpts, WriteOpts};
use super::{KeysContext, KeysError, KeysOptions};

/// The job's name in reports.
const JOB: &str = <KeysContext as Migration>::JOB;
use crate::config::FileConfig;
use crate::lifecycle::{Migration, StepOutcome};
use ferry_core::report::{Report, display_key};

/// Runs one keys action; an error is printed and gives [`ExitStatus::Fatal`].
pub async fn run(action: KeysAction, file: &FileConfig) -> ExitStatus {
    act(action, file).await.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        tracing::debug!(class = %e.class(), "fatal");
        ExitStatus::Fatal
    })
}

/// One keys action: the options (flags over the file), then the action's function.
async fn act(action: KeysAction, file: &FileConfig) -> Result<ExitStatus, KeysError> {
    let stop = crate::runtime::shutdown_token();
    match action {
        KeysAction::TestRules { rules, keys } => test_rules(&rules, &keys),
        KeysAction::Analyze { common, sample } => {
            let mut o = options(file, &common, None)?;
            o.sample = sample;
            analyze(o, &common).await
        }
        KeysAction::Plan { common, write } => {
            plan(options(file, &common, Some(&write))?, &common).await
        }
        KeysAction::Apply {
            common,
            write,
            rate,
            values,
            restart,
            yes,
        } => {
            let mut o = options(file, &common, Some(&write))?;
            if let Some(r) = rate {
                o.rate = Some(r).filter(|&r| r > 0);
            }
            values.apply_to(&mut o);
            o.restart = restart;
            apply(o, &common, yes, stop).await
        }
        KeysAction::Verify {
            common,
            sample,
            ttl_tolerance,
            values,
        } => {
            let mut o = options(file, &common, None)?;
            values.apply_to(&mut o);
            o.sample = sample;
            if let Some(t) = ttl_tolerance {
                o.ttl_tolerance_ms = (t * 1000.0) as i64;
            }
            verify(o, &common).await
        }
        KeysAction::Rollback {
            common,
            values,
            yes,
        } => rollback(options_with(file, &common, &values)?, &common, yes, stop).await,
        KeysAction::Status { common } => status(options(file, &common, None)?, &common).await,
    }
}

/// `ferry keys test-rules`: each key's new name, offline.
fn test_rules(rules: &Path, keys: &[String]) -> Result<ExitStatus, KeysError> {
    let (set, warnings) = super::load_rules(rules)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    for key in keys {
        let raw = unescape(key);
        match set.rename(&raw) {
            Some((rule, new)) => println!(
                "{} -> {}  [{}]",
                display_key(&raw),
                display_key(&new),
                set.rules()[rule].name
            ),
            None => println!("{} -> unmatched", display_key(&raw)),
        }
    }
    Ok(ExitStatus::Done)
}

/// `ferry keys analyze`.
async fn analyze(o: KeysOptions, common: &Common) -> Result<ExitStatus, KeysError> {
    let ctx = KeysContext::connect(o).await?;
    warn_rules(&ctx);
    let a = ctx.analyze().await?;
    println!(
        "scanned {}  matched {}  unmatched {}",
        a.scanned, a.matched, a.unmatched
    );
    for (rule, r) in &a.per_rule {
        println!("  {rule:<16} {:>9} keys  types {:?}", r.keys, r.types);
        for [old, new] in &r.samples {
            println!("      {old} -> {new}");
        }
    }
    println!("types: {:?}", a.types);
    println!("ttl: {:?}", a.ttl);
    println!(
        "memory (sampled {}): mean {:.0} B, p50 {} B, p95 {} B, max {} B, estimated total {} B",
        a.memory.sampled,
        a.memory.mean,
        a.memory.p50,
        a.memory.p95,
        a.memory.max,
        a.memory.estimated_total
    );
    for b in a.biggest.iter().take(5) {
        println!("  big: {} ({}, {} B)", b.key, b.r#type, b.bytes);
    }
    println!(
        "collisions: {} new names claimed twice, {} new names already exist",
        a.collisions.duplicate_new_names, a.collisions.target_exists
    );
    write_report(common, a.report(JOB).with("analysis", &a))?;
    Ok(a.exit_status())
}

/// `ferry keys plan`: a dry run.
async fn plan(o: KeysOptions, common: &Common) -> Result<ExitStatus, KeysError> {
    let ctx = KeysContext::connect(o).await?;
    warn_rules(&ctx);
    let p = ctx.plan().await?;
    println!(
        "plan (dry run, nothing written): scanned {}  matched {}  unmatched {}",
        p.scanned, p.matched, p.unmatched
    );
    for (action, n) in &p.actions {
        println!("  {action:<14} {n}");
    }
    for a in p.planned.iter().take(20) {
        println!(
            "  {} {} -> {} [{} via {}]",
            a.action, a.key, a.new_key, a.rule, a.method
        );
    }
    if p.delete_source {
        println!("  each copied source key would then be deleted (--delete-source)");
    }
    if p.clash_count > 0 {
        println!(
            "  {} new name(s) would each be written from more than one old key (--on-collision {:?}):",
            p.clash_count, p.on_collision
        );
        for c in p.clashes.iter().take(20) {
            let from: Vec<String> = c
                .sources
                .iter()
                .map(|s| format!("{} [{}]", s.key, s.rule))
                .collect();
            println!("  clash {} <- {}", c.new_key, from.join(", "));
        }
    }
    write_report(common, p.report(JOB).with("plan", &p))?;
    Ok(p.exit_status())
}

/// `ferry keys apply`: asks first unless `-y`.
async fn apply(
    o: KeysOptions,
    common: &Common,
    yes: bool,
    stop: CancellationToken,
) -> Result<ExitStatus, KeysError> {
    let ctx = KeysContext::connect(o).await?;
    warn_rules(&ctx);
    if !yes
        && !confirm(&format!(
            "copy keys from {} to {}?",
            ctx.source.display(),
            ctx.target.display()
        ))
    {
        return Err(KeysError::Usage(
            "apply changes data: review `ferry keys plan`, then pass -y".into(),
        ));
    }
    let a = ctx.apply(stop).await?;
    let s = &a.stats;
    println!(
        "apply{}: scanned {}  migrated {}  skipped_existing {}  overwritten {}  vanished {}  failed {}  unmatched {}  collisions {}  source_deleted {}  ({:.0} keys/s)",
        if a.resumed { " (resumed)" } else { "" },
        s.scanned,
        s.migrated,
        s.skipped_existing,
        s.overwritten,
        s.vanished,
        s.failed,
        s.unmatched,
        s.collisions,
        s.source_deleted,
        a.keys_per_s
    );
    for e in a.errors.items.iter().take(10) {
        eprintln!("  failed: {}: {}", e.item, e.error);
    }
    let report = a
        .report(JOB)
        .with("per_rule", &a.per_rule)
        .with("keys_per_s", a.keys_per_s)
        .with("resumed", a.resumed)
        .with("source", ctx.source.display())
        .with("target", ctx.target.display());
    write_report(common, report)?;
    Ok(a.exit_status())
}

/// `ferry keys verify`.
async fn verify(o: KeysOptions, common: &Common) -> Result<ExitStatus, KeysError> {
    let ctx = KeysContext::connect(o).await?;
    let v = ctx.verify().await?;
    println!(
        "verify: checked {}  ok {}  missing {}  value differs {}  ttl differs {}  source gone {}  moved (existence only) {}",
        v.checked,
        v.ok,
        v.missing,
        v.mismatched_value,
        v.mismatched_ttl,
        v.source_gone,
        v.moved_unchecked
    );
    for e in v.errors.items.iter().take(10) {
        println!("  {}: {}", e.item, e.error);
    }
    write_report(common, v.report(JOB))?;
    Ok(v.exit_status())
}

/// `ferry keys rollback`: counts without `-y`, undoes with it.
async fn rollback(
    o: KeysOptions,
    common: &Common,
    yes: bool,
    stop: CancellationToken,
) -> Result<ExitStatus, KeysError> {
    let ctx = KeysContext::connect(o).await?;
    let r = ctx.rollback(!yes, stop).await?;
    if r.dry_run {
        println!(
            "rollback would undo {} keys written by apply (run `{}`); pass -y to do it",
            r.entries, ctx.opts.run_name
        );
    } else {
        println!(
            "rollback: {} entries, {} new keys deleted, {} overwritten keys restored, {} source keys restored, {} failed",
            r.entries, r.deleted, r.restored_overwritten, r.restored_sources, r.failed
        );
    }
    write_report(common, r.report(JOB))?;
    Ok(r.exit_status())
}

/// `ferry keys status`.
async fn status(o: KeysOptions, common: &Common) -> Result<ExitStatus, KeysError> {
    let ctx = KeysContext::connect(o).await?;
    let s = ctx.status().await?;
    match &s.state {
        None => println!("run `{}`: no apply recorded", s.run_name),
        Some(st) => println!(
            "run `{}`: {} ({:.1} %), started {}, updated {}; scanned {} migrated {} skipped {} failed {}; {} keys in the ledger",
            s.run_name,
            st.state,
            s.percent.unwrap_or(0.0),
            st.started_at,
            st.updated_at,
            st.stats.scanned,
            st.stats.migrated,
            st.stats.skipped_existing,
            st.stats.failed,
            s.ledger_entries
        ),
    }
    if let Some(path) = &common.report {
        std::fs::write(path, serde_json::to_vec_pretty(&s).unwrap_or_default())
            .map_err(|e| KeysError::Usage(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(ExitStatus::Done)
}

/// [`options`] without write options, with the value options of the command line.
fn options_with(
    file: &FileConfig,
    common: &Common,
    values: &ValueOpts,
) -> Result<KeysOptions, KeysError> {
    let mut o = options(file, common, None)?;
    values.apply_to(&mut o);
    Ok(o)
}

/// Merges flags (and FERRY_* variables, which clap reads) over the config file.
fn options(
    file: &FileConfig,
    common: &Common,
    write: Option<&WriteOpts>,
) -> Result<KeysOptions, KeysError> {
    let mut o = file.keys_options();
    if let Some(s) = &common.source {
        o.source = s.clone();
    } else if file.keys.source.is_none() {
        return Err(KeysError::Usage(
            "no source: pass --source URL (or FERRY_SOURCE, or [keys] source in --config)".into(),
        ));
    }
    if let Some(t) = &common.target {
        o.target = Some(t.clone());
    }
    if let Some(r) = &common.rules {
        o.rules = r.clone();
    } else if file.keys.rules.is_none() {
        return Err(KeysError::Usage(
            "no rules: pass --rules FILE (or FERRY_RULES, or [keys] rules in --config)".into(),
        ));
    }
    if let Some(m) = &common.match_glob {
        o.match_glob = Some(m.clone());
    }
    if let Some(c) = &common.checkpoint {
        o.checkpoint = Some(c.clone());
    }
    if let Some(r) = &common.run_name {
        o.run_name = r.clone();
    }
    if let Some(b) = common.batch_size {
        o.batch_size = b;
    }
    if let Some(c) = common.concurrency {
        o.concurrency = c;
    }
    if let Some(w) = write {
        if let Some(p) = w.on_conflict {
            o.on_conflict = p;
        }
        if let Some(p) = w.on_collision {
            o.on_collision = p;
        }
        o.delete_source |= w.delete_source;
    }
    o.source_password = std::env::var("FERRY_SOURCE_PASSWORD").ok().map(Into::into);
    o.target_password = std::env::var("FERRY_TARGET_PASSWORD").ok().map(Into::into);
    Ok(o)
}

fn write_report(common: &Common, report: Report) -> Result<(), KeysError> {
    if let Some(path) = &common.report {
        report.write(path, common.report_format).map_err(|e| {
            KeysError::Usage(format!("cannot write the report {}: {e}", path.display()))
        })?;
        println!("report: {}", path.display());
    }
    Ok(())
}

/// Parses `\xNN` escapes so binary key names can be typed.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.get(i + 1) == Some(&b'x')
            && let Some(h) = s
                .get(i + 2..i + 4)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(h);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn confirm(question: &str) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return false;
    }
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes")
}

fn warn_rules(ctx: &KeysContext) {
    for w in &ctx.rule_warnings {
        eprintln!("warning: {w}");
    }
}
