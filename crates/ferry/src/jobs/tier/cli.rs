//! `ferry tier …`: runs one action of the tier job from the command line and prints its
//! outcome.

use anyhow::Context;
use chrono::{TimeZone, Utc};
use ferry_core::error::ExitStatus;
use ferry_core::jobs::tier::TierEvent;
use tokio_util::sync::CancellationToken;

use super::args::{TierAction, TierArgs};
use super::{PassRequest, TierContext};
use crate::config::FileConfig;
use ferry_core::report::{Report, ReportFormat};

/// Runs one tier action; an error is printed and gives [`ExitStatus::Fatal`].
pub async fn run(action: TierAction, file: &FileConfig) -> ExitStatus {
    act(action, file).await.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitStatus::Fatal
    })
}

/// One tier action: connects (after checking what can be checked without a connection) and
/// hands over to the action's function.
async fn act(action: TierAction, file: &FileConfig) -> anyhow::Result<ExitStatus> {
    let stop = crate::runtime::shutdown_token();
    match action {
        TierAction::Run {
            tier,
            camera,
            all,
            dry_run,
            report,
            report_format,
        } => {
            let request = PassRequest {
                camera,
                all,
                dry_run,
                trigger: "cli".into(),
            };
            let report = report.map(|p| (p, report_format));
            run_pass(&connect(file, &tier).await?, request, report, stop).await
        }
        TierAction::Preview { tier, camera, json } => {
            preview(&connect(file, &tier).await?, camera, json, stop).await
        }
        TierAction::Status { tier, json } => status(&connect(file, &tier).await?, json).await,
        TierAction::History { tier, limit, json } => {
            check_limit(limit)?;
            history(&connect(file, &tier).await?, limit, json).await
        }
        TierAction::Events {
            tier,
            camera,
            limit,
            json,
        } => {
            check_limit(limit)?;
            if let Some(c) = &camera {
                super::check_camera(c)?;
            }
            events(&connect(file, &tier).await?, camera, limit, json).await
        }
        TierAction::Clear {
            tier,
            camera,
            discard,
            yes,
        } => clear(file, &tier, camera, discard, yes, stop).await,
    }
}

/// `--limit` of `history` and `events`: at least 1 (the command line, unlike the API, may ask
/// for more than 1,000 at once).
fn check_limit(limit: usize) -> anyhow::Result<()> {
    anyhow::ensure!(limit >= 1, "--limit 0 would show nothing: give at least 1");
    Ok(())
}

async fn connect(file: &FileConfig, args: &TierArgs) -> anyhow::Result<TierContext> {
    Ok(TierContext::connect(args.options(file)).await?)
}

/// `ferry tier run`: one pass, its summary, the events of a dry run and the report.
async fn run_pass(
    ctx: &TierContext,
    request: PassRequest,
    report: Option<(std::path::PathBuf, ReportFormat)>,
    stop: CancellationToken,
) -> anyhow::Result<ExitStatus> {
    let dry_run = request.dry_run;
    let started = Utc::now();
    let outcome = super::run_pass(ctx, request, stop).await?;
    let r = &outcome.run;
    let busy = outcome.cameras.iter().filter(|c| c.busy).count();
    let malformed: u64 = outcome.cameras.iter().map(|c| c.malformed).sum();
    println!(
        "{}{} cameras: {} captions read, {} migrated into {} events, {} entries deleted{}{}{}",
        if dry_run { "dry run, " } else { "" },
        r.cameras,
        r.captions_read,
        r.captions_migrated,
        r.events_written,
        r.entries_deleted,
        if busy > 0 {
            format!(", {busy} busy elsewhere")
        } else {
            String::new()
        },
        if malformed > 0 {
            format!(", {malformed} malformed entries left")
        } else {
            String::new()
        },
        if r.failed > 0 {
            format!(", {} cameras FAILED", r.failed)
        } else {
            String::new()
        },
    );
    if dry_run {
        let events: Vec<_> = outcome
            .cameras
            .iter()
            .flat_map(|c| c.events.clone())
            .collect();
        print_events(&events);
    }
    if let Some((path, report_format)) = report {
        let mut errors = ferry_core::report::ErrorLog::default();
        for c in &outcome.cameras {
            if let Some(e) = &c.error {
                errors.push(c.camera_id.clone(), e.clone());
            }
        }
        let stats = serde_json::json!({
            "cameras": r.cameras,
            "captions_read": r.captions_read,
            "captions_migrated": r.captions_migrated,
            "events_written": r.events_written,
            "entries_deleted": r.entries_deleted,
            "malformed": malformed,
            "busy": busy,
            "failed": r.failed,
        });
        Report::new("tier", "run", dry_run, started, stats, errors)
            .with("run_id", &r.run_id)
            .with(
                "store",
                ctx.options
                    .store
                    .redacted()
                    .split("://")
                    .next()
                    .unwrap_or(""),
            )
            .with("similarity", ctx.options.similarity.as_str())
            .with("cameras", &outcome.cameras)
            .write(&path, report_format)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
        println!("report: {}", path.display());
    }
    Ok(ExitStatus::from_failures(r.failed + malformed))
}

