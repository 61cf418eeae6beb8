//! `ferry bridge` against a real Kafka-protocol broker (Tansu) and a real Redis: every record
//! arrives once with its fields, offsets are committed only after Redis stored the records
//! (SIGKILL before and after the write), the reverse bridge, dead letters, backpressure, a
//! rebalance with three processes and six partitions, frames re-encoded with their quality
//! checked, `health`, `ferry serve` with a `[[bridge]]` section, and bad input.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ferry_connectors::frames::{self, ImageTarget, Message as _, ProcessedFrame, RgbImage};
use ferry_testkit::{
    KafkaBroker, KafkaRecord, RedisServer, committed_offsets, kill_at_failpoint, output_text,
    produce, read_topic, unique_name,
};
use redis::Commands;

type Fields = HashMap<String, Vec<u8>>;
/// An XRANGE reply.
type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;
/// An XPENDING summary.
type Pending = (
    u64,
    Option<String>,
    Option<String>,
    Option<Vec<(String, String)>>,
);

struct Env {
    broker: Arc<KafkaBroker>,
    redis: Arc<RedisServer>,
    topic: String,
    stream: String,
    group: String,
}

impl Env {
    fn new(partitions: u32) -> Self {
        let broker = KafkaBroker::start();
        let topic = unique_name("frames");
        broker.create_topic(&topic, partitions);
        Env {
            broker: Arc::new(broker),
            redis: Arc::new(RedisServer::start()),
            topic,
            stream: "camera_frames".into(),
            group: unique_name("bridge"),
        }
    }

    /// `ferry bridge run` of this topic and stream, environment cleared of FERRY_* options.
    fn ferry(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
        c.args([
            "bridge",
            "run",
            "--kafka",
            &self.broker.bootstrap(),
            "--topic",
            &self.topic,
        ])
        .args([
            "--group",
            &self.group,
            "--redis",
            &self.redis.url(),
            "--stream",
            &self.stream,
        ])
        .args(["--session-timeout", "6"])
        .args(extra)
        .env_remove("FERRY_FAILPOINT")
        .env_remove("FERRY_CONFIG")
        .env_remove("FERRY_BRIDGE_KAFKA")
        .env_remove("FERRY_BRIDGE_REDIS")
        .env("RUST_LOG", "warn");
        c
    }

    /// `ferry bridge run --reverse --once` of this stream into `topic`, reading it as `group`.
    fn reverse(&self, topic: &str, group: &str, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args([
                "bridge",
                "run",
                "--reverse",
                "--once",
                "--kafka",
                &self.broker.bootstrap(),
            ])
            .args([
                "--topic",
                topic,
                "--group",
                group,
                "--redis",
                &self.redis.url(),
            ])
            .args(["--stream", &self.stream])
            .args(extra)
            .env_remove("FERRY_CONFIG")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }

    fn run(&self, extra: &[&str]) -> Output {
        self.ferry(extra).output().unwrap()
    }

    fn produce(&self, records: &[KafkaRecord]) {
        produce(&self.broker.bootstrap(), &self.topic, records);
    }

    fn entries(&self, key: &str) -> Vec<(String, Fields)> {
        let reply: Entries = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query(&mut self.redis.conn())
            .unwrap();
        reply
            .into_iter()
            .map(|(id, fields)| (id, fields.into_iter().collect()))
            .collect()
    }

    /// (partition, offset) of each entry of the Stream, in Stream order.
    fn positions(&self) -> Vec<(i32, i64)> {
        self.entries(&self.stream)
            .iter()
            .map(|(_, f)| (num(f, "kafka_partition") as i32, num(f, "kafka_offset")))
            .collect()
    }

    /// Entries of the stream pending in `group`.
    fn pending(&self, group: &str) -> u64 {
        let pending: Pending = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(group)
            .query(&mut self.redis.conn())
            .unwrap();
        pending.0
    }

