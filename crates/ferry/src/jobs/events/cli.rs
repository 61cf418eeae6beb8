//! `ferry events …`: runs one action of the events job from the command line and prints its
//! outcome.

use std::time::Duration;

use anyhow::Context;
use ferry_core::error::ExitStatus;

use super::args::{EventsAction, EventsArgs};
use super::{EventQuery, EventStats, EventsContext, IngestOptions, StoredEvent};
use crate::config::FileConfig;

/// Runs one events action; an error is printed and gives [`ExitStatus::Fatal`].
pub async fn run(action: EventsAction, file: &FileConfig) -> ExitStatus {
    let outcome = match action {
        EventsAction::Relay { events, once } => relay(events.options(file), once).await,
        EventsAction::Ingest {
            events,
            stream,
            group,
            consumer,
            start_id,
            batch,
            claim_idle,
            dead_letter,
            once,
        } => {
            let mut opts = super::ingest_options(&stream, &group);
            if let Some(c) = consumer {
                opts.consumer = c;
            }
            if let Some(d) = dead_letter {
                opts.dead_letter = d;
            }
            opts.start_id = start_id;
            opts.once = once;
            ingest(events.options(file), opts, batch, claim_idle).await
        }
        EventsAction::Query {
            events,
            camera_id,
            event_type,
            since,
            until,
            limit,
            cursor,
            json,
        } => {
            let query = EventQuery {
                camera_id,
                event_type,
                since: None,
                until: None,
                before_id: cursor,
                limit,
            };
            query_events(&events, file, query, (since, until), json).await
        }
        EventsAction::Stats { events, json } => stats(&events, file, json).await,
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitStatus::Fatal
    })
}

/// `ferry events relay`.
async fn relay(options: super::EventsOptions, once: bool) -> anyhow::Result<ExitStatus> {
    let ctx = EventsContext::connect(options).await?;
    let stop = crate::runtime::shutdown_token();
    eprintln!(
        "relaying events from {} to {} (channel `{}`){}",
        ctx.log.url(),
        ctx.publisher.url(),
        ctx.publisher.channel(),
        if once { ", until none is left" } else { "" }
    );
    let summary = super::relay(&ctx, once, stop).await?;
    println!(
        "published {} events ({} retries)",
        summary.published, summary.retries
    );
    Ok(ExitStatus::Done)
}

/// `ferry events ingest`.
async fn ingest(
    options: super::EventsOptions,
    mut opts: IngestOptions,
    batch: usize,
    claim_idle: f64,
) -> anyhow::Result<ExitStatus> {
    anyhow::ensure!(batch > 0, "--batch must be positive");
    anyhow::ensure!(claim_idle >= 0.0, "--claim-idle must not be negative");
    let ctx = EventsContext::connect(options).await?;
    opts.batch = batch;
    opts.claim_idle = Duration::from_secs_f64(claim_idle);
    let stop = crate::runtime::shutdown_token();
    eprintln!(
        "ingesting {} (group {}, consumer {}) into {}",
        opts.stream,
        opts.group,
        opts.consumer,
        ctx.log.url()
    );
    let s = super::ingest(&ctx, &opts, stop).await?;
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

/// `ferry events query`: checks the page size and parses the `since`/`until` flags (RFC 3339)
/// before connecting.
async fn query_events(
    args: &EventsArgs,
    file: &FileConfig,
    mut q: EventQuery,
    (since, until): (Option<String>, Option<String>),
    json: bool,
) -> anyhow::Result<ExitStatus> {
    anyhow::ensure!(
        (1..=1000).contains(&q.limit),
        "--limit must be between 1 and 1000"
    );
    q.since = parse_time("since", &since)?;
    q.until = parse_time("until", &until)?;
    let ctx = EventsContext::connect(args.options(file)).await?;
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

/// `ferry events stats`.
async fn stats(args: &EventsArgs, file: &FileConfig, json: bool) -> anyhow::Result<ExitStatus> {
    let ctx = EventsContext::connect(args.options(file)).await?;
    let stats = ctx.log.stats().await?;
    print_stats(&stats, json)?;
    Ok(ExitStatus::Done)
}

fn parse_time(
    flag: &str,
    value: &Option<String>,
) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    value
        .as_deref()
        .map(|v| {
            ferry_core::jobs::events::parse_timestamp(v).with_context(|| {
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
