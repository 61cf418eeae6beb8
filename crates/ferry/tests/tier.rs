//! The tier job end to end: real redis-server, SQLite / PostgreSQL / FalkorDB stores, the
//! `ferry` binary as users run it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::{FalkorDbServer, PgDatabase, kill_at_failpoint, output_text as text};
use redis::{Commands, Connection};
use serde_json::Value;

mod common;
use common::tier::{HOUR, TierSetup, now_ms, scene, xadd};

const MIN: i64 = 60_000;

const SCENE_A: [&str; 4] = [
    "surveillance camera view of man in fields",
    "man in fields surveillance view",
    "surveillance view of man in field",
    "a man in the fields",
];
const SCENE_B: [&str; 3] = [
    "red car parked at the gate",
    "a red car parked near the gate",
    "red car parked by the gate",
];

fn xlen(conn: &mut Connection, camera: &str) -> usize {
    redis::cmd("XLEN")
        .arg(format!("captions:{camera}"))
        .query(conn)
        .unwrap()
}

fn frames(events: &[Value]) -> u64 {
    events
        .iter()
        .map(|e| e["frame_count"].as_u64().unwrap())
        .sum()
}

fn strip_run_ids(events: &mut [Value]) {
    for e in events {
        e.as_object_mut().unwrap().remove("run_id");
    }
}

/// Events without their centroids, for readable assertion messages.
fn summary(events: &[Value]) -> String {
    let short: Vec<Value> = events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e.as_object_mut().unwrap().remove("centroid");
            e
        })
        .collect();
    serde_json::to_string_pretty(&short).unwrap()
}

#[test]
fn due_captions_become_events_and_leave_redis_while_recent_ones_stay() {
    let s = TierSetup::new("");
    let mut c = s.conn();
    let t0 = now_ms() - 3 * HOUR;
    let next = scene(&mut c, "cam1", t0, 10, &SCENE_A);
    scene(&mut c, "cam1", next, 10, &SCENE_B);
    scene(&mut c, "cam2", t0, 6, &SCENE_B);
    // Recent captions (not due for almost 2 hours) stay in Redis.
    scene(&mut c, "cam2", now_ms() - 10_000, 1, &SCENE_B);

    let report = s.dir.path().join("report.json");
    s.run_ok(&["tier", "run", "--report", report.to_str().unwrap()]);

    let events = s.events();
    assert_eq!(events.len(), 3, "{}", summary(&events));
    assert_eq!(events[0]["camera_id"], "cam1");
    assert_eq!(events[0]["frame_count"], 10);
    assert_eq!(events[1]["frame_count"], 10);
    assert!(events[1]["caption"].as_str().unwrap().contains("red car"));
    assert_eq!(events[2]["camera_id"], "cam2");
    assert_eq!(events[2]["frame_count"], 6);
    assert_eq!(
        events[0]["end_ms"].as_i64().unwrap() - events[0]["start_ms"].as_i64().unwrap(),
        90_000
    );
    assert!(events.iter().all(|e| e["status"] == "closed"));
    assert_eq!(xlen(&mut c, "cam1"), 0);
    assert_eq!(xlen(&mut c, "cam2"), 1, "the recent caption stays");

    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["job"], "tier");
    assert_eq!(report["stats"]["captions_migrated"], 26);
    assert_eq!(report["stats"]["events_written"], 3);
    assert_eq!(report["stats"]["entries_deleted"], 26);
    let history = s.history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["captions_migrated"], 26);

    // A second pass finds nothing due.
    s.run_ok(&["tier", "run"]);
    assert_eq!(s.events().len(), 3);
    assert_eq!(xlen(&mut c, "cam2"), 1);
}

