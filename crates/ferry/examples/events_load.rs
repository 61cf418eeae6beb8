//! Load generator for the events job (used by `scripts/bench-events`): saves events with
//! [`EventLog::save_batch`] while a Pub/Sub subscriber counts what the relay (`ferry events
//! relay`, running separately) publishes. Two latencies per event: save → publish (from the
//! moment its save returned, committed, to its arrival at the subscriber) and send → receive
//! (from just before the save call, so including the save itself). Prints one JSON line.
//!
//! ```text
//! cargo run --release --example events_load -- POSTGRES_URL REDIS_URL COUNT BATCH RATE PRODUCERS
//! ```
//! `RATE` 0 saves as fast as possible; otherwise events per second overall.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry::jobs::events::{EventLog, NewEvent};
use futures::StreamExt;
use serde_json::json;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() == 6,
        "usage: events_load POSTGRES_URL REDIS_URL COUNT BATCH RATE PRODUCERS"
    );
    let (pg, redis_url) = (&args[0], &args[1]);
    let count: usize = args[2].parse()?;
    let batch: usize = args[3].parse::<usize>()?.max(1);
    let rate: f64 = args[4].parse()?;
    let producers: usize = args[5].parse::<usize>()?.max(1);

    let log = Arc::new(EventLog::open(pg, producers + 1).await?);
    let client = redis::Client::open(redis_url.as_str())?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe("events").await?;
    let subscriber = tokio::spawn(async move {
        // (event id, sent, received) in µs
        let mut arrivals: Vec<(i64, i64, i64)> = Vec::with_capacity(count);
        let mut messages = pubsub.into_on_message();
        while arrivals.len() < count {
            let Ok(Some(msg)) =
                tokio::time::timeout(Duration::from_secs(30), messages.next()).await
            else {
                break;
            };
            let payload: String = msg.get_payload().unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
            if let (Some(id), Some(sent)) = (v["id"].as_i64(), v["event_data"]["sent_us"].as_i64())
            {
                arrivals.push((id, sent, now_us()));
            }
        }
        (arrivals, Instant::now())
    });

    let start = Instant::now();
    let per_producer = count / producers;
    let mut tasks = Vec::new();
    for p in 0..producers {
        let log = log.clone();
        let n = if p == producers - 1 {
            count - per_producer * (producers - 1)
        } else {
            per_producer
        };
        tasks.push(tokio::spawn(async move {
            let mut save_ms = Vec::new();
            let mut saved_at: Vec<(i64, i64)> = Vec::new();
            let mut sent = 0usize;
            while sent < n {
                let k = batch.min(n - sent);
                if rate > 0.0 {
                    // This producer's share of the rate, batch by batch.
                    let due =
                        start + Duration::from_secs_f64((sent as f64) * producers as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let events: Vec<NewEvent> = (0..k)
                    .map(|i| {
                        let mut e = NewEvent::new(
                            ["tracking", "motion", "anpr"][(sent + i) % 3],
                            format!("camera-{:02}", (sent + i + p) % 16),
                        )
                        .with_data(
                            json!({"sent_us": now_us(), "producer": p, "bbox": [10, 20, 110, 220]}),
                        );
                        e.frame_number = Some((sent + i) as i64);
                        e.snapshot_path = Some(format!("snapshots/{p}/{}.jpg", sent + i));
                        e
                    })
                    .collect();
                let t = Instant::now();
                let saved = log.save_batch(&events).await?;
                let done = now_us();
                save_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                saved_at.extend(saved.iter().map(|s| (s.id, done)));
                sent += k;
            }
            anyhow::Ok((save_ms, saved_at))
        }));
    }
    let mut save_ms = Vec::new();
    let mut saved_at = std::collections::HashMap::new();
    for t in tasks {
        let (ms, at) = t.await??;
        save_ms.extend(ms);
        saved_at.extend(at);
    }
    save_ms.sort_by(f64::total_cmp);
    let saved_s = start.elapsed().as_secs_f64();
    let (arrivals, last) = subscriber.await?;
    let seconds = last.duration_since(start).as_secs_f64();
    let mut latencies: Vec<f64> = arrivals
        .iter()
        .map(|(_, sent, got)| (got - sent) as f64 / 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    // A relay may publish before the producer has even read its commit's acknowledgement.
    let mut after_save: Vec<f64> = arrivals
        .iter()
        .filter_map(|(id, _, got)| saved_at.get(id).map(|s| (got - s).max(0) as f64 / 1000.0))
        .collect();
    after_save.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "events": count,
            "received": latencies.len(),
            "seconds": seconds,
            "save_seconds": saved_s,
            "events_per_s": latencies.len() as f64 / seconds,
            "p50_ms": percentile(&after_save, 0.50),
            "p99_ms": percentile(&after_save, 0.99),
            "max_ms": after_save.last().copied().unwrap_or(f64::NAN),
            "e2e_p50_ms": percentile(&latencies, 0.50),
            "e2e_p99_ms": percentile(&latencies, 0.99),
            "save_p50_ms": percentile(&save_ms, 0.50),
            "save_p99_ms": percentile(&save_ms, 0.99),
        })
    );
    anyhow::ensure!(
        latencies.len() == count,
        "only {} of {count} events arrived",
        latencies.len()
    );
    Ok(())
}
