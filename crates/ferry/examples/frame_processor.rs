//! A frame processor on a Stream the bridge fills with `--transform frame-proto`: it reads the
//! Stream as one consumer of a group with Ferry's [`StreamConsumer`] (batches, `XACK` after the
//! work is stored, idle entries of dead consumers taken over, undecodable entries moved to a
//! dead-letter Stream, graceful shutdown on Ctrl-C), decodes each `ProcessedFrame`, measures the
//! image's mean brightness and stores it in the hash `frame_brightness:{camera_id}` (field:
//! frame id), so a frame handled twice after a crash is written twice to the same field.
//!
//! ```text
//! cargo run --example frame_processor -- redis://127.0.0.1:6379 camera_frames [GROUP] [CONSUMER]
//! ```

use std::time::Duration;

use ferry::jobs::bridge::entry::decode_frame;
use ferry::streams::{
    BatchHandler, CommitError, ConsumerNames, ConsumerOptions, Counter, StreamConsumer, StreamEntry,
};
use ferry_connectors::frames::{self, ProcessedFrame};
use ferry_core::error::{Classify, ErrorClass};

const NAMES: ConsumerNames = ConsumerNames {
    job: "frame processor",
    item: "a ProcessedFrame",
    after_commit_failpoint: "frame-processor-after-commit",
    retries: Counter {
        metric: "ferry_example_retries_total",
        labels: &[],
    },
    dead_letters: Counter {
        metric: "ferry_example_dead_letters_total",
        labels: &[],
    },
};

/// A Redis failure of the processor.
#[derive(Debug, thiserror::Error)]
#[error("Redis: {0}")]
struct ProcessorError(redis::RedisError);

impl Classify for ProcessorError {
    fn class(&self) -> ErrorClass {
        ErrorClass::External
    }
}

/// Stores each frame's mean brightness.
struct Brightness {
    conn: redis::aio::MultiplexedConnection,
    frames: u64,
}

impl BatchHandler for Brightness {
    type Item = (ProcessedFrame, f64);
    type Error = ProcessorError;

    fn decode(&self, entry: &StreamEntry) -> Result<Self::Item, String> {
        let frame = decode_frame(entry)?;
        let (image, _) = frames::decode_image(&frame.image).map_err(|e| e.to_string())?;
        let sum: u64 = image.pixels().iter().map(|&p| u64::from(p)).sum();
        let mean = sum as f64 / image.pixels().len().max(1) as f64;
        Ok((frame, mean))
    }

    async fn commit(&mut self, items: &[Self::Item]) -> Result<(), CommitError<ProcessorError>> {
        let mut pipe = redis::pipe();
        for (frame, mean) in items {
            pipe.hset(
                format!("frame_brightness:{}", frame.camera_id),
                &frame.frame_id,
                format!("{mean:.2}"),
            )
            .ignore();
        }
        let () = pipe
            .query_async(&mut self.conn)
            .await
            .map_err(|e| CommitError::Failed(ProcessorError(e)))?;
        self.frames += items.len() as u64;
        Ok(())
    }

    fn redis_error(&self, error: redis::RedisError) -> ProcessorError {
        ProcessorError(error)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let stream = args.next().unwrap_or_else(|| "camera_frames".into());
    let group = args.next().unwrap_or_else(|| "frame-processors".into());
    let consumer = args.next().unwrap_or_else(|| "processor-1".into());
    let client = redis::Client::open(url.as_str())?;
    let mut options = ConsumerOptions::new(&stream, &group, &consumer, NAMES);
    options.batch = 50;
    options.claim_idle = Duration::from_secs(30);
    options.dead_letter = format!("{stream}:processor-dlq");
    options.once = std::env::var_os("ONCE").is_some();
    let mut handler = Brightness {
        conn: client.get_multiplexed_async_connection().await?,
        frames: 0,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    let stats = StreamConsumer::new(client, options)
        .run(&mut handler, stop)
        .await?;
    println!(
        "processed {} frames (read {}, dead letters {}, taken over {})",
        handler.frames, stats.read, stats.dead_lettered, stats.reclaimed
    );
    Ok(())
}