    /// Creates `group` at the stream's start and reads `count` entries as `consumer`, who then
    /// dies without acknowledging them.
    fn read_and_die(&self, group: &str, consumer: &str, count: usize) {
        let mut conn = self.redis.conn();
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(group)
            .arg("0")
            .query(&mut conn)
            .unwrap();
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query(&mut conn)
            .unwrap();
    }

    fn committed(&self) -> Vec<(i32, i64)> {
        committed_offsets(&self.broker.bootstrap(), &self.topic, &self.group)
    }
}

fn num(f: &Fields, name: &str) -> i64 {
    let v = f
        .get(name)
        .unwrap_or_else(|| panic!("no field {name} in {f:?}"));
    String::from_utf8_lossy(v).parse().unwrap()
}

fn text(f: &Fields, name: &str) -> String {
    String::from_utf8_lossy(&f[name]).into_owned()
}

/// Reads up to 100 entries after `last_id`, notes their (partition, offset) in `seen` and
/// deletes them, as a consumer that keeps the Stream short.
fn drain(
    conn: &mut redis::Connection,
    stream: &str,
    last_id: &mut String,
    seen: &mut Vec<(i32, i64)>,
) {
    let reply: Entries = redis::cmd("XRANGE")
        .arg(stream)
        .arg(format!("({last_id}"))
        .arg("+")
        .arg("COUNT")
        .arg(100)
        .query(conn)
        .unwrap();
    for (id, fields) in &reply {
        let f: Fields = fields.iter().cloned().collect();
        seen.push((num(&f, "kafka_partition") as i32, num(&f, "kafka_offset")));
        let _: u64 = conn.xdel(stream, &[id]).unwrap();
        last_id.clone_from(id);
    }
}

/// `n` records of about `size` bytes, keyed by camera, with a header.
fn records(n: usize, size: usize) -> Vec<KafkaRecord> {
    (0..n)
        .map(|i| {
            let mut value = format!("message {i:06} ").into_bytes();
            value.resize(size.max(value.len()), b'x');
            let mut r = KafkaRecord::new(Some(format!("camera-{}", i % 7).as_bytes()), &value);
            r.headers
                .push(("trace".into(), format!("t{i}").into_bytes()));
            r
        })
        .collect()
}

fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}", output_text(out));
}

/// Every produced record is in the Stream exactly once.
fn assert_all_once(env: &Env, n: usize) {
    let positions = env.positions();
    let distinct: BTreeSet<_> = positions.iter().copied().collect();
    assert_eq!(distinct.len(), n, "records missing from the stream");
    assert_eq!(positions.len(), n, "records written twice");
}

#[test]
fn records_arrive_once_with_their_key_headers_and_kafka_coordinates() {
    let env = Env::new(3);
    let sent = records(600, 200);
    env.produce(&sent);
    let out = env.run(&["--once", "--batch", "64", "--json"]);
    assert_ok(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["written"], 600, "{summary}");
    assert_eq!(summary["dead_lettered"], 0);
    assert_all_once(&env, 600);
    let by_value: HashMap<Vec<u8>, &KafkaRecord> =
        sent.iter().map(|r| (r.value.clone(), r)).collect();
    for (_, f) in env.entries(&env.stream) {
        let r = by_value[&f["value"]];
        assert_eq!(f.get("key"), r.key.as_ref(), "the key travels");
        assert_eq!(f["h:trace"], r.headers[0].1, "headers travel as h:NAME");
        assert_eq!(text(&f, "kafka_topic"), env.topic);
        assert!(
            num(&f, "kafka_timestamp") > 1_600_000_000_000,
            "kafka_timestamp in ms"
        );
    }
    // Offsets are committed to the end of every partition.
    let ends: BTreeMap<i32, i64> =
        env.positions()
            .into_iter()
            .fold(BTreeMap::new(), |mut m, (p, o)| {
                let e = m.entry(p).or_insert(0);
                *e = (*e).max(o + 1);
                m
            });
    for (p, committed) in env.committed() {
        assert_eq!(
            Some(&committed),
            ends.get(&p),
            "partition {p} committed to its end"
        );
    }
    // A second run finds nothing new and writes nothing.
    let out = env.run(&["--once", "--json"]);
    assert_ok(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["written"], 0, "{summary}");
    assert_all_once(&env, 600);
}

