//! Comparing Redis streams with their consumer groups, consumers and pending entries, and a
//! stream fixture that has every case a copy of a stream must keep.

use std::collections::BTreeMap;

use redis::{Connection, Value};

use crate::replies::{reply_fields, reply_int, reply_list, reply_string, run_command};

/// Everything observable about a stream and its consumer groups, except times.
#[derive(Debug, PartialEq)]
pub struct StreamState {
    /// `XINFO STREAM` without the encoding-dependent `radix-tree-*` fields.
    pub info: BTreeMap<String, Value>,
    /// `XRANGE - +`.
    pub entries: Value,
    /// `XINFO GROUPS`, every field.
    pub groups: Vec<BTreeMap<String, Value>>,
    /// `XINFO CONSUMERS` per group without the time fields (the time a consumer was last
    /// seen cannot be set by any command).
    pub consumers: BTreeMap<String, Vec<BTreeMap<String, Value>>>,
    /// `XPENDING key group` (count, smallest and greatest id, count per consumer).
    pub pending_summary: BTreeMap<String, Value>,
    /// `XPENDING key group - + 1000`: id, consumer, delivery count.
    pub pending: BTreeMap<String, Vec<(String, String, i64)>>,
    /// The idle time (ms) of each of those pending entries, compared approximately.
    pub idle: BTreeMap<String, Vec<i64>>,
}

/// Reads the [`StreamState`] of the stream `key`.
pub fn stream_state(c: &mut Connection, key: &str) -> StreamState {
    let mut info = reply_fields(run_command(c, &["XINFO", "STREAM", key]));
    info.retain(|k, _| !k.starts_with("radix-tree"));
    let entries = run_command(c, &["XRANGE", key, "-", "+"]);
    let groups: Vec<BTreeMap<String, Value>> =
        reply_list(run_command(c, &["XINFO", "GROUPS", key]))
            .into_iter()
            .map(reply_fields)
            .collect();
    let mut consumers = BTreeMap::new();
    let mut pending_summary = BTreeMap::new();
    let mut pending = BTreeMap::new();
    let mut idle = BTreeMap::new();
    for g in &groups {
        let name = reply_string(&g["name"]);
        let cs: Vec<BTreeMap<String, Value>> =
            reply_list(run_command(c, &["XINFO", "CONSUMERS", key, &name]))
                .into_iter()
                .map(|v| {
                    let mut m = reply_fields(v);
                    m.retain(|k, _| {
                        !["idle", "inactive", "seen-time", "active-time"].contains(&k.as_str())
                    });
                    m
                })
                .collect();
        consumers.insert(name.clone(), cs);
        pending_summary.insert(name.clone(), run_command(c, &["XPENDING", key, &name]));
        let mut ids = Vec::new();
        let mut idles = Vec::new();
        for e in reply_list(run_command(c, &["XPENDING", key, &name, "-", "+", "1000"])) {
            let e = reply_list(e);
            ids.push((reply_string(&e[0]), reply_string(&e[1]), reply_int(&e[3])));
            idles.push(reply_int(&e[2]));
        }
        pending.insert(name.clone(), ids);
        idle.insert(name, idles);
    }
    StreamState {
        info,
        entries,
        groups,
        consumers,
        pending_summary,
        pending,
        idle,
    }
}

/// Asserts that two stream states are equal, idle times of pending entries within
/// `tolerance_ms`; `what` names the compared stream in the failure messages.
pub fn assert_same_stream(
    what: &str,
    source: &StreamState,
    target: &StreamState,
    tolerance_ms: i64,
) {
    assert_eq!(source.info, target.info, "{what}: XINFO STREAM");
    assert_eq!(source.entries, target.entries, "{what}: XRANGE");
    assert_eq!(source.groups, target.groups, "{what}: XINFO GROUPS");
    assert_eq!(
        source.consumers, target.consumers,
        "{what}: XINFO CONSUMERS"
    );
    assert_eq!(source.pending, target.pending, "{what}: XPENDING - + 1000");
    assert_eq!(
        source.pending_summary, target.pending_summary,
        "{what}: XPENDING summary"
    );
    for (group, idles) in &source.idle {
        let theirs = &target.idle[group];
        assert_eq!(
            idles.len(),
            theirs.len(),
            "{what}: pending entries of {group}"
        );
        for (i, (a, b)) in idles.iter().zip(theirs).enumerate() {
            assert!(
                (a - b).abs() <= tolerance_ms,
                "{what}: group {group}, pending entry {i}: idle {a} ms on the source, {b} ms on the target (tolerance {tolerance_ms} ms)"
            );
        }
    }
}