#[test]
fn the_seed_key_layout_with_ttls_is_drained() {
    let s = TierSetup::new("layout = \"keys\"");
    let mut c = s.conn();
    let t0 = now_ms() - 2 * HOUR + 2 * MIN; // 3 minutes before expiry: due
    for i in 0..8i64 {
        let ts = t0 + i * 5_000;
        let body = serde_json::json!({
            "camera_id": "cam7",
            "caption": SCENE_A[i as usize % 4],
            "timestamp": ts as f64 / 1000.0,
        });
        let _: () = c
            .set_ex(format!("caption:cam7:{ts}"), body.to_string(), 180)
            .unwrap();
    }
    // Not due yet.
    let _: () = c
        .set_ex(
            format!("caption:cam7:{}", now_ms()),
            format!(
                r#"{{"camera_id":"cam7","caption":"x","timestamp":{}}}"#,
                now_ms()
            ),
            7200,
        )
        .unwrap();
    s.run_ok(&["tier", "run"]);
    let events = s.events();
    assert_eq!(events.len(), 1, "{}", summary(&events));
    assert_eq!(events[0]["frame_count"], 8);
    assert_eq!(events[0]["start_ms"], t0);
    let left: Vec<String> = c.keys("caption:cam7:*").unwrap();
    assert_eq!(left.len(), 1);
}

#[test]
fn dry_run_and_preview_write_nothing() {
    let s = TierSetup::new("");
    let mut c = s.conn();
    let t0 = now_ms() - 3 * HOUR;
    let next = scene(&mut c, "cam1", t0, 8, &SCENE_A);
    scene(&mut c, "cam1", next, 8, &SCENE_B);
    let out = s.run_ok(&["tier", "run", "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("16 migrated into 2 events"),
        "{}",
        text(&out)
    );
    let out = s.run_ok(&["tier", "preview", "--camera", "cam1", "--json"]);
    let preview: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(preview.len(), 2);
    assert_eq!(frames(&preview), 16);
    assert_eq!(xlen(&mut c, "cam1"), 16);
    assert!(s.events().is_empty());
    assert!(s.history().is_empty());
}

#[test]
fn an_event_near_expiry_is_written_open_then_extended_in_place_then_closed() {
    // Due after 2 s; an event closes after a 3 s gap.
    let s =
        TierSetup::new("hot_window_s = 4\nmigrate_before_s = 2\nmax_gap_s = 3\nmin_duration_s = 0");
    let mut c = s.conn();
    let now = now_ms();
    for i in 0..5 {
        xadd(
            &mut c,
            "cam1",
            now - 2_500 + i * 500,
            0,
            SCENE_A[i as usize % 4],
        );
    }
    s.run_ok(&["tier", "run"]);
    let first = s.events();
    assert_eq!(first.len(), 1, "{}", summary(&first));
    assert_eq!(first[0]["status"], "open");
    assert_eq!(first[0]["frame_count"], 5);
    assert_eq!(
        xlen(&mut c, "cam1"),
        0,
        "an open event's captions are stored and removed"
    );

    // The scene goes on; once the new captions are due the same event grows.
    let later = now_ms();
    for i in 0..3 {
        xadd(&mut c, "cam1", later + i * 200, 0, SCENE_A[i as usize % 4]);
    }
    std::thread::sleep(Duration::from_millis(2_700));
    s.run_ok(&["tier", "run"]);
    let second = s.events();
    assert_eq!(second.len(), 1, "{}", summary(&second));
    assert_eq!(second[0]["id"], first[0]["id"], "extended in place");
    assert_eq!(second[0]["frame_count"], 8);
    assert_eq!(second[0]["start_ms"], first[0]["start_ms"]);

    // Nothing more arrives: after max_gap the event is closed.
    std::thread::sleep(Duration::from_millis(1_000));
    s.run_ok(&["tier", "run"]);
    let third = s.events();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0]["status"], "closed");
    assert_eq!(third[0]["frame_count"], 8);
}

