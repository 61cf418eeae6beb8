//! The last part of `ferry demo`: `ferry serve` on the demo's own Redis, SQLite store and a
//! throwaway PostgreSQL database, with a trickle of new events and captions, so the dashboard
//! has something to show; it serves until Ctrl-C.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry_connectors::redis::RedisEndpoint;
use tokio_util::sync::CancellationToken;

use super::DemoOptions;
use crate::jobs::Served;
use crate::jobs::events::{EventsContext, EventsOptions, NewEvent};
use crate::jobs::keys::KeysOptions;
use crate::jobs::keys::routes::ServedKeys;
use crate::jobs::tier::{TierContext, TierOptions};
use crate::server::ServeOptions;

/// Serves the dashboard over the demo's stores until Ctrl-C, then drops its database.
pub async fn part(url: &str, dir: &Path, opts: &DemoOptions) -> anyhow::Result<()> {
    let server = opts.postgres.expose().trim_end_matches('/').to_string();
    let name = format!("ferry_demo_dashboard_{}", std::process::id());
    let (admin, connection) =
        tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let served = serve(url, dir, opts, &format!("{server}/{name}")).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    served
}

async fn serve(url: &str, dir: &Path, opts: &DemoOptions, postgres: &str) -> anyhow::Result<()> {
    let tier = TierContext::connect(TierOptions {
        redis: url.into(),
        store: format!("sqlite://{}", dir.join("tier-demo.db").display()).into(),
        similarity: crate::jobs::tier::demo::backend(),
        ..TierOptions::default()
    })
    .await?;
    let events = Arc::new(
        EventsContext::connect(EventsOptions {
            postgres: postgres.into(),
            redis: url.into(),
            connections: 2,
            ..EventsOptions::default()
        })
        .await?,
    );
    let keys = ServedKeys::new(KeysOptions {
        source: url.into(),
        rules: dir.join("seed-002-rules.toml"),
        ..KeysOptions::default()
    });
    let jobs = Served {
        tier: Some(tier),
        events: Some(events.clone()),
        keys: Some(Arc::new(keys)),
        ..Served::default()
    };
    let options = ServeOptions {
        listen: free_or_any(opts.listen),
        interval: Duration::from_secs(30),
        stats_interval: Duration::from_secs(60),
        history_interval: Duration::from_secs(2),
        ..ServeOptions::default()
    };
    println!(
        "\n== dashboard: http://{}/ shows the jobs above (new events and captions arrive every few seconds); Ctrl-C stops the demo",
        options.listen
    );
    let stop = crate::runtime::shutdown_token();
    let redis = RedisEndpoint::connect(url, None).await?;
    let traffic = tokio::spawn(traffic(events, redis, stop.clone()));
    let served = crate::server::serve(options, jobs, stop.clone()).await;
    stop.cancel();
    let _ = traffic.await;
    served
}

/// `wanted`, or a free port on the same address when it is taken.
fn free_or_any(wanted: SocketAddr) -> SocketAddr {
    match std::net::TcpListener::bind(wanted) {
        Ok(_) => wanted,
        Err(_) => SocketAddr::new(wanted.ip(), 0),
    }
}

/// A little live traffic: an event every two seconds, a caption every five.
async fn traffic(events: Arc<EventsContext>, redis: RedisEndpoint, stop: CancellationToken) {
    const CAMERAS: [&str; 3] = ["gate", "dock", "field-north"];
    const SEEN: [&str; 3] = [
        "a delivery van waits at the gate",
        "a forklift moves pallets on the dock",
        "deer cross the north field",
    ];
    let mut i = 0_usize;
    loop {
        let camera = CAMERAS[i % CAMERAS.len()];
        let event = NewEvent::new(
            if i.is_multiple_of(2) {
                "motion"
            } else {
                "person"
            },
            camera,
        )
        .with_data(serde_json::json!({ "demo": true, "n": i }));
        if let Err(e) = events.log.save_batch(&[event]).await {
            tracing::debug!(error = %e, "demo event not saved");
        }
        if i.is_multiple_of(5) {
            let mut xadd = redis::cmd("XADD");
            xadd.arg(format!("captions:{camera}"))
                .arg("*")
                .arg("caption")
                .arg(SEEN[i % SEEN.len()]);
            let key = format!("captions:{camera}");
            let _ = redis.query(key.as_bytes(), xadd).await;
        }
        i += 1;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
