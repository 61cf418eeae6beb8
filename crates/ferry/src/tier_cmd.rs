//! The binary's glue for `ferry tier …` and `ferry serve`.

use anyhow::Context;
use chrono::{TimeZone, Utc};
use ferry::config::FileConfig;
use ferry::jobs::tier::{self, PassRequest, TierContext, TierOptions};
use ferry::report::Report;
use ferry_core::error::ExitStatus;
use ferry_core::tier::TierEvent;

use crate::cli::{TierAction, TierArgs};

/// Merges flags and FERRY_* variables over `[tier]`.
pub fn options(file: &FileConfig, args: &TierArgs) -> TierOptions {
    let mut o = file.tier_options();
    if let Some(r) = &args.redis {
        o.redis = r.clone();
    }
    if let Some(s) = &args.store {
        o.store = s.clone();
    }
    if let Some(l) = args.layout {
        o.layout = l;
    }
    if let Some(s) = args.similarity {
        o.similarity = s;
    }
    if let Some(t) = args.threshold {
        o.similarity_threshold = Some(t);
    }
    if let Some(c) = &args.checkpoint {
        o.checkpoint = Some(c.clone());
    }
    o.redis_password = std::env::var("FERRY_REDIS_PASSWORD").ok().map(Into::into);
    o
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

async fn connect(file: &FileConfig, args: &TierArgs) -> anyhow::Result<TierContext> {
    Ok(TierContext::connect(options(file, args)).await?)
}

/// Runs one tier action.
pub async fn tier_action(action: TierAction, file: &FileConfig) -> anyhow::Result<ExitStatus> {
    let stop = ferry::runtime::shutdown_token();
    match action {
        TierAction::Run {
            tier: args,
            camera,
            all,
            dry_run,
            report,
            report_format,
        } => {
            let ctx = connect(file, &args).await?;
            let started = Utc::now();
            let outcome = tier::run_pass(
                &ctx,
                PassRequest {
                    camera,
                    all,
                    dry_run,
                    trigger: "cli".into(),
                },
                stop,
            )
            .await?;
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
            if let Some(path) = report {
                let mut errors = ferry::report::ErrorLog::default();
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
        TierAction::Preview {
            tier: args,
            camera,
            json,
        } => {
            let ctx = connect(file, &args).await?;
            let outcome = tier::run_pass(
                &ctx,
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
        TierAction::Status { tier: args, json } => {
            let ctx = connect(file, &args).await?;
            let s = tier::status(&ctx).await?;
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
        TierAction::History {
            tier: args,
            limit,
            json,
        } => {
            let ctx = connect(file, &args).await?;
            let runs = tier::history(&ctx, limit).await?;
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
        TierAction::Events {
            tier: args,
            camera,
            limit,
            json,
        } => {
            let ctx = connect(file, &args).await?;
            let events = tier::events(&ctx, camera.as_deref(), limit).await?;
            if json {
                print_json(&events)?;
            } else {
                print_events(&events);
            }
            Ok(ExitStatus::Done)
        }
        TierAction::Clear {
            tier: args,
            camera,
            discard,
            yes,
        } => {
            if discard && !yes {
                anyhow::bail!(
                    "--discard drops camera {camera}'s captions without storing them; add -y to do it"
                );
            }
            let ctx = connect(file, &args).await?;
            let out = tier::clear(&ctx, &camera, discard, "cli", stop).await?;
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
    }
}

/// `ferry serve`.
pub async fn serve(
    file: &FileConfig,
    args: &TierArgs,
    events: &crate::cli::EventsArgs,
    serve: &crate::cli::ServeArgs,
) -> anyhow::Result<ExitStatus> {
    let mut opts = file.serve_options().map_err(anyhow::Error::msg)?;
    serve.apply_to(&mut opts).map_err(anyhow::Error::msg)?;
    // Refuse unusable tokens or an open API on the network before connecting to anything.
    opts.check()?;
    let stop = ferry::runtime::shutdown_token();
    // The events job runs when a PostgreSQL is configured for it.
    let events_configured =
        events.postgres.is_some() || file.events.postgres.as_ref().is_some_and(|p| !p.is_empty());
    // The tier job runs when it is configured (its Redis or store set in the config or by a
    // flag), or when nothing else is (then on its defaults, as `ferry serve` always did).
    let tier_configured = file.tier.redis.is_some()
        || file.tier.store.is_some()
        || args.redis.is_some()
        || args.store.is_some();
    let tier = if tier_configured || !events_configured {
        let ctx = connect(file, args).await?;
        if opts.interval.as_millis() as i64 >= ctx.options.migrate_before_ms {
            tracing::warn!(
                interval_s = opts.interval.as_secs_f64(),
                migrate_before_s = ctx.options.migrate_before_ms as f64 / 1000.0,
                "the pass interval is not shorter than migrate_before: captions may expire between passes"
            );
        }
        Some(ctx)
    } else {
        tracing::info!("the tier job is not configured ([tier] redis and store): not started");
        None
    };
    let events = if events_configured {
        let options = crate::events_cmd::options(file, events);
        Some(ferry::jobs::events::EventsContext::connect(options).await?)
    } else {
        None
    };
    ferry::server::serve(opts, tier, events, stop).await?;
    Ok(ExitStatus::Done)
}