/// Which stream [`build_stream`] builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFixture {
    /// Every case [`build_stream`] lists.
    Full,
    /// The same without three of them: every entry has one field, group `g3` acknowledges
    /// nothing, and entry `9-1` is neither acknowledged nor deleted.
    Basic,
}

/// Builds the stream `key`: 31 entries with deleted and trimmed ones (none of them pending),
/// four consumer groups (created at 0, at `$`, at an id with ENTRIESREAD), consumers with and
/// without pending entries, acknowledged entries, redelivered entries and entries claimed with
/// a long idle time and a retry count. [`StreamFixture::Full`] also gives every third entry a
/// second field, acknowledges an entry in `g3`, and deletes an entry after every group that
/// read it acknowledged it.
pub fn build_stream(c: &mut Connection, key: &str, fixture: StreamFixture) {
    let full = fixture == StreamFixture::Full;
    for i in 1..=30 {
        let id = format!("{i}-1");
        let v = format!("v{i}");
        if full && i % 3 == 0 {
            run_command(c, &["XADD", key, &id, "f", &v, "g", "second field"]);
        } else {
            run_command(c, &["XADD", key, &id, "f", &v]);
        }
    }
    // Deleted before any group saw them.
    run_command(c, &["XDEL", key, "4-1", "17-1"]);
    // g1: two consumers, some entries acknowledged, some delivered twice.
    run_command(c, &["XGROUP", "CREATE", key, "g1", "0"]);
    for consumer in ["c1", "c2"] {
        run_command(
            c,
            &[
                "XREADGROUP",
                "GROUP",
                "g1",
                consumer,
                "COUNT",
                "5",
                "STREAMS",
                key,
                ">",
            ],
        );
    }
    run_command(c, &["XACK", key, "g1", "1-1", "2-1", "3-1"]);
    run_command(c, &["XREADGROUP", "GROUP", "g1", "c1", "STREAMS", key, "0"]);
    // g2: at the end, one consumer that never read.
    run_command(c, &["XGROUP", "CREATE", key, "g2", "$"]);
    run_command(c, &["XGROUP", "CREATECONSUMER", key, "g2", "lurker"]);
    // g3: created at an id with an explicit entries-read.
    run_command(
        c,
        &["XGROUP", "CREATE", key, "g3", "10-1", "ENTRIESREAD", "9"],
    );
    run_command(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g3",
            "c3",
            "COUNT",
            "4",
            "STREAMS",
            key,
            ">",
        ],
    );
    if full {
        run_command(c, &["XACK", key, "g3", "11-1"]);
    }
    // g4: everything delivered (more pending entries than one chunk), two of them claimed by
    // another consumer with a long idle time and a retry count.
    run_command(c, &["XGROUP", "CREATE", key, "g4", "0"]);
    run_command(c, &["XREADGROUP", "GROUP", "g4", "c4", "STREAMS", key, ">"]);
    run_command(
        c,
        &[
            "XCLAIM",
            key,
            "g4",
            "c5",
            "0",
            "12-1",
            "13-1",
            "IDLE",
            "7200000",
            "RETRYCOUNT",
            "5",
            "JUSTID",
        ],
    );
    run_command(c, &["XACK", key, "g4", "1-1", "2-1"]);
    // Trimmed: 1-1 and 2-1 go (acknowledged everywhere), then one more entry.
    run_command(c, &["XTRIM", key, "MINID", "3-1"]);
    run_command(c, &["XADD", key, "31-1", "f", "v31"]);
    if full {
        // Deleted after delivery but acknowledged: not pending anywhere.
        run_command(c, &["XACK", key, "g1", "9-1"]);
        run_command(c, &["XACK", key, "g4", "9-1"]);
        run_command(c, &["XDEL", key, "9-1"]);
    }
}