#[test]
fn long_scenes_continue_in_linked_events_and_gaps_split() {
    let s = TierSetup::new("");
    let mut c = s.conn();
    let t0 = now_ms() - 3 * HOUR;
    // 70 captions 10 s apart: 690 s of one scene → 300 s + 300 s + rest, linked.
    let next = scene(&mut c, "cam1", t0, 70, &SCENE_A);
    // Then a 5 minute gap and the same scene again: a new, unlinked event.
    scene(&mut c, "cam1", next + 5 * MIN, 3, &SCENE_A);
    s.run_ok(&["tier", "run"]);
    let events = s.events();
    assert_eq!(events.len(), 4, "{}", summary(&events));
    assert!(
        events
            .iter()
            .all(|e| e["end_ms"].as_i64().unwrap() - e["start_ms"].as_i64().unwrap() <= 300_000)
    );
    assert_eq!(events[1]["previous_event_id"], events[0]["id"]);
    assert_eq!(events[2]["previous_event_id"], events[1]["id"]);
    assert!(events[3]["previous_event_id"].is_null());
    assert_eq!(frames(&events), 73);
}

/// Runs `ferry tier run` with `FERRY_FAILPOINT=point`, SIGKILLs it there, then runs again.
fn kill_at(s: &TierSetup, point: &str) {
    kill_at_failpoint(s.command(&["tier", "run"]), point);
    // The dead run's camera lease (1 s in tests) must expire before the re-run.
    std::thread::sleep(Duration::from_millis(1_200));
    s.run_ok(&["tier", "run"]);
}

#[test]
fn sigkill_at_each_commit_step_then_rerun_ends_with_the_same_events() {
    let t0 = now_ms() - 3 * HOUR;
    let fill = |c: &mut Connection| {
        let mut next = t0;
        for k in 0..6 {
            let texts: &[&str] = if k % 2 == 0 { &SCENE_A } else { &SCENE_B };
            next = scene(c, "cam1", next, 9, texts);
        }
        scene(c, "cam2", t0, 12, &SCENE_B);
    };
    // Small transactions, so the kill lands mid-pass with work before and after it.
    let extra = "commit_events = 1\nchunk_size = 7";
    let reference = TierSetup::new(extra);
    fill(&mut reference.conn());
    reference.run_ok(&["tier", "run"]);
    let mut expected = reference.events();
    strip_run_ids(&mut expected);
    assert_eq!(frames(&expected), 66);

    for point in [
        "tier-after-commit",
        "tier-after-delete",
        "tier-before-history",
    ] {
        let s = TierSetup::new(extra);
        let mut c = s.conn();
        fill(&mut c);
        kill_at(&s, point);
        let mut events = s.events();
        strip_run_ids(&mut events);
        assert!(
            events == expected,
            "after a kill at {point}:\n{}\nexpected:\n{}",
            summary(&events),
            summary(&expected)
        );
        assert_eq!(xlen(&mut c, "cam1") + xlen(&mut c, "cam2"), 0, "{point}");
        let migrated: u64 = s
            .history()
            .iter()
            .map(|r| r["captions_migrated"].as_u64().unwrap())
            .sum();
        assert!(
            migrated <= 66,
            "{point}: no caption counted twice by the recorded runs"
        );
    }
}

#[test]
fn malformed_entries_are_left_in_redis_and_reported() {
    let s = TierSetup::new("");
    let mut c = s.conn();
    let t0 = now_ms() - 3 * HOUR;
    scene(&mut c, "cam1", t0, 4, &SCENE_A);
    let _: String = redis::cmd("XADD")
        .arg("captions:cam1")
        .arg(format!("{}-0", t0 + 45_000))
        .arg("text")
        .arg("no caption field")
        .query(&mut c)
        .unwrap();
    let out = s.ferry(&["tier", "run"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 malformed"),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no `caption` field"),
        "{}",
        text(&out)
    );
    assert_eq!(frames(&s.events()), 4);
    assert_eq!(xlen(&mut c, "cam1"), 1, "the malformed entry is left alone");
}

