//! `ferry keys apply / verify / rollback` in bounded memory: values far bigger than the
//! memory a run may take (about 1 GiB) are copied, compared and restored chunk by chunk, each
//! command's peak RSS measured with `/usr/bin/time`. Against real redis-server processes
//! (started by ferry-testkit).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferry_testkit::RedisServer;
use ferry_testkit::output_text as text;
use redis::{Commands, Connection, Value};

mod common;
use common::keys::{OLD_TO_NEW_RULES, assert_output_has, keys_matching, write_rules};

/// Peak RSS any one `ferry keys` command may reach, whatever the size of the values (the big
/// hash below is about 1 GiB).
const MAX_RSS_BYTES: u64 = 120 * 1024 * 1024;
/// Bytes of each field value of the big hashes: 4,000 (not 4,096) keeps each value inside one
/// 4 KiB allocation of the server.
const FIELD_BYTES: usize = 4000;

struct Setup {
    dir: tempfile::TempDir,
    rules: PathBuf,
}

fn setup() -> Setup {
    let time = Path::new("/usr/bin/time");
    assert!(
        time.exists(),
        "/usr/bin/time is missing: run `make test-setup` (scripts/setup.sh installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path(), OLD_TO_NEW_RULES);
    Setup { dir, rules }
}

/// Runs `ferry [--config CONFIG] keys ACTION --source SRC --rules RULES EXTRA...` under
/// `/usr/bin/time`; returns its output and peak RSS in bytes.
fn measured(
    s: &Setup,
    config: Option<&Path>,
    action: &str,
    src: &str,
    extra: &[&str],
) -> (Output, u64) {
    let rss_file = s.dir.path().join(format!("{action}.rss"));
    let mut c = Command::new("/usr/bin/time");
    c.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(env!("CARGO_BIN_EXE_ferry"));
    if let Some(config) = config {
        c.arg("--config").arg(config);
    }
    let o = c
        .args(["keys", action, "--source", src, "--rules"])
        .arg(&s.rules)
        .args(extra)
        .env_remove("FERRY_SOURCE_PASSWORD")
        .env_remove("FERRY_TARGET_PASSWORD")
        .output()
        .expect("run /usr/bin/time ferry");
    let written = std::fs::read_to_string(&rss_file).unwrap_or_default();
    let kib: u64 = written
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no peak RSS from /usr/bin/time: {written:?}\n{}", text(&o)));
    (o, kib * 1024)
}

/// Runs an action under `/usr/bin/time`, checks its exit code and that its peak RSS stays
/// under [`MAX_RSS_BYTES`]; returns its output.
fn bounded(s: &Setup, action: &str, src: &str, extra: &[&str], code: i32) -> Output {
    bounded_with(s, None, action, src, extra, code)
}

/// [`bounded`] with a config file (verify and rollback take `max_payload` and `chunk_size`
/// from `[keys]` there).
fn bounded_with(
    s: &Setup,
    config: Option<&Path>,
    action: &str,
    src: &str,
    extra: &[&str],
    code: i32,
) -> Output {
    let started = std::time::Instant::now();
    let (o, rss) = measured(s, config, action, src, extra);
    eprintln!(
        "ferry keys {action}: peak RSS {:.1} MiB, {:.1} s",
        rss as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(o.status.code(), Some(code), "{action}: {}", text(&o));
    assert!(
        rss < MAX_RSS_BYTES,
        "`ferry keys {action}` peaked at {:.1} MiB of RSS (bound {} MiB)\n{}",
        rss as f64 / 1048576.0,
        MAX_RSS_BYTES / 1048576,
        text(&o)
    );
    o
}

/// Fills the hash `key` with `fields` fields of [`FIELD_BYTES`] bytes each (each value starts
/// with its field number), pipelined, about 16 MiB per round trip.
fn fill_hash(conn: &mut Connection, key: &str, fields: usize) {
    const PER_HSET: usize = 256;
    const PER_PIPE: usize = 16;
    let filler = "x".repeat(FIELD_BYTES);
    let mut next = 0;
    while next < fields {
        let mut p = redis::pipe();
        for _ in 0..PER_PIPE {
            if next >= fields {
                break;
            }
            let end = (next + PER_HSET).min(fields);
            let mut c = redis::cmd("HSET");
            c.arg(key);
            for i in next..end {
                let head = format!("{i:010}");
                c.arg(format!("f{i}"))
                    .arg(format!("{head}{}", &filler[head.len()..]));
            }
            p.add_command(c).ignore();
            next = end;
        }
        let () = p.query(conn).unwrap();
    }
}

fn digest_value(conn: &mut Connection, key: &str) -> String {
    let v: Vec<String> = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg(key)
        .query(conn)
        .unwrap();
    v.into_iter().next().unwrap()
}

fn small_keys(conn: &mut Connection) {
    let _: () = conn.set("old:1", "one").unwrap();
    let _: () = conn.set_ex("old:2", "two", 3600).unwrap();
    let _: () = conn.rpush("old:3", &["a", "b", "c"]).unwrap();
}

#[test]
fn a_one_gib_hash_is_applied_verified_and_rolled_back_in_bounded_memory() {
    let s = setup();
    let (a, b) = (RedisServer::start(), RedisServer::start());
    let mut src = a.conn();
    fill_hash(&mut src, "old:big", 262_144);
    let _: () = src.pexpire("old:big", 7_200_000).unwrap();
    small_keys(&mut src);
    let big_digest = digest_value(&mut src, "old:big");
    let (from, to) = (a.url(), b.url());

    let o = bounded(&s, "apply", &from, &["-y", "--target", &to], 0);
    assert_output_has(&o, "migrated 4");
    let mut dst = b.conn();
    assert_eq!(digest_value(&mut dst, "new:big"), big_digest);
    let ttl: i64 = dst.pttl("new:big").unwrap();
    assert!(ttl > 7_000_000, "the TTL came along: {ttl}");

    let o = bounded(&s, "verify", &from, &["--target", &to], 0);
    assert_output_has(&o, "ok 4");

    bounded(&s, "rollback", &from, &["-y", "--target", &to], 0);
    assert_eq!(keys_matching(&mut dst, "new:*"), Vec::<String>::new());
    assert_eq!(keys_matching(&mut dst, "*ferry-tmp*"), Vec::<String>::new());
    assert_eq!(digest_value(&mut src, "old:big"), big_digest, "source kept");
}

#[test]
fn delete_source_and_overwrite_of_big_values_roll_back_in_bounded_memory() {
    // About 200 MB values with a 16 MB --max-payload: the same paths as a value of many GB.
    const FIELDS: usize = 51_200;
    let s = setup();
    let (a, b) = (RedisServer::start(), RedisServer::start());
    let (mut src, mut dst) = (a.conn(), b.conn());
    fill_hash(&mut src, "old:moved", FIELDS);
    let _: () = src.pexpire("old:moved", 7_200_000).unwrap();
    small_keys(&mut src);
    let _: () = src.set("old:victim", "the source value").unwrap();
    // The new name of old:victim holds a big value of the target's own, which `overwrite`
    // replaces and rollback must give back, TTL included.
    fill_hash(&mut dst, "new:victim", FIELDS);
    let _: () = dst.pexpire("new:victim", 9_000_000).unwrap();
    let moved_digest = digest_value(&mut src, "old:moved");
    let victim_digest = digest_value(&mut dst, "new:victim");
    let (from, to) = (a.url(), b.url());
    let common = ["--target", to.as_str()];

    let apply = [
        &["-y", "--delete-source", "--on-conflict", "overwrite"][..],
        &common,
        &["--max-payload", "16000000"],
    ]
    .concat();
    let o = bounded(&s, "apply", &from, &apply, 0);
    assert_output_has(&o, "migrated 5");
    assert_eq!(keys_matching(&mut src, "old:*"), Vec::<String>::new());
    assert_eq!(digest_value(&mut dst, "new:moved"), moved_digest);
    let v: String = dst.get("new:victim").unwrap();
    assert_eq!(v, "the source value");

    bounded(&s, "verify", &from, &common, 0);

    let o = bounded(&s, "rollback", &from, &[&["-y"][..], &common].concat(), 0);
    assert_output_has(&o, "1 overwritten keys restored, 5 source keys restored");
    // The big source is back from its new key, value and TTL; the small ones too.
    assert_eq!(digest_value(&mut src, "old:moved"), moved_digest);
    let ttl: i64 = src.pttl("old:moved").unwrap();
    assert!(ttl > 7_000_000, "the source's TTL is back: {ttl}");
    assert_eq!(
        keys_matching(&mut src, "old:*"),
        ["old:1", "old:2", "old:3", "old:moved", "old:victim"]
    );
    let v: String = src.get("old:victim").unwrap();
    assert_eq!(v, "the source value");
    // The overwritten key has its old value and TTL back; nothing else is left.
    assert_eq!(digest_value(&mut dst, "new:victim"), victim_digest);
    let ttl: i64 = dst.pttl("new:victim").unwrap();
    assert!(
        ttl > 8_000_000 && ttl <= 9_000_000,
        "the overwritten key's TTL is back: {ttl}"
    );
    assert_eq!(keys_matching(&mut dst, "new:*"), ["new:victim"]);
    assert_eq!(keys_matching(&mut dst, "*ferry-tmp*"), Vec::<String>::new());
    assert_eq!(keys_matching(&mut src, "*ferry-tmp*"), Vec::<String>::new());
}

/// Six types plus a list and a string longer than one comparison window.
fn many_types(conn: &mut Connection) {
    let _: () = conn.set("old:str", b"\x00binary\xffvalue").unwrap();
    let _: () = conn
        .hset_multiple("old:hash", &[("a", "1"), ("b", "2")])
        .unwrap();
    let _: () = conn.rpush("old:list", &["x", "y", "z"]).unwrap();
    let _: () = conn.sadd("old:set", &["m1", "m2"]).unwrap();
    let _: () = conn
        .zadd_multiple("old:zset", &[(1.5, "one"), (2.25, "two")])
        .unwrap();
    for id in ["1-1", "2-1"] {
        let _: String = redis::cmd("XADD")
            .arg("old:stream")
            .arg(id)
            .arg("f")
            .arg(id)
            .query(conn)
            .unwrap();
    }
    let items: Vec<String> = (0..1000).map(|i| format!("item-{i}")).collect();
    let _: () = conn.rpush("old:longlist", &items).unwrap();
    let _: () = conn
        .set("old:longstr", "s".repeat(3 * 1024 * 1024))
        .unwrap();
    let _: () = conn.pexpire("old:hash", 3_600_000).unwrap();
}

#[test]
fn verify_compares_values_element_by_element() {
    let s = setup();
    let (a, b) = (RedisServer::start(), RedisServer::start());
    many_types(&mut a.conn());
    let (from, to) = (a.url(), b.url());
    let o = bounded(&s, "apply", &from, &["-y", "--target", &to], 0);
    assert_output_has(&o, "migrated 8");
    // With a max_payload of 1 every value is compared element by element, in windows of 64;
    // by default by DUMP payloads first.
    let chunked = s.dir.path().join("chunked.toml");
    std::fs::write(&chunked, "[keys]\nmax_payload = 1\nchunk_size = 64\n").unwrap();
    let target = ["--target", to.as_str()];
    for config in [Some(chunked.as_path()), None] {
        let o = bounded_with(&s, config, "verify", &from, &target, 0);
        assert_output_has(&o, "ok 8");
    }
    // One element of each value changes on the target, the lengths stay.
    let mut d = b.conn();
    let _: () = redis::cmd("SETRANGE")
        .arg("new:str")
        .arg(1)
        .arg("B")
        .query(&mut d)
        .unwrap();
    let _: () = d.hset("new:hash", "b", "3").unwrap();
    let _: () = d.lset("new:list", 2, "Z").unwrap();
    let _: () = d.srem("new:set", "m2").unwrap();
    let _: () = d.sadd("new:set", "m3").unwrap();
    let _: () = d.zadd("new:zset", "two", 2.5).unwrap();
    let _: Value = redis::cmd("XDEL")
        .arg("new:stream")
        .arg("1-1")
        .query(&mut d)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg("new:stream")
        .arg("3-1")
        .arg("f")
        .arg("1-1")
        .query(&mut d)
        .unwrap();
    let _: () = d.lset("new:longlist", 900, "changed").unwrap();
    let _: () = redis::cmd("SETRANGE")
        .arg("new:longstr")
        .arg(3 * 1024 * 1024 - 2)
        .arg("!")
        .query(&mut d)
        .unwrap();
    for config in [Some(chunked.as_path()), None] {
        let report = s.dir.path().join("verify.json");
        let extra = [&target[..], &["--report", report.to_str().unwrap()]].concat();
        let o = bounded_with(&s, config, "verify", &from, &extra, 1);
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(r["stats"]["mismatched_value"], 8, "{r}\n{}", text(&o));
        assert_eq!(r["stats"]["ok"], 0, "{r}");
    }
}
