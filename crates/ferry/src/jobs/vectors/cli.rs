//! `ferry vectors …`: runs one action of the vectors job from the command line, prints its
//! outcome and writes its report.

use std::sync::Arc;
use std::time::Duration;

use ferry_connectors::redis::RedisCheckpointStore;
use ferry_core::error::{Classify, ExitStatus};
use ferry_core::jobs::vectors::{Quantization, StorageMode};
use ferry_core::report::Report;
use ferry_core::secret::SecretUrl;
use tokio_util::sync::CancellationToken;

use super::args::{ModeAction, QuantArg, ReportArgs, StoreArgs, VectorsAction};
use super::config::VectorsSection;
use super::migrate::MigrateRun;
use super::validate::ValidateRun;
use super::{
    AnyTarget, SourceSpec, TargetSpec, VectorsContext, VectorsError, VectorsOptions, mode,
    rollback, state, status,
};
use crate::config::FileConfig;
use crate::lifecycle::StepOutcome;

/// The job's name in reports.
const JOB: &str = "vectors";
/// Items compared by `validate` without `--sample` or `--full`.
const DEFAULT_SAMPLE: usize = 1000;

/// Runs one vectors action; an error is printed and gives [`ExitStatus::Fatal`].
pub async fn run(action: VectorsAction, file: &FileConfig) -> ExitStatus {
    act(action, &file.vectors).await.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        tracing::debug!(class = %e.class(), "fatal");
        ExitStatus::Fatal
    })
}

async fn act(action: VectorsAction, file: &VectorsSection) -> Result<ExitStatus, VectorsError> {
    let stop = crate::runtime::shutdown_token();
    if let VectorsAction::Preflight { report, .. }
    | VectorsAction::Migrate { report, .. }
    | VectorsAction::Validate { report, .. }
    | VectorsAction::Rollback { report, .. }
    | VectorsAction::Status { report, .. } = &action
        && let Some(path) = &report.report
    {
        // Found out now, not after an hour of copying.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| report_error(path, e))?;
    }
    match action {
        VectorsAction::Preflight { stores, report } => preflight(file, stores, report).await,
        VectorsAction::Migrate {
            stores,
            report,
            batch,
            workers,
            dry_run,
            restart,
        } => {
            let sizes = (batch, workers);
            let run = MigrateRun { dry_run, restart };
            migrate(file, stores, report, sizes, run, stop).await
        }
        VectorsAction::Validate {
            stores,
            report,
            sample,
            full,
            fix,
            threshold,
            batch,
        } => validate(file, stores, report, sample, full, fix, (threshold, batch)).await,
        VectorsAction::Rollback {
            stores,
            report,
            drop_target,
            yes,
        } => rollback(file, stores, report, drop_target, yes).await,
        VectorsAction::Status { stores, report } => status(file, stores, report).await,
        VectorsAction::Monitor { stores, interval } => monitor(file, stores, interval, stop).await,
        VectorsAction::Mode { stores, action } => mode_action(file, stores, action).await,
    }
}

/// `ferry vectors preflight`.
async fn preflight(
    file: &VectorsSection,
    stores: StoreArgs,
    report: ReportArgs,
) -> Result<ExitStatus, VectorsError> {
    let ctx = connect(resolve(file, &stores)?).await?;
    let p = super::preflight::preflight(&ctx).await?;
    super::preflight::print(&p);
    write(&report, p.report(JOB).with("preflight", &p))?;
    Ok(if p.ready {
        ExitStatus::Done
    } else {
        ExitStatus::ItemFailures
    })
}

/// `ferry vectors migrate`; `(batch, workers)` override the options.
async fn migrate(
    file: &VectorsSection,
    stores: StoreArgs,
    report: ReportArgs,
    (batch, workers): (Option<usize>, Option<usize>),
    run: MigrateRun,
    stop: CancellationToken,
) -> Result<ExitStatus, VectorsError> {
    let mut o = resolve(file, &stores)?;
    if let Some(b) = batch {
        o.batch = b;
    }
    if let Some(w) = workers {
        o.workers = w;
    }
    check_sizes(&o)?;
    let ctx = connect(o).await?;
    let m = super::migrate::migrate(&ctx, run, stop).await?;
    let s = &m.stats;
    println!(
        "{}read {}  written {}  no embedding {}  failed {}  ({:.0} items/s){}",
        if m.dry_run { "dry run: " } else { "" },
        s.read,
        s.written,
        s.missing_embedding,
        s.failed,
        s.items_per_second,
        if m.stopped {
            "; stopped early, rerun to resume"
        } else if s.complete {
            "; complete"
        } else {
            ""
        }
    );
    for e in m.errors.items.iter().take(10) {
        println!("  failed {}: {}", e.item, e.error);
    }
    write(&report, m.report(JOB))?;
    Ok(m.exit_status())
}

