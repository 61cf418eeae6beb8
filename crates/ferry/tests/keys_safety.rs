//! Nothing lost by `ferry keys apply`: old keys that map to one new name, and applications
//! writing while `--delete-source` runs. Real redis-server processes (ferry-testkit).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use ferry_testkit::{RedisServer, output_text as text, unique_name};
use redis::{Commands, Connection};

mod common;
use common::keys::{
    count_keys_matching, ferry, keys_command, keys_matching, keys_with_rules, read_report,
    send_signal, write_rules,
};

/// Writes a rules file into a fresh temporary directory.
fn rules_file(body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name("ferry-safety"));
    std::fs::create_dir_all(&dir).unwrap();
    write_rules(&dir, body)
}

const CLASHING_RULES: &str = r#"
[[rule]]
name = "a"
from = "old:a:{id}"
to = "new:{id}"

[[rule]]
name = "legacy"
from = "legacy:{id}"
to = "new:{id}"
"#;

/// 200 ids that both `old:a:{id}` and `legacy:{id}` exist for, 100 that only `legacy:` has.
fn fill_clashing(conn: &mut Connection) {
    let mut p = redis::pipe();
    for i in 0..200 {
        p.set(format!("old:a:{i}"), format!("a{i}")).ignore();
        p.set(format!("legacy:{i}"), format!("legacy{i}")).ignore();
    }
    for i in 200..300 {
        p.set(format!("legacy:{i}"), format!("legacy{i}")).ignore();
    }
    let () = p.query(conn).unwrap();
}

