//! `ferry bridge …`: runs one action of the bridge job from the command line and prints its
//! outcome.

use ferry_core::error::ExitStatus;

use super::args::{BridgeAction, RunArgs};
use super::config::pick;
use super::{BridgeOptions, BridgeStatus, BridgeSummary};
use crate::config::FileConfig;

/// Runs one bridge action; an error is printed and gives [`ExitStatus::Fatal`].
pub async fn run(action: BridgeAction, file: &FileConfig) -> ExitStatus {
    let outcome = match action {
        BridgeAction::Run(args) => run_bridge(&args, file).await,
        BridgeAction::Health {
            bridge,
            redis,
            stream,
            json,
        } => health(file, bridge.as_deref(), redis, stream, json).await,
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitStatus::Fatal
    })
}

/// The options of `ferry bridge run`: its flags over the picked `[[bridge]]` section.
pub fn run_options(args: &RunArgs, file: &FileConfig) -> anyhow::Result<BridgeOptions> {
    let section = pick(&file.bridge, args.bridge.as_deref()).map_err(anyhow::Error::msg)?;
    let options = section
        .cloned()
        .unwrap_or_default()
        .options(args)
        .map_err(anyhow::Error::msg)?;
    options.check()?;
    Ok(options)
}

async fn run_bridge(args: &RunArgs, file: &FileConfig) -> anyhow::Result<ExitStatus> {
    let options = run_options(args, file)?;
    let stop = crate::runtime::shutdown_token();
    let (from, to) = if options.reverse {
        (
            format!("stream {}", options.stream),
            format!("topic {}", options.topic),
        )
    } else {
        (
            format!("topic {}", options.topic),
            format!("stream {}", options.stream),
        )
    };
    eprintln!(
        "bridging {from} to {to} (Kafka {}, group {}, Redis {}, transform {}{}){}",
        options.kafka,
        options.group,
        options.redis.redacted(),
        options.transform.name(),
        match options.transform {
            super::Transform::FrameProto => format!(", image {}", options.image),
            super::Transform::None => String::new(),
        },
        if options.once {
            ", until caught up"
        } else {
            ""
        }
    );
    let direction = if options.reverse {
        "stream->kafka"
    } else {
        "kafka->stream"
    };
    let status = BridgeStatus::new(&options.name, direction);
    let summary = if options.reverse {
        super::reverse(&options, &status, stop).await?
    } else {
        super::forward(&options, &status, stop).await?
    };
    print_summary(&summary, &options, &status, args.json)?;
    Ok(ExitStatus::from_failures(summary.dead_lettered))
}

fn print_summary(
    s: &BridgeSummary,
    options: &BridgeOptions,
    status: &BridgeStatus,
    json: bool,
) -> anyhow::Result<()> {
    let view = status.view();
    if json {
        let mut value = serde_json::to_value(s)?;
        value["compression_ratio"] = serde_json::json!(view.compression_ratio);
        value["lag"] = serde_json::to_value(&view.lag)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "read {}, written {}, already written {}, dead letters {} (in {}), {} → {} bytes, paused {} times, retries {}",
        s.read,
        s.written,
        s.duplicates_skipped,
        s.dead_lettered,
        options.dead_letter(),
        s.bytes_in,
        s.bytes_out,
        s.pauses,
        s.retries
    );
    if options.transform == super::Transform::FrameProto && !options.reverse {
        println!(
            "frame images: {:.2}x smaller (before / after re-encoding); messages {:.2}x",
            view.compression_ratio,
            s.bytes_in as f64 / s.bytes_out.max(1) as f64
        );
    }
    if !view.lag.is_empty() {
        let lag: Vec<String> = view.lag.iter().map(|(p, l)| format!("{p}:{l}")).collect();
        println!("lag by partition: {}", lag.join(" "));
    }
    Ok(())
}

async fn health(
    file: &FileConfig,
    bridge: Option<&str>,
    redis: Option<ferry_core::secret::SecretUrl>,
    stream: Option<String>,
    json: bool,
) -> anyhow::Result<ExitStatus> {
    let section = pick(&file.bridge, bridge).map_err(anyhow::Error::msg)?;
    let redis = redis
        .or_else(|| section.and_then(|s| s.redis.clone()))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!("no redis: give --redis or `redis` in a [[bridge]] section")
        })?;
    let stream = stream
        .or_else(|| section.and_then(|s| s.stream.clone()))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!("no stream: give --stream or `stream` in a [[bridge]] section")
        })?;
    let client = redis::Client::open(redis.expose())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| anyhow::anyhow!("Redis ({}): {e}", redis.redacted()))?;
    let health = super::health::stream_health(&mut conn, &stream)
        .await
        .map_err(|e| anyhow::anyhow!("Redis ({}): {e:#}", redis.redacted()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&health)?);
    } else {
        print!("{}", health.to_text());
    }
    Ok(ExitStatus::Done)
}