/// `ferry vectors validate`; `(threshold, batch)` override the options.
async fn validate(
    file: &VectorsSection,
    stores: StoreArgs,
    report: ReportArgs,
    sample: Option<usize>,
    full: bool,
    fix: bool,
    (threshold, batch): (Option<f64>, Option<usize>),
) -> Result<ExitStatus, VectorsError> {
    let mut o = resolve(file, &stores)?;
    if let Some(t) = threshold {
        o.threshold = threshold_share(t)?;
    }
    if let Some(b) = batch {
        o.batch = b;
    }
    check_sizes(&o)?;
    if sample == Some(0) {
        return Err(VectorsError::Usage(
            "--sample 0 compares nothing: give at least 1, or --full".into(),
        ));
    }
    let sample = (!full).then(|| sample.unwrap_or(DEFAULT_SAMPLE));
    let ctx = connect(o).await?;
    let v = super::validate::validate(&ctx, ValidateRun { sample, fix }).await?;
    let s = &v.stats;
    println!(
        "{} {}: compared {}  matched {}  mismatched {}  missing {}  orphans {}  success {:.2}% (threshold {:.2}%)  max L2 {:.6}{}",
        if s.passed { "PASSED" } else { "FAILED" },
        s.scope,
        s.compared,
        s.matched,
        s.mismatched,
        s.missing,
        s.orphans,
        s.success_rate * 100.0,
        s.threshold * 100.0,
        s.max_l2,
        if fix {
            format!(
                "; fixed: re-copied {}, deleted {}, unfixed {}",
                s.recopied, s.deleted, s.unfixed
            )
        } else {
            String::new()
        }
    );
    for d in v.discrepancies.iter().take(10) {
        println!("  {} {} {}", d.kind, d.id, d.detail);
    }
    write(
        &report,
        v.report(JOB).with("discrepancies", &v.discrepancies),
    )?;
    Ok(if s.passed {
        ExitStatus::Done
    } else {
        ExitStatus::ItemFailures
    })
}

/// `ferry vectors rollback`.
async fn rollback(
    file: &VectorsSection,
    stores: StoreArgs,
    report: ReportArgs,
    drop_target: bool,
    yes: bool,
) -> Result<ExitStatus, VectorsError> {
    let o = resolve(file, &stores)?;
    let checkpoints = Arc::new(RedisCheckpointStore::new(state::connect(&o.state).await?));
    // The target only matters to --drop-target: a target that is down never keeps
    // applications on it (the mode is written first either way).
    let target = if o.target.url.is_empty() {
        None
    } else {
        match AnyTarget::open(&o.target).await {
            Ok(t) => Some(t),
            Err(e) if !drop_target => {
                eprintln!("warning: {e}; setting the mode without it");
                None
            }
            Err(e) => {
                if yes {
                    let key = &o.mode_key;
                    mode::write(checkpoints.endpoint(), key, StorageMode::PrimaryOnly).await?;
                    eprintln!("the mode is primary_only; the target was not dropped");
                }
                return Err(e.into());
            }
        }
    };
    let r = rollback::rollback(&checkpoints, &o, target.as_ref(), drop_target, !yes).await?;
    println!(
        "{}mode {} -> {}{}",
        if r.dry_run { "would set " } else { "" },
        r.mode_before.map_or("unknown".into(), |m| m.to_string()),
        r.mode_after.map_or("unknown".into(), |m| m.to_string()),
        match (r.drop_target, r.dry_run) {
            (true, true) => format!(
                "; would drop the target ({} items); pass -y to do it",
                r.target_items.unwrap_or(0)
            ),
            (true, false) => format!(
                "; dropped the target ({} items)",
                r.target_items.unwrap_or(0)
            ),
            (false, true) => "; pass -y to do it".into(),
            (false, false) => String::new(),
        }
    );
    write(&report, r.report(JOB))?;
    Ok(ExitStatus::Done)
}