#[test]
fn old_keys_that_map_to_one_name_are_refused_before_anything_is_written() {
    for two_servers in [false, true] {
        let src = RedisServer::start();
        let dst = RedisServer::start();
        let mut s = src.conn();
        let mut d = dst.conn();
        fill_clashing(&mut s);
        let rules = rules_file(CLASHING_RULES);
        let target = dst.url();
        let extra: Vec<&str> = if two_servers {
            vec!["--target", &target]
        } else {
            vec![]
        };
        let mut t = if two_servers { dst.conn() } else { src.conn() };

        // plan lists every clash.
        let plan_report = rules.with_file_name("plan.json");
        let mut args = extra.clone();
        args.extend(["--report", plan_report.to_str().unwrap()]);
        let out = keys_with_rules("plan", &src.url(), &rules, &args);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("200 new name(s)") && text(&out).contains("clash new:"),
            "{}",
            text(&out)
        );
        let plan = read_report(&plan_report);
        assert_eq!(plan["plan"]["clash_count"], 200);
        let first = &plan["plan"]["clashes"][0];
        assert_eq!(first["sources"].as_array().unwrap().len(), 2);
        assert_eq!(first["sources"][0]["rule"], "a");

        // apply refuses to start: exit 2, the first clashes named, nothing written.
        let mut args = extra.clone();
        args.push("-y");
        let out = keys_with_rules("apply", &src.url(), &rules, &args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("--on-collision"), "{}", text(&out));
        assert!(
            text(&out).contains("← "),
            "names the clashes: {}",
            text(&out)
        );
        assert_eq!(count_keys_matching(&mut t, "new:*"), 0, "nothing written");
        assert_eq!(
            count_keys_matching(&mut t, "ferry:*:state"),
            0,
            "no run recorded"
        );

        // first-wins: rule order decides, the losers stay under their old names.
        let apply_report = rules.with_file_name("apply.json");
        let mut args = extra.clone();
        args.extend([
            "-y",
            "--on-collision",
            "first-wins",
            "--report",
            apply_report.to_str().unwrap(),
        ]);
        let out = keys_with_rules("apply", &src.url(), &rules, &args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let stats = &read_report(&apply_report)["stats"];
        assert_eq!(stats["migrated"], 300, "{stats}");
        assert_eq!(stats["collisions"], 200, "{stats}");
        for i in 0..200 {
            let v: String = t.get(format!("new:{i}")).unwrap();
            assert_eq!(v, format!("a{i}"), "rule a wins for id {i}");
            let kept: String = s.get(format!("legacy:{i}")).unwrap();
            assert_eq!(kept, format!("legacy{i}"));
        }
        for i in 200..300 {
            let v: String = t.get(format!("new:{i}")).unwrap();
            assert_eq!(v, format!("legacy{i}"));
        }
        let out = keys_with_rules("verify", &src.url(), &rules, &extra);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let mut args = extra.clone();
        args.push("-y");
        let out = keys_with_rules("rollback", &src.url(), &rules, &args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(count_keys_matching(&mut t, "new:*"), 0);

        // fail-key: none of the clashing keys is migrated, each counts failed (exit 1).
        let mut args = extra.clone();
        args.extend([
            "-y",
            "--on-collision",
            "fail-key",
            "--report",
            apply_report.to_str().unwrap(),
        ]);
        let out = keys_with_rules("apply", &src.url(), &rules, &args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let stats = &read_report(&apply_report)["stats"];
        assert_eq!(stats["migrated"], 100, "{stats}");
        assert_eq!(stats["failed"], 400, "{stats}");
        assert_eq!(count_keys_matching(&mut t, "new:*"), 100);
        if two_servers {
            assert_eq!(count_keys_matching(&mut d, "new:*"), 100);
            assert_eq!(
                count_keys_matching(&mut s, "new:*"),
                0,
                "nothing on the source"
            );
        }
    }
}

/// A clashing old key an application creates while apply runs (after the check for clashes)
/// never overwrites the new name another old key took: whichever is copied first keeps it, the
/// other is reported, and verify finds every new key equal to the source its ledger names.
#[test]
fn a_clashing_key_created_during_apply_never_overwrites() {
    let src = RedisServer::start();
    let mut s = src.conn();
    let mut p = redis::pipe();
    for i in 0..20_000 {
        p.set(format!("old:a:{i}"), format!("a{i}")).ignore();
    }
    let () = p.query(&mut s).unwrap();
    let rules = rules_file(CLASHING_RULES);
    let url = src.url();
    let report_path = rules.with_file_name("apply.json");
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "keys",
            "apply",
            "--source",
            &url,
            "--rules",
            rules.to_str().unwrap(),
            "-y",
            "--rate",
            "10000",
            "--report",
            report_path.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The check for clashes is over once the run records its state.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !s.exists::<_, bool>("ferry:{keys/default}:state").unwrap() {
        assert!(std::time::Instant::now() < deadline, "apply did not start");
        thread::sleep(std::time::Duration::from_millis(5));
    }
    for i in 0..20_000 {
        let () = s.set(format!("legacy:{i}"), format!("late{i}")).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stats = &read_report(&report_path)["stats"];
    let failed = stats["failed"].as_u64().unwrap();
    assert_eq!(
        out.status.code(),
        Some(if failed > 0 { 1 } else { 0 }),
        "{}",
        text(&out)
    );
    let mut late = 0;
    for i in 0..20_000 {
        let v: String = s.get(format!("new:{i}")).unwrap();
        if v == format!("late{i}") {
            late += 1;
        } else {
            assert_eq!(v, format!("a{i}"), "new:{i}");
        }
    }
    // Every id where the second old key came to be copied too is one reported clash.
    assert!(
        failed >= late,
        "{failed} failures, {late} taken by the late keys"
    );
    let out = keys_with_rules("verify", &url, &rules, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

const MOVE_RULES: &str = r#"
[[rule]]
name = "move"
from = "old:{id}"
to = "new:{id}"
"#;

/// Four writers update old keys while `apply --delete-source` runs; every acknowledged write
/// must be found afterwards, under the old or the new name.
fn delete_source_keeps_concurrent_writes(two_servers: bool, file_store: bool) {
    const KEYS: usize = 40_000;
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let mut s = src.conn();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(5000) {
        let mut p = redis::pipe();
        for i in chunk {
            p.set(format!("old:{i}"), format!("v0-{i}")).ignore();
        }
        let () = p.query(&mut s).unwrap();
    }
    let rules = rules_file(MOVE_RULES);
    let store_dir = rules.with_file_name("store");
    let store_url = format!("file://{}", store_dir.display());
    let target = dst.url();
    let mut args = vec!["-y", "--delete-source", "--rate", "40000"];
    if two_servers {
        args.extend(["--target", &target]);
    }
    if file_store {
        args.extend(["--checkpoint", &store_url]);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let stop = stop.clone();
            let mut c = src.conn();
            thread::spawn(move || {
                let mut last: HashMap<usize, String> = HashMap::new();
                let mut seq = 0u64;
                let mut x = 0x9E37_79B9u64 + w as u64;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Each writer owns the ids ≡ w (mod 4).
                    let id = (x as usize % (KEYS / 4)) * 4 + w;
                    seq += 1;
                    let value = format!("w{w}-{seq}");
                    let () = c.set(format!("old:{id}"), &value).unwrap();
                    last.insert(id, value);
                }
                last
            })
        })
        .collect();
    let out = keys_with_rules("apply", &src.url(), &rules, &args);
    stop.store(true, Ordering::Relaxed);
    let acknowledged: Vec<HashMap<usize, String>> =
        writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        text(&out)
    );
    let mut t = if two_servers { dst.conn() } else { src.conn() };
    let writes: usize = acknowledged.iter().map(HashMap::len).sum();
    assert!(
        writes > 100,
        "the writers ran during the apply ({writes} keys)"
    );
    let mut lost = Vec::new();
    for (id, value) in acknowledged.iter().flatten() {
        let old: Option<String> = s.get(format!("old:{id}")).unwrap();
        let new: Option<String> = t.get(format!("new:{id}")).unwrap();
        if old.as_ref() != Some(value) && new.as_ref() != Some(value) {
            lost.push(format!("old:{id}={value} (old {old:?}, new {new:?})"));
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Every key is somewhere.
    for id in 0..KEYS {
        let old: bool = s.exists(format!("old:{id}")).unwrap();
        let new: bool = t.exists(format!("new:{id}")).unwrap();
        assert!(old || new, "key {id} is gone");
    }
    // A second apply moves what the writers re-created or changed.
    let out = keys_with_rules("apply", &src.url(), &rules, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(count_keys_matching(&mut s, "old:*"), 0);
    assert_eq!(count_keys_matching(&mut t, "new:*"), KEYS);
    for (id, value) in acknowledged.iter().flatten() {
        let new: String = t.get(format!("new:{id}")).unwrap();
        assert_eq!(&new, value, "new:{id} has the last acknowledged write");
    }
}

#[test]
fn delete_source_keeps_concurrent_writes_on_one_server() {
    delete_source_keeps_concurrent_writes(false, false);
}

#[test]
fn delete_source_keeps_concurrent_writes_between_servers() {
    delete_source_keeps_concurrent_writes(true, false);
}

#[test]
fn delete_source_keeps_concurrent_writes_with_a_file_store() {
    delete_source_keeps_concurrent_writes(false, true);
    delete_source_keeps_concurrent_writes(true, true);
}

/// A SIGKILL during a chunked copy leaves a temporary key; the next apply, or a rollback,
/// removes it (it is recorded before the copy starts).
#[test]
fn temporary_keys_of_a_killed_chunked_copy_are_removed() {
    for then in ["apply", "rollback"] {
        let src = RedisServer::start();
        let dst = RedisServer::start();
        let mut s = src.conn();
        let mut d = dst.conn();
        for chunk in 0..40 {
            let mut p = redis::pipe();
            for i in 0..2500 {
                p.hset("old:big", format!("f{chunk}-{i}"), "x".repeat(20))
                    .ignore();
            }
            let () = p.query(&mut s).unwrap();
        }
        let () = s.set("old:small", "1").unwrap();
        let rules = rules_file(MOVE_RULES);
        let target = dst.url();
        let args = [
            "keys",
            "apply",
            "--source",
            &src.url(),
            "--target",
            &target,
            "--rules",
            rules.to_str().unwrap(),
            "-y",
            "--max-payload",
            "1",
            "--chunk-size",
            "10",
        ];
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let tmp = keys_matching(&mut d, "*ferry-tmp*");
            let len: usize = tmp.first().map(|k| d.hlen(k).unwrap_or(0)).unwrap_or(0);
            if len > 100 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the chunked copy did not start"
            );
            thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            keys_matching(&mut d, "*ferry-tmp*").len(),
            1,
            "a partial copy is left"
        );
        let out = match then {
            "apply" => ferry(&args),
            _ => keys_with_rules("rollback", &src.url(), &rules, &["--target", &target, "-y"]),
        };
        assert_eq!(out.status.code(), Some(0), "{then}: {}", text(&out));
        assert!(
            keys_matching(&mut d, "*ferry-tmp*").is_empty(),
            "{then} left {:?}",
            keys_matching(&mut d, "*ferry-tmp*")
        );
        if then == "apply" {
            let n: usize = d.hlen("new:big").unwrap();
            assert_eq!(n, 100_000);
        } else {
            assert!(keys_matching(&mut d, "new:*").is_empty());
        }
    }
}

/// Whether the process `pid` is stopped (SIGSTOP).
fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
        .unwrap_or(false)
}

/// A value copied in chunks is no snapshot: an application changes it while it is copied (the
/// copy reads the change) and changes it back right after. The source must not be deleted
/// then: the new key holds the intermediate value, the source the last acknowledged one.
/// Regression: the source's digest was taken before the copy, matched again at the delete,
/// and the last write was lost.
#[test]
fn delete_source_never_loses_a_write_undone_during_a_chunked_copy() {
    const LEN: usize = 16 << 20;
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let (mut s, mut t) = (src.conn(), dst.conn());
    let () = s.set("old:1", "A".repeat(LEN)).unwrap();
    let rules = rules_file(MOVE_RULES);
    let target = dst.url();
    let mut child = keys_command(
        "apply",
        &src.url(),
        &rules,
        &[
            "-y",
            "--target",
            &target,
            "--delete-source",
            "--max-payload",
            "1",
        ],
    );
    child
        .env("FERRY_PAUSEPOINT", "keys-after-chunked-copy")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = child.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while keys_matching(&mut t, "new:1:ferry-tmp:*").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the chunked copy did not start"
        );
        thread::sleep(std::time::Duration::from_millis(1));
    }
    // Changed while the copy runs (it reads the last byte at its end)…
    let _: i64 = s.setrange("old:1", LEN as isize - 1, "B").unwrap();
    while !is_stopped(child.id()) {
        assert!(
            std::time::Instant::now() < deadline,
            "apply never reached the point after its chunked copy"
        );
        thread::sleep(std::time::Duration::from_millis(5));
    }
    let copied: String = t.getrange("new:1", LEN as isize - 1, -1).unwrap();
    assert_eq!(copied, "B", "the copy read the change");
    // …and changed back once the copy is done: the last acknowledged write.
    let _: i64 = s.setrange("old:1", LEN as isize - 1, "A").unwrap();
    send_signal(&child, "-CONT");
    let out = child.wait_with_output().unwrap();
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        text(&out)
    );
    let last = "A".repeat(LEN);
    let old: Option<String> = s.get("old:1").unwrap();
    let new: Option<String> = t.get("new:1").unwrap();
    assert!(
        old.as_ref() == Some(&last) || new.as_ref() == Some(&last),
        "the last write is lost (old {:?}, new ends with {:?}): {}",
        old.as_ref().map(String::len),
        new.as_ref().and_then(|n| n.get(LEN - 1..)),
        text(&out)
    );
}
