//! Benchmark driver (not a test): re-encodes the frames that
//! `scripts/bench_bridge_frames.py generate DIR` wrote, through `ferry_connectors::frames`,
//! with the same four conversions as the Pillow baseline, and prints JSON.
//!
//! ```text
//! cargo run --release -p ferry-connectors --features frames --example reencode_frames -- \
//!     DIR [--threads N] [--repeat R] [--conversions png_jpeg85,raw_jpeg85,jpeg_jpeg85,raw_webp80]
//! ```
//!
//! Inputs are read into memory first and one frame is converted untimed as a warm-up; then
//! the frames are shared out among `--threads` threads (default: all cores), `--repeat` times
//! (default 1). Reported per conversion: the best wall time of the whole set and the best CPU
//! time of the worker threads together (Linux schedstat), as seconds and frames per second.
//! A raw input is copied into an image first, as Pillow's `Image.frombytes` does.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ferry_connectors::frames::{FrameError, ImageTarget, RgbImage, decode_image, encode_image};

/// One conversion: its name, the input files' suffix, the target.
struct Conversion {
    name: &'static str,
    suffix: &'static str,
    target: ImageTarget,
}

const CONVERSIONS: [Conversion; 4] = [
    Conversion {
        name: "png_jpeg85",
        suffix: "png",
        target: ImageTarget::Jpeg { quality: 85 },
    },
    Conversion {
        name: "raw_jpeg85",
        suffix: "rgb",
        target: ImageTarget::Jpeg { quality: 85 },
    },
    Conversion {
        name: "jpeg_jpeg85",
        suffix: "jpg",
        target: ImageTarget::Jpeg { quality: 85 },
    },
    Conversion {
        name: "raw_webp80",
        suffix: "rgb",
        target: ImageTarget::Webp { quality: 80 },
    },
];

const USAGE: &str = "usage: reencode_frames DIR [--threads N] [--repeat R] [--conversions a,b,...]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reencode_frames: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut dir = None;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut repeat = 1;
    let mut only: Option<Vec<String>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--threads needs a positive number")?;
            }
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--repeat needs a positive number")?;
            }
            "--conversions" => {
                let list = args.next().ok_or("--conversions needs a list")?;
                only = Some(list.split(',').map(str::to_owned).collect());
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ if dir.is_none() && !arg.starts_with('-') => dir = Some(arg),
            _ => return Err(format!("unexpected argument `{arg}`; {USAGE}")),
        }
    }
    let dir = std::path::PathBuf::from(dir.ok_or(USAGE)?);
    let manifest: serde_json::Value = std::fs::read(dir.join("manifest.json"))
        .map_err(|e| format!("{}: {e}", dir.join("manifest.json").display()))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("manifest.json: {e}")))?;
    let field = |name: &str| {
        manifest[name]
            .as_u64()
            .ok_or(format!("manifest.json has no number `{name}`"))
    };
    let (width, height, frames) = (
        field("width")? as u32,
        field("height")? as u32,
        field("frames")? as usize,
    );
    if frames == 0 {
        return Err("manifest.json lists no frames".into());
    }

    let mut results = serde_json::Map::new();
    for conversion in &CONVERSIONS {
        if only
            .as_ref()
            .is_some_and(|names| !names.iter().any(|n| n == conversion.name))
        {
            continue;
        }
        let inputs = (0..frames)
            .map(|i| {
                let path = dir.join(format!("frame_{i:04}.{}", conversion.suffix));
                std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let raw = conversion.suffix == "rgb";
        let convert = |data: &[u8]| {
            reencode(data, raw, width, height, &conversion.target).map_err(|e| e.to_string())
        };

        // Warm-up, untimed: the codecs' one-time initialisation.
        convert(&inputs[0])?;
        let mut best: Option<Round> = None;
        for _ in 0..repeat {
            let round = timed_round(&inputs, threads, &convert)?;
            best = Some(match best {
                None => round,
                Some(b) => Round {
                    wall: b.wall.min(round.wall),
                    cpu: b.cpu.min(round.cpu),
                    bytes_out: round.bytes_out,
                },
            });
        }
        let best = best.ok_or("--repeat must be at least 1")?;
        let bytes_in: u64 = inputs.iter().map(|d| d.len() as u64).sum();
        results.insert(
            conversion.name.into(),
            serde_json::json!({
                "frames": inputs.len(),
                "seconds": best.wall,
                "fps": inputs.len() as f64 / best.wall,
                "cpu_seconds": best.cpu,
                "fps_cpu": inputs.len() as f64 / best.cpu,
                "bytes_in": bytes_in,
                "bytes_out": best.bytes_out,
            }),
        );
    }
    let report = serde_json::json!({
        "tool": "ferry",
        "threads": threads,
        "repeat": repeat,
        "conversions": results,
    });
    println!("{report}");
    Ok(())
}

/// One timed pass over all frames.
struct Round {
    /// Wall-clock seconds.
    wall: f64,
    /// CPU seconds of the worker threads together.
    cpu: f64,
    /// Output bytes of all frames.
    bytes_out: u64,
}

/// Converts every input once, shared out among `threads` threads.
fn timed_round(
    inputs: &[Vec<u8>],
    threads: usize,
    convert: &(dyn Fn(&[u8]) -> Result<usize, String> + Sync),
) -> Result<Round, String> {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let outputs: Vec<Result<(u64, f64), String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let cpu_start = thread_cpu_seconds()?;
                    let mut bytes = 0u64;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= inputs.len() {
                            return Ok((bytes, thread_cpu_seconds()? - cpu_start));
                        }
                        bytes += convert(&inputs[i])? as u64;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("a worker panicked".into())))
            .collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let mut round = Round {
        wall,
        cpu: 0.0,
        bytes_out: 0,
    };
    for output in outputs {
        let (bytes, cpu) = output?;
        round.bytes_out += bytes;
        round.cpu += cpu;
    }
    Ok(round)
}

/// CPU time of the calling thread (Linux: the first field of /proc/thread-self/schedstat,
/// nanoseconds on the CPU), so that other load on the machine does not count.
fn thread_cpu_seconds() -> Result<f64, String> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .map_err(|e| format!("/proc/thread-self/schedstat: {e}"))?;
    text.split_whitespace()
        .next()
        .and_then(|ns| ns.parse::<u64>().ok())
        .map(|ns| ns as f64 / 1e9)
        .ok_or_else(|| format!("/proc/thread-self/schedstat: unexpected `{text}`"))
}

/// Decodes (or, for raw input, copies) one frame and encodes it; returns the output's size.
fn reencode(
    data: &[u8],
    raw: bool,
    width: u32,
    height: u32,
    target: &ImageTarget,
) -> Result<usize, FrameError> {
    let image = if raw {
        RgbImage::new(width, height, data.to_vec())?
    } else {
        decode_image(data)?.0
    };
    Ok(encode_image(&image, target)?.len())
}
