//! The events job's part of `ferry demo`: events saved in a throwaway PostgreSQL database and
//! published on Redis through the outbox relay.

use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::jobs::events::{self, EventQuery, EventsContext, EventsOptions, NewEvent};

/// The events part: a throwaway database on `server`, events saved by two producers (the
/// library and a plain SQL INSERT), published by the relay, received by a subscriber.
pub async fn part(redis_url: &str, server: &str) -> anyhow::Result<()> {
    let server = server.trim_end_matches('/');
    let name = format!("ferry_demo_{}", std::process::id());
    let (admin, connection) = tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach PostgreSQL at {} ({e}); `make demo` starts it (scripts/setup.sh), or pass --postgres",
                ferry_connectors::schema::redact_url(server)
            )
        })?;
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let result = events_demo(redis_url, &format!("{server}/{name}")).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    result
}

async fn events_demo(redis_url: &str, postgres: &str) -> anyhow::Result<()> {
    let ctx = EventsContext::connect(EventsOptions {
        postgres: postgres.into(),
        redis: redis_url.into(),
        connections: 2,
        ..EventsOptions::default()
    })
    .await?;
    let mut pubsub = redis::Client::open(redis_url)?.get_async_pubsub().await?;
    pubsub.subscribe("events").await?;
    let subscriber = tokio::spawn(async move {
        let mut received = Vec::new();
        let mut messages = pubsub.into_on_message();
        while let Ok(Some(msg)) =
            tokio::time::timeout(Duration::from_secs(3), messages.next()).await
        {
            received.push(msg.get_payload::<String>().unwrap_or_default());
        }
        received
    });
    let cameras = ["gate", "dock", "field-north"];
    let batch: Vec<NewEvent> = (0..24)
        .map(|i| {
            let camera = cameras[i % 3];
            let mut e = match i % 4 {
                0 => NewEvent::new("anpr", camera).with_data(
                    serde_json::json!({"plate": format!("AB-{:03}", 100 + i), "confidence": 0.97}),
                ),
                1 => NewEvent::new("motion", camera)
                    .with_data(serde_json::json!({"area_pct": 12 + i})),
                _ => NewEvent::new("tracking", camera)
                    .with_data(serde_json::json!({"track_id": i / 2, "bbox": [10, 20, 110, 220]})),
            };
            e.frame_number = Some(100 * i as i64);
            e.snapshot_path = Some(format!("snapshots/{camera}/{}.jpg", 100 * i));
            e
        })
        .collect();
    let saved = ctx.log.save_batch(&batch).await?;
    let (sql, connection) = tokio_postgres::connect(postgres, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    sql.batch_execute(
        "INSERT INTO events (event_type, camera_id, event_data) VALUES ('motion', 'gate', '{\"zone\": \"entrance\"}')",
    )
    .await?;
    let stats = ctx.log.stats().await?;
    println!(
        "8. events: {} saved in PostgreSQL ({} with EventLog::save_batch, 1 with a plain SQL INSERT), {} waiting in the outbox",
        stats.events,
        saved.len(),
        stats.unpublished
    );
    let relayed = events::relay(&ctx, true, CancellationToken::new()).await?;
    let received = subscriber.await?;
    println!(
        "9. events relay: {} published on channel `events` and marked published; a subscriber received {}",
        relayed.published,
        received.len()
    );
    let page = ctx
        .log
        .query(&EventQuery {
            camera_id: Some("gate".into()),
            limit: 4,
            ..EventQuery::default()
        })
        .await?;
    println!("   the newest events of camera gate:");
    for e in &page.events {
        println!(
            "     #{:<4} {:<9} frame {:<6} {}",
            e.id,
            e.event_type,
            e.frame_number.map_or("-".into(), |f| f.to_string()),
            e.event_data
        );
    }
    if received.len() as i64 != stats.events || ctx.log.stats().await?.unpublished != 0 {
        anyhow::bail!("the events demo did not deliver every event");
    }
    Ok(())
}