#[test]
fn a_camera_leased_by_another_process_is_skipped() {
    let s = TierSetup::new("");
    let mut c = s.conn();
    let t0 = now_ms() - 3 * HOUR;
    scene(&mut c, "cam1", t0, 4, &SCENE_A);
    scene(&mut c, "cam2", t0, 4, &SCENE_A);
    let _: () = redis::cmd("SET")
        .arg("ferry:{tier/cam1}:lease")
        .arg("other-host:1:1")
        .arg("PX")
        .arg(60_000)
        .query(&mut c)
        .unwrap();
    let out = s.run_ok(&["tier", "run"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 busy elsewhere"),
        "{}",
        text(&out)
    );
    assert_eq!(xlen(&mut c, "cam1"), 4);
    assert_eq!(xlen(&mut c, "cam2"), 0);
}

#[test]
fn clear_migrates_first_and_discard_needs_yes() {
    let s = TierSetup::new("");
    let mut c = s.conn();
    // Recent captions: not due, but clear migrates them anyway.
    scene(&mut c, "cam1", now_ms() - 60_000, 5, &SCENE_A);
    s.run_ok(&["tier", "clear", "--camera", "cam1"]);
    assert_eq!(xlen(&mut c, "cam1"), 0);
    assert_eq!(frames(&s.events()), 5);

    scene(&mut c, "cam2", now_ms() - 60_000, 5, &SCENE_A);
    let out = s.ferry(&["tier", "clear", "--camera", "cam2", "--discard"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("-y"),
        "{}",
        text(&out)
    );
    assert_eq!(xlen(&mut c, "cam2"), 5);
    s.run_ok(&["tier", "clear", "--camera", "cam2", "--discard", "-y"]);
    assert_eq!(xlen(&mut c, "cam2"), 0);
    assert_eq!(frames(&s.events()), 5, "discarded captions are not stored");
}

#[test]
fn bad_options_fail_with_a_clear_message() {
    let s = TierSetup::new("migrate_before_s = 9000");
    let out = s.ferry(&["tier", "run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("migrate_before"),
        "{}",
        text(&out)
    );
    let s = TierSetup::new("similarity_threshold = 3");
    let out = s.ferry(&["tier", "run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("similarity_threshold"),
        "{}",
        text(&out)
    );
    let s = TierSetup::new("max_gapp_s = 3");
    let out = s.ferry(&["tier", "run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_gapp_s"),
        "{}",
        text(&out)
    );
    let out = TierSetup::new("").ferry(&["tier", "run", "--store", "mysql://x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sqlite://"),
        "{}",
        text(&out)
    );
}

fn same_pass_on(store_url: &str) {
    let s = TierSetup::with_store(Some(store_url), "");
    let mut c = s.conn();
    let t0 = now_ms() - 3 * HOUR;
    let next = scene(&mut c, "cam1", t0, 40, &SCENE_A); // 390 s: an event and a continuation
    scene(&mut c, "cam1", next, 6, &SCENE_B);
    scene(
        &mut c,
        "cam'2",
        t0,
        3,
        &["caption with \"quotes\", a \\ and ünïcode"],
    );
    s.run_ok(&["tier", "run"]);
    let events = s.events();
    assert_eq!(frames(&events), 49, "{}", summary(&events));
    assert_eq!(events.len(), 4, "{}", summary(&events));
    // Sorted by camera: `cam'2` comes first.
    assert_eq!(
        events[0]["caption"],
        "caption with \"quotes\", a \\ and ünïcode"
    );
    assert_eq!(events[2]["previous_event_id"], events[1]["id"]);
    assert_eq!(xlen(&mut c, "cam1"), 0);
    // Running again changes nothing.
    s.run_ok(&["tier", "run"]);
    assert_eq!(s.events().len(), 4);
}

#[test]
fn the_same_pass_works_on_postgresql() {
    let db = PgDatabase::create();
    same_pass_on(&db.url());
}

#[test]
fn the_same_pass_works_on_falkordb_as_a_graph() {
    let graph = FalkorDbServer::start();
    let url = format!("{}/captions", graph.url());
    same_pass_on(&url);
    // The seed's model: (:Camera)-[:RECORDED]->(:Event), (:Event)-[:CONTINUES]->(:Event).
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{}", graph.port()))
        .unwrap()
        .get_connection()
        .unwrap();
    let count = |conn: &mut Connection, q: &str| -> i64 {
        let v: redis::Value = redis::cmd("GRAPH.QUERY")
            .arg("captions")
            .arg(q)
            .query(conn)
            .unwrap();
        let redis::Value::Array(parts) = v else {
            panic!("{v:?}")
        };
        let redis::Value::Array(rows) = &parts[1] else {
            panic!()
        };
        let redis::Value::Array(row) = &rows[0] else {
            panic!()
        };
        match &row[0] {
            redis::Value::Int(n) => *n,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        count(
            &mut conn,
            "MATCH (:Camera {id: 'cam1'})-[:RECORDED]->(e:Event) RETURN count(e)"
        ),
        3
    );
    assert_eq!(
        count(
            &mut conn,
            "MATCH (:Event)-[r:CONTINUES]->(:Event) RETURN count(r)"
        ),
        1
    );
}

/// Starts `ferry serve` on a free port with the setup's config.
fn spawn_serve(s: &TierSetup, extra: &[&str]) -> (Child, String) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = s
        .command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(a) = line.strip_prefix("listening on http://") {
            break a.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_serve_replicas_never_drain_one_camera_at_once() {
    let s = TierSetup::new("commit_events = 5\nchunk_size = 50");
    let mut c = s.conn();
    let t0 = now_ms() - 3 * HOUR;
    let mut total = 0;
    for cam in 0..12 {
        let mut next = t0;
        for k in 0..5 {
            let texts: &[&str] = if k % 2 == 0 { &SCENE_A } else { &SCENE_B };
            next = scene(&mut c, &format!("cam{cam}"), next, 20, texts);
            total += 20;
        }
    }
    let (mut a, _) = spawn_serve(&s, &["--interval", "0.2"]);
    let (mut b, _) = spawn_serve(&s, &["--interval", "0.2"]);
    wait_for("Redis to be drained", Duration::from_secs(60), || {
        (0..12).all(|cam| xlen(&mut c, &format!("cam{cam}")) == 0)
    });
    std::thread::sleep(Duration::from_millis(500));
    a.kill().unwrap();
    b.kill().unwrap();
    a.wait().unwrap();
    b.wait().unwrap();
    assert_eq!(frames(&s.events()), total);
    let migrated: u64 = s
        .history()
        .iter()
        .map(|r| r["captions_migrated"].as_u64().unwrap())
        .sum();
    assert_eq!(
        migrated, total,
        "each caption was migrated by exactly one replica"
    );
}

#[test]
fn no_caption_expires_unmigrated_with_a_short_hot_window() {
    // Captions live 3 s in Redis; ferry migrates them from 1.5 s of age, every 0.25 s.
    let s = TierSetup::new(
        "layout = \"keys\"\nhot_window_s = 3\nmigrate_before_s = 1.5\nmin_duration_s = 0\nmax_gap_s = 1",
    );
    let (mut serve, _) = spawn_serve(&s, &["--interval", "0.25"]);
    let mut c = s.conn();
    let mut produced = 0u64;
    let start = Instant::now();
    let mut ts = now_ms();
    while start.elapsed() < Duration::from_secs(6) {
        for cam in ["north", "south", "gate"] {
            ts = ts.max(now_ms());
            let body = serde_json::json!({"camera_id": cam, "caption": SCENE_A[(produced % 4) as usize], "timestamp": ts});
            let _: () = c
                .pset_ex(format!("caption:{cam}:{ts}"), body.to_string(), 3_000)
                .unwrap();
            produced += 1;
        }
        ts += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for(
        "every caption to be migrated",
        Duration::from_secs(20),
        || {
            let left: Vec<String> = c.keys("caption:*").unwrap();
            left.is_empty()
        },
    );
    serve.kill().unwrap();
    serve.wait().unwrap();
    assert_eq!(
        frames(&s.events()),
        produced,
        "every caption produced was stored before it expired"
    );
}

#[test]
fn minilm_groups_paraphrases_that_share_few_words() {
    let s = TierSetup::new("");
    std::fs::write(
        &s.config,
        format!(
            "[tier]\nredis = \"{}\"\nstore = \"sqlite://{}\"\nsimilarity = \"minilm\"\n",
            s.redis.url(),
            s.dir.path().join("m.db").display()
        ),
    )
    .unwrap();
    let mut c = s.conn();
    let t0 = now_ms() - 3 * HOUR;
    let a = [
        "a man walking his dog in the park",
        "person strolling with a dog through the park",
        "a guy walks a puppy in a park",
    ];
    let b = [
        "a delivery truck unloading boxes at the loading dock",
        "lorry being unloaded at the warehouse dock",
        "workers unload a truck at the dock",
    ];
    let next = scene(&mut c, "cam1", t0, 9, &a);
    scene(&mut c, "cam1", next, 9, &b);
    s.run_ok(&["tier", "run"]);
    let events = s.events();
    assert_eq!(events.len(), 2, "{}", summary(&events));
    assert_eq!(events[0]["frame_count"], 9);
    assert_eq!(events[0]["centroid"].as_array().unwrap().len(), 384);
}

#[test]
fn provided_embeddings_group_captions_by_their_own_vectors() {
    let s = TierSetup::new("similarity = \"provided\"");
    // `similarity` appears twice otherwise: rewrite the config with only the provided backend.
    let config = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("similarity = \"lexical\"\n", "");
    std::fs::write(&s.config, config).unwrap();
    let mut c = s.conn();
    let t0 = now_ms() - 3 * HOUR;
    // Every caption worded differently; only the vectors say which scene it belongs to.
    for i in 0..16i64 {
        let scene = if i < 8 { 0 } else { 1 };
        let mut v = [0.05f32; 8];
        v[scene] = 1.0;
        v[2 + (i % 3) as usize] += 0.1;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let _: String = redis::cmd("XADD")
            .arg("captions:cam1")
            .arg(format!("{}-0", t0 + i * 10_000))
            .arg("caption")
            .arg(format!("frame number {i}"))
            .arg("embedding")
            .arg(bytes)
            .query(&mut c)
            .unwrap();
    }
    s.run_ok(&["tier", "run"]);
    let events = s.events();
    assert_eq!(events.len(), 2, "{}", summary(&events));
    assert_eq!(events[0]["frame_count"], 8);
    assert_eq!(events[0]["centroid"].as_array().unwrap().len(), 8);
}

/// Paraphrases of one scene that share no words (as two captioners word it): the lexical
/// backend learns from the camera's own events that they describe one scene, so each scene
/// makes an event or two instead of a run of fragments, and no event mixes the two scenes.
#[test]
fn lexical_learns_that_paraphrases_without_common_words_are_one_scene() {
    let s = TierSetup::new("");
    let mut c = s.conn();
    let t0 = now_ms() - 3 * HOUR;
    // The captioner picks a wording at random for each frame (a fixed pseudo-random sequence).
    let next = worded_scene(&mut c, t0, 24, &PAYING, 7);
    worded_scene(&mut c, next, 24, &LIFTING, 11);
    s.run_ok(&["tier", "run"]);
    let events = s.events();
    assert_eq!(frames(&events), 48);
    for e in &events {
        let texts: Vec<&str> = e["captions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["text"].as_str().unwrap())
            .collect();
        let paying = texts.iter().filter(|t| PAYING.contains(t)).count();
        assert!(
            paying == 0 || paying == texts.len(),
            "an event mixes the scenes: {}",
            summary(&events)
        );
    }
    assert!(
        events.len() <= 4,
        "{} events: {}",
        events.len(),
        summary(&events)
    );
}

const PAYING: [&str; 4] = [
    "customer paying at the checkout counter",
    "shopper settles the bill at the till",
    "woman hands banknotes over",
    "purchase completed at register",
];
const LIFTING: [&str; 4] = [
    "forklift lifting a pallet",
    "warehouse truck raising crates",
    "loader stacks boxes high",
    "machine hoists wooden platform",
];

/// `n` captions of `texts` from `start`, one every 10 s, the wording picked pseudo-randomly.
fn worded_scene(c: &mut Connection, start: i64, n: usize, texts: &[&str], seed: u64) -> i64 {
    let mut seed = seed;
    for i in 0..n {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let text = texts[(seed >> 33) as usize % texts.len()];
        xadd(c, "cam1", start + i as i64 * 10_000, 0, text);
    }
    start + n as i64 * 10_000
}

/// A pass killed after a commit leaves the learned wordings unfinished; captions that arrive
/// before it is run again were never learned from. The rerun groups what the killed pass had
/// read with the killed pass's table and learns the new captions on top of it, as the next pass
/// would have: it ends with the events an uninterrupted history makes, and the table with the
/// same counts.
#[test]
fn captions_arriving_after_a_killed_pass_are_learned_from_like_the_next_pass_would() {
    let t0 = now_ms() - 3 * HOUR;
    let first = |c: &mut Connection| worded_scene(c, t0, 24, &PAYING, 3);
    let second = |c: &mut Connection| worded_scene(c, t0 + 600_000, 24, &LIFTING, 5);

    // Small transactions, so the kill lands with part of the first scenes still unwritten.
    let extra = "commit_events = 1\nchunk_size = 7";
    let reference = TierSetup::new(extra);
    let mut c = reference.conn();
    first(&mut c);
    reference.run_ok(&["tier", "run"]);
    second(&mut c);
    reference.run_ok(&["tier", "run"]);
    let mut expected = reference.events();
    strip_run_ids(&mut expected);

    let s = TierSetup::new(extra);
    let mut c = s.conn();
    first(&mut c);
    kill_at_failpoint(s.command(&["tier", "run"]), "tier-after-commit");
    std::thread::sleep(Duration::from_millis(1_200));
    second(&mut c);
    s.run_ok(&["tier", "run"]);
    let mut events = s.events();
    strip_run_ids(&mut events);
    assert!(
        events == expected,
        "{}\nexpected:\n{}",
        summary(&events),
        summary(&expected)
    );
    let table = |c: &mut Connection| -> String { c.get("ferry:{tier/cam1}:wordings").unwrap() };
    assert_eq!(
        table(&mut s.conn()),
        table(&mut reference.conn()),
        "nothing learned twice"
    );
}

/// Another program's key where the learned wordings live (of another type, or not JSON of
/// Ferry's): the camera is still drained, and the key overwritten.
#[test]
fn a_foreign_wordings_key_does_not_block_the_camera() {
    for foreign in ["hash", "garbage", "inconsistent"] {
        let s = TierSetup::new("");
        let mut c = s.conn();
        let key = "ferry:{tier/cam1}:wordings";
        match foreign {
            "hash" => {
                let _: () = c.hset(key, "a", "b").unwrap();
            }
            "garbage" => {
                let _: () = c.set(key, "\u{0}not json").unwrap();
            }
            _ => {
                let _: () = c
                    .set(
                        key,
                        r#"{"pass_finished":false,"learned_until":"99999999999999-0","wordings":{"texts":["a"],"events":[1,2],"together":{"7":{"9":1}}}}"#,
                    )
                    .unwrap();
            }
        }
        worded_scene(&mut c, now_ms() - 3 * HOUR, 24, &PAYING, 3);
        s.run_ok(&["tier", "run"]);
        assert_eq!(frames(&s.events()), 24, "{foreign}");
        assert_eq!(xlen(&mut c, "cam1"), 0, "{foreign}");
        let kept: String = c.get(key).unwrap();
        assert!(kept.contains("\"pass_finished\":true"), "{foreign}: {kept}");
    }
}