/// `ferry vectors status`.
async fn status(
    file: &VectorsSection,
    stores: StoreArgs,
    report: ReportArgs,
) -> Result<ExitStatus, VectorsError> {
    let o = resolve(file, &stores)?;
    let checkpoints = RedisCheckpointStore::new(state::connect(&o.state).await?);
    let s = status::status(&checkpoints, &o).await?;
    println!("{}", status::line(&s));
    for e in &s.last_errors {
        println!("    {}: {}", e.item, e.error);
    }
    if let Some(path) = &report.report {
        let r = Report::new(
            JOB,
            "status",
            true,
            chrono::Utc::now(),
            serde_json::to_value(&s).unwrap_or_default(),
            Default::default(),
        );
        r.write(path, report.report_format)
            .map_err(|e| report_error(path, e))?;
    }
    Ok(ExitStatus::Done)
}

/// `ferry vectors monitor`.
async fn monitor(
    file: &VectorsSection,
    stores: StoreArgs,
    interval: f64,
    stop: CancellationToken,
) -> Result<ExitStatus, VectorsError> {
    let o = resolve(file, &stores)?;
    if !(interval.is_finite() && (0.1..=3600.0).contains(&interval)) {
        return Err(VectorsError::Usage(format!(
            "--interval {interval} is out of range: give 0.1 to 3600 seconds"
        )));
    }
    let checkpoints = RedisCheckpointStore::new(state::connect(&o.state).await?);
    status::monitor(&checkpoints, &o, Duration::from_secs_f64(interval), stop).await?;
    Ok(ExitStatus::Done)
}

/// `ferry vectors mode get|set`.
async fn mode_action(
    file: &VectorsSection,
    stores: StoreArgs,
    action: ModeAction,
) -> Result<ExitStatus, VectorsError> {
    let o = resolve(file, &stores)?;
    let endpoint = state::connect(&o.state).await?;
    match action {
        ModeAction::Get => {
            println!("{}", mode::read(&endpoint, &o.mode_key).await?);
        }
        ModeAction::Set { mode: wanted } => {
            let wanted: StorageMode =
                wanted
                    .parse()
                    .map_err(|e: ferry_core::jobs::vectors::ParseModeError| {
                        VectorsError::Usage(e.to_string())
                    })?;
            let before = mode::write(&endpoint, &o.mode_key, wanted).await?;
            println!("{before} -> {wanted} ({})", o.mode_key);
        }
    }
    Ok(ExitStatus::Done)
}

async fn connect(o: VectorsOptions) -> Result<VectorsContext, VectorsError> {
    for (what, url) in [("--source", &o.source.url), ("--target", &o.target.url)] {
        if url.is_empty() {
            return Err(VectorsError::Usage(format!(
                "{what} is required (or set it in the [vectors] section of the config file)"
            )));
        }
    }
    VectorsContext::connect(o).await
}

fn report_error(path: &std::path::Path, e: std::io::Error) -> VectorsError {
    VectorsError::Usage(format!("cannot write the report {}: {e}", path.display()))
}

fn write(args: &ReportArgs, report: Report) -> Result<(), VectorsError> {
    if let Some(path) = &args.report {
        report
            .write(path, args.report_format)
            .map_err(|e| report_error(path, e))?;
        println!("report: {}", path.display());
    }
    Ok(())
}

fn threshold_share(percent: f64) -> Result<f64, VectorsError> {
    if percent.is_finite() && (0.0..=100.0).contains(&percent) {
        Ok(percent / 100.0)
    } else {
        Err(VectorsError::Usage(format!(
            "--threshold {percent} is not a percentage from 0 to 100"
        )))
    }
}

fn check_sizes(o: &VectorsOptions) -> Result<(), VectorsError> {
    if !(1..=100_000).contains(&o.batch) {
        return Err(VectorsError::Usage(format!(
            "--batch {} is out of range: give 1 to 100000 items",
            o.batch
        )));
    }
    if !(1..=256).contains(&o.workers) {
        return Err(VectorsError::Usage(format!(
            "--workers {} is out of range: give 1 to 256",
            o.workers
        )));
    }
    Ok(())
}

