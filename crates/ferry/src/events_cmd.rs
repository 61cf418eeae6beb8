//! The binary's glue for `ferry events …`.

use std::time::Duration;

use anyhow::Context;
use ferry::config::FileConfig;
use ferry::jobs::events::{
    self, EventQuery, EventStats, EventsContext, EventsOptions, IngestOptions, StoredEvent,
};
use ferry_core::error::ExitStatus;

use crate::cli::{EventsAction, EventsArgs};

/// `[events]` of the file, then FERRY_* variables and flags.
pub fn options(file: &FileConfig, args: &EventsArgs) -> EventsOptions {
    let mut o = file.events_options();
    if let Some(p) = &args.postgres {
        o.postgres = p.clone();
    }
    if let Some(r) = &args.redis {
        o.redis = r.clone();
    }
    o
}

fn parse_time(
    flag: &str,
    value: &Option<String>,
) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    value
        .as_deref()
        .map(|v| {
            ferry_core::events::parse_timestamp(v).with_context(|| {
                format!("--{flag} `{v}` is not an RFC 3339 time (e.g. 2026-11-22T10:00:00Z)")
            })
        })
        .transpose()
}

fn print_event(e: &StoredEvent) {
    println!(
        "{:>10}  {}  {:<10} {:<16} frame {:<8} {}",
        e.id,
        e.timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        e.event_type,
        e.camera_id,
        e.frame_number.map_or("-".to_string(), |f| f.to_string()),
        e.event_data
    );
}

/// Prints the log's statistics, as JSON or as text.
fn print_stats(stats: &EventStats, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        println!(
            "events stored: {} (last id {:?})",
            stats.events, stats.last_id
        );
        println!(
            "unpublished:   {}{}",
            stats.unpublished,
            stats
                .oldest_unpublished_ms
                .map(|ms| format!(" (oldest waiting {:.1} s)", ms as f64 / 1000.0))
                .unwrap_or_default()
        );
        if stats.held_back > 0 {
            println!(
                "held back:     {} (behind {} transaction(s) that inserted events and are still open{})",
                stats.held_back,
                stats.in_flight_transactions,
                stats
                    .oldest_in_flight_ms
                    .map(|ms| format!(", the oldest for {:.1} s", ms as f64 / 1000.0))
                    .unwrap_or_default()
            );
        }
        println!("by type:");
        for (t, n) in &stats.by_type {
            println!("  {t:<20} {n}");
        }
        println!("by camera (busiest first):");
        for (c, n) in &stats.by_camera {
            println!("  {c:<20} {n}");
        }
    }
    Ok(())
}

/// Runs one events action.
pub async fn events_action(action: EventsAction, file: &FileConfig) -> anyhow::Result<ExitStatus> {
    match action {
        EventsAction::Relay { events: args, once } => {
            let ctx = EventsContext::connect(options(file, &args)).await?;
            let stop = ferry::runtime::shutdown_token();
            eprintln!(
                "relaying events from {} to {} (channel `{}`){}",
                ctx.log.url(),
                ctx.publisher.url(),
                ctx.publisher.channel(),
                if once { ", until none is left" } else { "" }
            );
            let summary = events::relay(&ctx, once, stop).await?;
            println!(
                "published {} events ({} retries)",
                summary.published, summary.retries
            );
            Ok(ExitStatus::Done)
        }
        EventsAction::Ingest {
            events: args,
            stream,
            group,
            consumer,
            start_id,
            batch,
            claim_idle,
            dead_letter,
            once,
        } => {
            anyhow::ensure!(batch > 0, "--batch must be positive");
            anyhow::ensure!(claim_idle >= 0.0, "--claim-idle must not be negative");
            let ctx = EventsContext::connect(options(file, &args)).await?;
            let mut opts = IngestOptions::new(&stream, &group);
            if let Some(c) = consumer {
                opts.consumer = c;
            }
            if let Some(d) = dead_letter {
                opts.dead_letter = d;
            }
            opts.start_id = start_id;
            opts.batch = batch;
            opts.claim_idle = Duration::from_secs_f64(claim_idle);
            opts.once = once;
            let stop = ferry::runtime::shutdown_token();
            eprintln!(
                "ingesting {} (group {}, consumer {}) into {}",
                opts.stream,
                opts.group,
                opts.consumer,
                ctx.log.url()
            );
            let s = events::ingest(&ctx, &opts, stop).await?;
            println!(
                "read {}, stored {}, already stored {}, rejected {} (moved to {}), taken over {}, deleted {}, retries {}",
                s.read,
                s.stored,
                s.duplicates,
                s.rejected,
                opts.dead_letter,
                s.reclaimed,
                s.deleted,
                s.retries
            );
            Ok(ExitStatus::from_failures(s.rejected))
        }
        EventsAction::Query {
            events: args,
            camera_id,
            event_type,
            since,
            until,
            limit,
            cursor,
            json,
        } => {
            anyhow::ensure!(
                (1..=1000).contains(&limit),
                "--limit must be between 1 and 1000"
            );
            let q = EventQuery {
                camera_id,
                event_type,
                since: parse_time("since", &since)?,
                until: parse_time("until", &until)?,
                before_id: cursor,
                limit,
            };
            let ctx = EventsContext::connect(options(file, &args)).await?;
            let page = ctx.log.query(&q).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                for e in &page.events {
                    print_event(e);
                }
                match page.next_cursor {
                    Some(c) => println!("next page: --cursor {c}"),
                    None => println!("({} events, last page)", page.events.len()),
                }
            }
            Ok(ExitStatus::Done)
        }
        EventsAction::Stats { events: args, json } => {
            let ctx = EventsContext::connect(options(file, &args)).await?;
            let stats = ctx.log.stats().await?;
            print_stats(&stats, json)?;
            Ok(ExitStatus::Done)
        }
    }
}