#[test]
fn offsets_are_committed_only_after_redis_stored_the_records_and_a_sigkill_loses_nothing() {
    let env = Env::new(3);
    env.produce(&records(3000, 100));
    // Killed after the write, before the commit: the stream holds what Kafka has not committed.
    kill_at_failpoint(env.ferry(&["--batch", "100"]), "bridge-after-write");
    let written = env.positions();
    assert!(
        !written.is_empty(),
        "the first batch was written before the kill"
    );
    for (p, committed) in env.committed() {
        let last = written
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| o + 1)
            .max()
            .unwrap_or(0);
        assert!(
            committed <= last,
            "partition {p}: committed {committed} beyond what Redis stored ({last})"
        );
    }
    // Killed before a later write: every committed offset is covered by stored entries.
    kill_at_failpoint(env.ferry(&["--batch", "100"]), "bridge-before-write");
    let written = env.positions();
    for (p, committed) in env.committed() {
        let stored: BTreeSet<i64> = written
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .collect();
        for o in 0..committed {
            assert!(
                stored.contains(&o),
                "partition {p}: offset {o} committed but not in the stream"
            );
        }
    }
    // Killed at random points of running batches, then finished: each record once.
    for delay_ms in [700, 1500] {
        let mut child = env
            .ferry(&["--batch", "50"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let out = env.run(&["--once", "--batch", "500"]);
    assert_ok(&out);
    assert_all_once(&env, 3000);
}

#[test]
fn the_reverse_bridge_restores_values_keys_headers_and_partitions_and_acknowledges_after_the_broker()
 {
    let env = Env::new(3);
    let sent = records(300, 64);
    env.produce(&sent);
    assert_ok(&env.run(&["--once"]));
    // An entry written by a producer on the Stream itself (no `value` field).
    let _: String = env
        .redis
        .conn()
        .xadd(
            &env.stream,
            "*",
            &[("camera_id", "cam-9"), ("event", "stop")],
        )
        .unwrap();
    let back = unique_name("rollback");
    env.broker.create_topic(&back, 3);
    let out = env.reverse(&back, "rollback", &[]);
    assert_ok(&out);
    let got = read_topic(&env.broker.bootstrap(), &back, 301);
    assert_eq!(got.len(), 301, "every entry is a record");
    let original: HashMap<Vec<u8>, &KafkaRecord> =
        sent.iter().map(|r| (r.value.clone(), r)).collect();
    let stream_partition: HashMap<Vec<u8>, i64> = env
        .entries(&env.stream)
        .into_iter()
        .filter(|(_, f)| f.contains_key("value"))
        .map(|(_, f)| (f["value"].clone(), num(&f, "kafka_partition")))
        .collect();
    let mut native = 0;
    for r in &got {
        let origin = r
            .headers
            .iter()
            .find(|(k, _)| k == "ferry-origin")
            .expect("ferry-origin header");
        assert!(origin.1.starts_with(env.stream.as_bytes()), "{:?}", origin);
        match original.get(&r.value) {
            Some(o) => {
                assert_eq!(r.key, o.key);
                assert!(r.headers.contains(&o.headers[0]), "headers restored");
                assert_eq!(
                    i64::from(r.partition.unwrap()),
                    stream_partition[&r.value],
                    "partition kept"
                );
            }
            None => {
                let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
                assert_eq!(v["camera_id"], "cam-9");
                native += 1;
            }
        }
    }
    assert_eq!(native, 1);
    assert_eq!(env.pending("rollback"), 0, "everything acknowledged");
    // Running the forward bridge of this stream on the rollback topic brings nothing back.
    let echo = Env {
        topic: back.clone(),
        group: unique_name("echo"),
        ..Env::new_sharing(&env)
    };
    let out = echo.run(&["--once", "--json"]);
    assert_ok(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary["written"], 0,
        "records that came from this stream are not written back: {summary}"
    );
}

impl Env {
    /// The same broker, Redis, topic, stream and group.
    fn new_sharing(env: &Env) -> Self {
        Env {
            broker: env.broker.clone(),
            redis: env.redis.clone(),
            topic: env.topic.clone(),
            stream: env.stream.clone(),
            group: env.group.clone(),
        }
    }
}

/// A noisy street-like frame.
fn frame_image(seed: u32, w: u32, h: u32) -> RgbImage {
    let mut pixels = Vec::with_capacity((w * h * 3) as usize);
    let mut n = seed.wrapping_mul(2_654_435_761).max(1);
    for y in 0..h {
        for x in 0..w {
            n ^= n << 13;
            n ^= n >> 17;
            n ^= n << 5;
            let noise = (n % 11) as i32 - 5;
            let base = [
                (x * 255 / w) as i32,
                (y * 255 / h) as i32,
                ((x + y) % 256) as i32 / 2 + 60,
            ];
            for c in base {
                pixels.push((c + noise).clamp(0, 255) as u8);
            }
        }
    }
    RgbImage::new(w, h, pixels).unwrap()
}

fn json_frame(i: usize, image: &RgbImage) -> Vec<u8> {
    let png = frames::encode_image(image, &ImageTarget::Png).unwrap();
    serde_json::to_vec(&serde_json::json!({
        "frame_id": format!("f{i}"),
        "camera_id": "cam-1",
        "timestamp": 1_767_225_600.5 + i as f64,
        "image_base64": base64::engine::general_purpose::STANDARD.encode(png),
        "location": "gate",
    }))
    .unwrap()
}

#[test]
fn frames_become_protobuf_with_jpeg_of_good_quality_and_bad_ones_go_to_the_dead_letter_stream() {
    let env = Env::new(2);
    let images: Vec<RgbImage> = (0..12).map(|i| frame_image(i + 1, 320, 240)).collect();
    let mut sent: Vec<KafkaRecord> = images
        .iter()
        .enumerate()
        .map(|(i, img)| KafkaRecord::new(Some(b"cam-1"), &json_frame(i, img)))
        .collect();
    let poison: [&[u8]; 4] = [
        b"not json",
        b"{\"frame_id\":\"x\",\"camera_id\":\"c\",\"timestamp\":1,\"image_base64\":\"@@@\"}",
        b"{\"frame_id\":\"nul\\u0000\",\"camera_id\":\"c\",\"timestamp\":1}",
        b"\x00\xff\x00",
    ];
    for p in poison {
        sent.push(KafkaRecord::new(None, p));
    }
    env.produce(&sent);
    let out = env.run(&[
        "--once",
        "--transform",
        "frame-proto",
        "--image",
        "jpeg:85",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "dead letters make exit status 1: {}",
        output_text(&out)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["written"], 12, "{summary}");
    assert_eq!(summary["dead_lettered"], 4, "{summary}");
    assert!(
        summary["compression_ratio"].as_f64().unwrap() > 1.5,
        "JPEG is smaller than PNG: {summary}"
    );
    let entries = env.entries(&env.stream);
    assert_eq!(entries.len(), 12);
    for (_, f) in &entries {
        let frame = ProcessedFrame::decode(f["value"].as_slice()).unwrap();
        let i: usize = frame.frame_id[1..].parse().unwrap();
        assert_eq!(text(f, "frame_id"), frame.frame_id);
        assert_eq!((frame.width, frame.height), (320, 240));
        assert_eq!(frame.quality, 85);
        assert_eq!(
            frame.metadata.get("location").map(String::as_str),
            Some("gate")
        );
        let (decoded, _) = frames::decode_image(&frame.image).unwrap();
        let psnr = frames::psnr(&images[i], &decoded);
        assert!(
            psnr >= 30.0,
            "frame {i}: PSNR {psnr:.1} dB below 30 at JPEG 85"
        );
    }
    let dead = env.entries(&format!("{}:dlq", env.stream));
    assert_eq!(dead.len(), 4);
    let originals: BTreeSet<Vec<u8>> = poison.iter().map(|p| p.to_vec()).collect();
    for (_, f) in &dead {
        assert!(
            originals.contains(&f["value"]),
            "the original bytes are kept"
        );
        assert!(!text(f, "ferry_error").is_empty(), "the reason is kept");
        assert!(f.contains_key("kafka_offset"));
    }
    // The frames go back to the seed's JSON in reverse, image as stored.
    let back = unique_name("frames-back");
    env.broker.create_topic(&back, 2);
    let out = env.reverse(&back, "rb", &["--transform", "frame-proto"]);
    assert_ok(&out);
    let got = read_topic(&env.broker.bootstrap(), &back, 12);
    assert_eq!(got.len(), 12);
    for r in got {
        let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
        let image = base64::engine::general_purpose::STANDARD
            .decode(v["image_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(frames::decode_image(&image).unwrap().0.width(), 320);
        assert_eq!(v["camera_id"], "cam-1");
        assert_eq!(v["image_format"], "jpeg");
    }
}

#[test]
fn backpressure_pauses_while_the_stream_is_over_its_limit_and_resumes_without_dropping() {
    let env = Env::new(2);
    env.produce(&records(2000, 100));
    let mut child: Child = env
        .ferry(&["--batch", "50", "--max-stream-len", "200"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut conn = env.redis.conn();
    // Nobody reads: the bridge stops near the limit.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut len: u64 = 0;
    while Instant::now() < deadline {
        len = conn.xlen(&env.stream).unwrap();
        if len >= 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    let paused_len: u64 = conn.xlen(&env.stream).unwrap();
    assert!(
        (200..=250).contains(&paused_len),
        "paused at {paused_len} entries (limit 200, batch 50; was {len})"
    );
    // A consumer drains the stream; the bridge resumes until everything is through.
    let mut seen: Vec<(i32, i64)> = Vec::new();
    let mut last_id = "0-0".to_string();
    let mut max_len = paused_len;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 2000 && Instant::now() < deadline {
        drain(&mut conn, &env.stream, &mut last_id, &mut seen);
        max_len = max_len.max(conn.xlen(&env.stream).unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let distinct: BTreeSet<_> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), 2000, "nothing dropped");
    assert_eq!(seen.len(), 2000, "nothing twice");
    assert!(max_len <= 250, "the stream grew to {max_len} entries");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("pausing") && stderr.contains("resuming"),
        "{stderr}"
    );
}

#[test]
fn three_processes_share_six_partitions_and_a_rebalance_after_sigkill_loses_nothing() {
    let env = Env::new(6);
    let total = 12_000;
    let mut sent = records(total, 100);
    for (i, r) in sent.iter_mut().enumerate() {
        r.partition = Some((i % 6) as i32);
    }
    env.produce(&sent);
    // A low --max-stream-len and a reader that drains the stream at its own pace keep the
    // three members busy long enough for a member to die mid-run.
    let spawn = || {
        env.ferry(&["--batch", "50", "--max-stream-len", "300"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut members = vec![spawn(), spawn(), spawn()];
    let mut conn = env.redis.conn();
    let mut seen: Vec<(i32, i64)> = Vec::new();
    let mut last_id = "0-0".to_string();
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < total && Instant::now() < deadline {
        drain(&mut conn, &env.stream, &mut last_id, &mut seen);
        if !killed && seen.len() >= total / 3 {
            // One member dies mid-run; another joins.
            members[1].kill().unwrap();
            members[1].wait().unwrap();
            members.push(spawn());
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for child in &mut members {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(killed, "the run ended before a member was killed");
    let partitions: BTreeSet<i32> = seen.iter().map(|(p, _)| *p).collect();
    assert_eq!(partitions.len(), 6, "every partition bridged");
    let distinct: BTreeSet<_> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), total, "records missing");
    assert_eq!(seen.len(), total, "records written twice");
}

#[test]
fn health_shows_length_groups_pending_and_bridged_offsets() {
    let env = Env::new(1);
    env.produce(&records(50, 10));
    assert_ok(&env.run(&["--once"]));
    env.read_and_die("proc", "worker-1", 10);
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "bridge",
            "health",
            "--redis",
            &env.redis.url(),
            "--stream",
            &env.stream,
            "--json",
        ])
        .output()
        .unwrap();
    assert_ok(&out);
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(h["length"], 50);
    assert!(h["memory_bytes"].as_u64().unwrap() > 0);
    assert_eq!(h["groups"][0]["name"], "proc");
    assert_eq!(h["groups"][0]["pending"], 10);
    assert_eq!(h["groups"][0]["lag"], 40);
    assert_eq!(h["groups"][0]["consumers"][0]["name"], "worker-1");
    assert!(h["groups"][0]["oldest_pending_age_ms"].as_u64().is_some());
    assert_eq!(h["bridged_offsets"][format!("{}/0", env.topic)], 49);
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "bridge",
            "health",
            "--redis",
            &env.redis.url(),
            "--stream",
            &env.stream,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("50 entries") && text.contains("group proc: 10 pending, lag 40"),
        "{text}"
    );
}

#[test]
fn bad_input_is_refused_with_a_clear_error_and_nothing_is_written() {
    let env = Env::new(1);
    env.produce(&records(5, 10));
    let _: () = env.redis.conn().set(&env.stream, "a string").unwrap();
    let out = env.run(&["--once"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a string, not a stream"),
        "{}",
        output_text(&out)
    );
    let missing = Env {
        topic: "no-such-topic".into(),
        ..Env::new_sharing(&env)
    };
    let out = missing.run(&["--once", "--stream", "other"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    for (args, says) in [
        (vec!["--image", "jpeg:0"], "from 1 to 100"),
        (vec!["--batch", "0"], "--batch 0"),
        (vec!["--max-redis-memory", "12q"], "unit"),
        (vec!["--maxlen", "0"], "--maxlen 0"),
        (vec!["--kafka-property", "nonsense"], "NAME=VALUE"),
        (vec!["--max-stream-len", "0"], "--max-stream-len 0"),
        (
            vec!["--kafka-property", "enable.auto.commit=true"],
            "commits offsets itself",
        ),
        (vec!["--kafka-property", "group.id=other"], "use --group"),
    ] {
        let out = env.run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            output_text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{args:?}: {}",
            output_text(&out)
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "bridge",
            "run",
            "--session-timeout",
            "1e9",
            "--kafka",
            &env.broker.bootstrap(),
        ])
        .args([
            "--topic",
            &env.topic,
            "--group",
            "g",
            "--redis",
            &env.redis.url(),
            "--stream",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("over an hour"),
        "{}",
        output_text(&out)
    );
    let s: String = env.redis.conn().get(&env.stream).unwrap();
    assert_eq!(s, "a string", "left intact");
}

#[test]
fn the_reverse_bridge_takes_over_entries_a_dead_consumer_left_pending() {
    let env = Env::new(1);
    let mut conn = env.redis.conn();
    for i in 0..20 {
        let _: String = conn
            .xadd(&env.stream, "*", &[("value", format!("v{i}"))])
            .unwrap();
    }
    env.read_and_die("rollback", "dead", 10);
    std::thread::sleep(Duration::from_millis(600));
    let out = env.reverse(
        &env.topic,
        "rollback",
        &["--claim-idle", "0.5", "--consumer", "alive"],
    );
    assert_ok(&out);
    let got = read_topic(&env.broker.bootstrap(), &env.topic, 20);
    let values: BTreeSet<Vec<u8>> = got.iter().map(|r| r.value.clone()).collect();
    assert_eq!(
        values.len(),
        20,
        "the dead consumer's entries were taken over: {}",
        output_text(&out)
    );
    assert_eq!(env.pending("rollback"), 0);
}

#[test]
fn serve_runs_configured_bridges_and_shows_their_status() {
    use common::serve::{Serve, request};
    let env = Env::new(2);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[[bridge]]\nname = \"frames\"\nkafka = \"{}\"\ntopic = \"{}\"\ngroup = \"{}\"\nredis = \"{}\"\nstream = \"{}\"\nsession_timeout_s = 6\n",
            env.broker.bootstrap(),
            env.topic,
            env.group,
            env.redis.url(),
            env.stream
        ),
    )
    .unwrap();
    let serve = Serve::start(
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("FERRY_CONFIG", &config)
            .stderr(Stdio::null()),
        "ferry serve prints its address",
    );
    env.produce(&records(100, 50));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = serde_json::Value::Null;
    while Instant::now() < deadline {
        let (code, body) = request(
            &serve.loopback(),
            "GET",
            "/api/v1/bridges",
            None,
            None,
            Duration::from_secs(5),
        );
        assert_eq!(code, 200, "{body}");
        status = serde_json::from_str(&body).unwrap();
        if status["bridges"][0]["totals"]["written"] == 100 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(status["bridges"][0]["totals"]["written"], 100, "{status}");
    assert_eq!(status["bridges"][0]["name"], "frames");
    assert_eq!(status["bridges"][0]["direction"], "kafka->stream");
    assert_all_once(&env, 100);
    let (code, body) = request(
        &serve.loopback(),
        "GET",
        "/healthz",
        None,
        None,
        Duration::from_secs(5),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"frames\""), "{body}");
    let (_, metrics) = request(
        &serve.loopback(),
        "GET",
        "/metrics",
        None,
        None,
        Duration::from_secs(5),
    );
    assert!(
        metrics.contains("ferry_bridge_messages_out_total"),
        "{metrics}"
    );
}

/// A frame processor of the library: decodes each `ProcessedFrame`, remembers its id.
struct FrameIds {
    ids: Vec<String>,
}

impl ferry::streams::BatchHandler for FrameIds {
    type Item = ProcessedFrame;
    type Error = ferry::jobs::bridge::BridgeError;

    fn decode(&self, entry: &ferry::streams::StreamEntry) -> Result<ProcessedFrame, String> {
        ferry::jobs::bridge::entry::decode_frame(entry)
    }

    async fn commit(
        &mut self,
        items: &[ProcessedFrame],
    ) -> Result<(), ferry::streams::CommitError<Self::Error>> {
        self.ids.extend(items.iter().map(|f| f.frame_id.clone()));
        Ok(())
    }

    fn redis_error(&self, error: redis::RedisError) -> Self::Error {
        ferry::jobs::bridge::BridgeError::redis(&"redis://test".into(), error)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_processors_read_a_bridged_stream_with_the_library_consumer_and_take_over_a_dead_ones_frames()
 {
    let env = Env::new(1);
    let images: Vec<RgbImage> = (0..8).map(|i| frame_image(i + 1, 64, 48)).collect();
    let sent: Vec<KafkaRecord> = images
        .iter()
        .enumerate()
        .map(|(i, img)| KafkaRecord::new(None, &json_frame(i, img)))
        .collect();
    env.produce(&sent);
    assert_ok(&env.run(&["--once", "--transform", "frame-proto", "--image", "webp:80"]));
    // A garbage entry a foreign producer wrote, and a processor that read three and died.
    let mut conn = env.redis.conn();
    let _: String = conn
        .xadd(&env.stream, "*", &[("value", "not a frame")])
        .unwrap();
    env.read_and_die("procs", "dead", 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let names = ferry::streams::ConsumerNames {
        job: "frame processor",
        item: "a frame",
        after_commit_failpoint: "test-frame-processor",
        retries: ferry::streams::Counter {
            metric: "ferry_test_retries_total",
            labels: &[],
        },
        dead_letters: ferry::streams::Counter {
            metric: "ferry_test_dead_letters_total",
            labels: &[],
        },
    };
    let mut options = ferry::streams::ConsumerOptions::new(&env.stream, "procs", "alive", names);
    options.once = true;
    options.claim_idle = Duration::from_millis(200);
    options.batch = 4;
    let mut handler = FrameIds { ids: Vec::new() };
    let stats = ferry::streams::StreamConsumer::new(env.redis.client(), options)
        .run(&mut handler, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    let ids: BTreeSet<String> = handler.ids.into_iter().collect();
    assert_eq!(ids.len(), 8, "every frame processed once: {ids:?}");
    assert_eq!(stats.dead_lettered, 1, "the foreign entry is a dead letter");
    assert_eq!(
        stats.reclaimed, 3,
        "the dead processor's frames were taken over"
    );
    assert_eq!(env.pending("procs"), 0);
}

#[test]
fn frames_transformed_ahead_of_a_sigkill_are_written_once_after_the_restart() {
    let env = Env::new(2);
    let sent: Vec<KafkaRecord> = (0..40)
        .map(|i| KafkaRecord::new(None, &json_frame(i, &frame_image(i as u32 + 1, 96, 64))))
        .collect();
    env.produce(&sent);
    let args = [
        "--transform",
        "frame-proto",
        "--image",
        "jpeg:80",
        "--batch",
        "4",
    ];
    // Killed after a write, while the next batch is being transformed, twice.
    kill_at_failpoint(env.ferry(&args), "bridge-after-write");
    kill_at_failpoint(env.ferry(&args), "bridge-before-write");
    let mut once = args.to_vec();
    once.push("--once");
    assert_ok(&env.run(&once));
    let ids: Vec<String> = env
        .entries(&env.stream)
        .iter()
        .map(|(_, f)| text(f, "frame_id"))
        .collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 40, "every frame bridged");
    assert_eq!(ids.len(), 40, "no frame twice");
}

#[test]
fn a_topic_created_again_is_bridged_again_not_skipped_as_written() {
    let env = Env::new(1);
    let first: Vec<KafkaRecord> = (0..30)
        .map(|i| KafkaRecord::new(None, format!("old-{i}").as_bytes()))
        .collect();
    env.produce(&first);
    assert_ok(&env.run(&["--once"]));
    env.broker.delete_topic(&env.topic);
    env.broker.create_topic(&env.topic, 1);
    let second: Vec<KafkaRecord> = (0..50)
        .map(|i| KafkaRecord::new(None, format!("new-{i}").as_bytes()))
        .collect();
    env.produce(&second);
    let out = env.run(&["--once", "--json"]);
    assert_ok(&out);
    let values: BTreeSet<Vec<u8>> = env
        .entries(&env.stream)
        .into_iter()
        .map(|(_, f)| f["value"].clone())
        .collect();
    for r in first.iter().chain(&second) {
        assert!(
            values.contains(&r.value),
            "{} missing: {}",
            String::from_utf8_lossy(&r.value),
            output_text(&out)
        );
    }
    assert_eq!(env.entries(&env.stream).len(), 80, "each record once");
}

#[test]
fn a_record_with_too_many_headers_is_a_dead_letter_and_is_not_written_twice() {
    let env = Env::new(1);
    let mut records = records(3, 10);
    let mut loaded = KafkaRecord::new(None, b"many headers");
    loaded.headers = (0..1500)
        .map(|i| (format!("h{i}"), b"x".to_vec()))
        .collect();
    records.push(loaded);
    records.extend(self::records(3, 10));
    env.produce(&records);
    let out = env.run(&["--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(env.entries(&env.stream).len(), 6);
    let dead = env.entries(&format!("{}:dlq", env.stream));
    assert_eq!(dead.len(), 1);
    assert!(text(&dead[0].1, "ferry_error").contains("1500 headers"));
    assert_eq!(env.run(&["--once"]).status.code(), Some(0));
    assert_eq!(
        env.entries(&env.stream).len(),
        6,
        "nothing twice on a rerun"
    );
}

#[test]
fn the_reverse_bridge_refuses_a_dead_letter_key_of_another_type_and_acknowledges_nothing() {
    let env = Env::new(1);
    let mut conn = env.redis.conn();
    let _: String = conn.xadd(&env.stream, "*", &[("value", "1")]).unwrap();
    let _: () = conn.set(format!("{}:dlq", env.stream), "x").unwrap();
    let out = env.reverse(&env.topic, "rb", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(":dlq is a string"),
        "{}",
        output_text(&out)
    );
}