fn pick(flag: &Option<String>, file: &Option<String>, default: &str) -> String {
    flag.clone()
        .or_else(|| file.clone())
        .unwrap_or_else(|| default.to_string())
}

/// The options: flags over the `[vectors]` section over the defaults.
pub fn resolve(file: &VectorsSection, a: &StoreArgs) -> Result<VectorsOptions, VectorsError> {
    let url = |flag: &Option<SecretUrl>, file: &Option<SecretUrl>| {
        flag.clone()
            .or_else(|| file.clone())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| SecretUrl::new(""))
    };
    let source_url = url(&a.source, &file.source);
    let target_url = url(&a.target, &file.target);
    let vector_set = a.vector_set.clone().or_else(|| file.vector_set.clone());
    let collection = a.collection.clone().or_else(|| file.collection.clone());
    if vector_set.is_some() && collection.is_some() {
        return Err(VectorsError::Usage(
            "give --vector-set (Redis target) or --collection (Milvus target), not both".into(),
        ));
    }
    let quant = match (a.quant, &file.quant) {
        (Some(q), _) => Some(match q {
            QuantArg::Noquant => Quantization::NoQuant,
            QuantArg::Q8 => Quantization::Q8,
            QuantArg::Bin => Quantization::Bin,
        }),
        (None, Some(q)) => Some(
            q.parse()
                .map_err(|e: String| VectorsError::Usage(format!("[vectors] quant: {e}")))?,
        ),
        (None, None) => None,
    };
    let is_milvus =
        target_url.expose().starts_with("milvus://") || target_url.expose().starts_with("http");
    let quantization = match (quant, is_milvus) {
        (Some(q), _) => q,
        (None, true) => Quantization::NoQuant,
        (None, false) => Quantization::Q8,
    };
    let target = TargetSpec {
        url: target_url,
        vector_set,
        collection,
        quantization,
        ef: a.ef.or(file.ef),
        m: a.m.or(file.m),
        cas: a.cas || file.cas.unwrap_or(false),
    };
    let source = SourceSpec {
        url: source_url,
        label: pick(&a.label, &file.label, "Media"),
        id_property: pick(&a.id_property, &file.id_property, "id"),
        embedding_property: pick(&a.embedding_property, &file.embedding_property, "embedding"),
        key_pattern: a.key_pattern.clone().or_else(|| file.key_pattern.clone()),
        table: a.table.clone().or_else(|| file.table.clone()),
    };
    let name = a
        .state
        .name
        .clone()
        .or_else(|| file.name.clone())
        .unwrap_or_else(|| target.name().to_string());
    if name.is_empty() || name.chars().any(|c| c.is_control()) {
        return Err(VectorsError::Usage(
            "--name must be a non-empty name without control characters".into(),
        ));
    }
    let state = url(&a.state.state, &file.state);
    let state = if state.is_empty() {
        default_state(&source.url, &target.url)?
    } else {
        state
    };
    let threshold = match file.threshold_percent {
        Some(p) => threshold_share(p)?,
        None => 0.99,
    };
    Ok(VectorsOptions {
        mode_key: a
            .state
            .mode_key
            .clone()
            .or_else(|| file.mode_key.clone())
            .unwrap_or_else(|| format!("ferry:vectors:{name}:mode")),
        name,
        source,
        target,
        state,
        batch: file.batch.unwrap_or(500),
        workers: file.workers.unwrap_or(4),
        threshold,
    })
}

/// The state Redis when none is given: a Redis target, else a FalkorDB or Redis source.
fn default_state(source: &SecretUrl, target: &SecretUrl) -> Result<SecretUrl, VectorsError> {
    let t = target.expose();
    if t.starts_with("redis://") || t.starts_with("rediss://") {
        return Ok(target.clone());
    }
    let s = source.expose();
    if s.starts_with("redis://") || s.starts_with("rediss://") {
        return Ok(source.clone());
    }
    if let Some(rest) = s.strip_prefix("falkordb://") {
        // The graph server is a Redis server: keep its address, drop the graph name.
        let authority = rest.split('/').next().unwrap_or(rest);
        return Ok(SecretUrl::new(format!("redis://{authority}")));
    }
    Err(VectorsError::Usage(
        "pass --state redis://HOST:PORT: a Redis to keep the migration's checkpoint and storage mode in (the default is a Redis target or a FalkorDB/Redis source)".into(),
    ))
}