/// `ferry tier preview`.
async fn preview(
    ctx: &TierContext,
    camera: String,
    json: bool,
    stop: CancellationToken,
) -> anyhow::Result<ExitStatus> {
    let outcome = super::run_pass(
        ctx,
        PassRequest {
            camera: Some(camera),
            all: true,
            dry_run: true,
            trigger: "cli".into(),
        },
        stop,
    )
    .await?;
    let events: Vec<_> = outcome.cameras.into_iter().flat_map(|c| c.events).collect();
    if json {
        print_json(&events)?;
    } else {
        let frames: u64 = events.iter().map(|e| e.frame_count).sum();
        println!("{frames} captions would make {} events:", events.len());
        print_events(&events);
    }
    Ok(ExitStatus::Done)
}

/// `ferry tier status`.
async fn status(ctx: &TierContext, json: bool) -> anyhow::Result<ExitStatus> {
    let s = super::status(ctx).await?;
    if json {
        return print_json(&s).map(|_| ExitStatus::Done);
    }
    println!(
        "store {} ({} events, {} captions merged, {} cameras), similarity {}, layout {:?}, due after {} s",
        s.store,
        s.counts.events,
        s.counts.frames,
        s.counts.cameras,
        s.similarity,
        s.layout,
        s.due_age_ms / 1000
    );
    for c in &s.cameras {
        println!(
            "  {:<16} {:>8} captions in Redis, oldest {:>6} s{}{}",
            c.camera_id,
            c.entries,
            c.oldest_age_ms.map_or(0, |a| a / 1000),
            if c.due { ", due" } else { "" },
            c.open_event_id
                .as_ref()
                .map_or(String::new(), |id| format!(", open event {id}"))
        );
    }
    if let Some(r) = &s.last_run {
        println!(
            "last run {} at {}: {} events, {} captions, {} failed",
            r.run_id,
            time(r.started_ms),
            r.events_written,
            r.captions_migrated,
            r.failed
        );
    }
    Ok(ExitStatus::Done)
}

/// `ferry tier history`.
async fn history(ctx: &TierContext, limit: usize, json: bool) -> anyhow::Result<ExitStatus> {
    let runs = super::history(ctx, limit).await?;
    if json {
        return print_json(&runs).map(|_| ExitStatus::Done);
    }
    for r in &runs {
        println!(
            "{}  {:<5} {:>4} cameras {:>8} captions {:>6} events {:>8} deleted {:>3} failed {} ms",
            time(r.started_ms),
            r.trigger,
            r.cameras,
            r.captions_migrated,
            r.events_written,
            r.entries_deleted,
            r.failed,
            r.finished_ms - r.started_ms
        );
    }
    if runs.is_empty() {
        println!("(no runs recorded)");
    }
    Ok(ExitStatus::Done)
}

/// `ferry tier events`.
async fn events(
    ctx: &TierContext,
    camera: Option<String>,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitStatus> {
    let events = super::events(ctx, camera.as_deref(), limit).await?;
    if json {
        print_json(&events)?;
    } else {
        print_events(&events);
    }
    Ok(ExitStatus::Done)
}

/// `ferry tier clear`: refuses `--discard` without `-y` before connecting.
async fn clear(
    file: &FileConfig,
    args: &TierArgs,
    camera: String,
    discard: bool,
    yes: bool,
    stop: CancellationToken,
) -> anyhow::Result<ExitStatus> {
    if discard && !yes {
        anyhow::bail!(
            "--discard drops camera {camera}'s captions without storing them; add -y to do it"
        );
    }
    let ctx = connect(file, args).await?;
    let out = super::clear(&ctx, &camera, discard, "cli", stop).await?;
    match &out.migrated {
        Some(pass) => println!(
            "camera {camera}: {} captions migrated into {} events, {} entries deleted{}",
            pass.run.captions_migrated,
            pass.run.events_written,
            pass.run.entries_deleted,
            if out.left > 0 {
                format!(
                    ", {} malformed entries left (use --discard -y to drop them)",
                    out.left
                )
            } else {
                String::new()
            }
        ),
        None => println!("camera {camera}: {} captions dropped", out.discarded),
    }
    let failed = out.migrated.as_ref().map_or(0, |p| p.run.failed);
    Ok(ExitStatus::from_failures(failed + out.left))
}

fn time(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Prints events as a table.
pub fn print_events(events: &[TierEvent]) {
    if events.is_empty() {
        println!("(no events)");
        return;
    }
    println!(
        "{:<12} {:<19} {:>8} {:>6} {:<6}  caption",
        "camera", "start (UTC)", "duration", "frames", "status"
    );
    for e in events {
        println!(
            "{:<12} {:<19} {:>7}s {:>6} {:<6}  {}{}",
            e.camera_id,
            time(e.start_ms),
            e.duration_ms() / 1000,
            e.frame_count,
            e.status.as_str(),
            e.caption,
            if e.previous_event_id.is_some() {
                "  (continues)"
            } else {
                ""
            }
        );
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
