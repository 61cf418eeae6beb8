use super::*;
use serde_json::json;

fn exp(json: &str) -> Result<ExperienceRow, String> {
    experience_from_json("a1", 7, None, json.as_bytes())
}

#[test]
fn a_full_experience_fills_every_column_and_keeps_other_fields() {
    let e = exp(
        r#"{"state": {"x": 1}, "action": "left", "reward": -0.5, "next_state": [1, 2],
        "done": false, "timestamp": "2026-01-31T10:00:00Z", "episode": 3}"#,
    )
    .unwrap();
    assert_eq!(e.agent_id, "a1");
    assert_eq!(e.seq, 7);
    assert_eq!(e.state, Some(json!({"x": 1})));
    assert_eq!(e.action.as_deref(), Some("left"));
    assert_eq!(e.reward, Some(-0.5));
    assert_eq!(e.next_state, Some(json!([1, 2])));
    assert_eq!(e.done, Some(false));
    assert_eq!(e.ts.unwrap().to_rfc3339(), "2026-01-31T10:00:00+00:00");
    assert_eq!(e.metadata, Some(json!({"episode": 3})));
}

#[test]
fn missing_fields_are_null_and_discrete_actions_are_text() {
    let e = exp(r#"{"action": 3, "done": 1, "state": null}"#).unwrap();
    assert_eq!(e.action.as_deref(), Some("3"));
    assert_eq!(e.done, Some(true));
    assert_eq!(
        (e.state, e.reward, e.ts, e.metadata),
        (None, None, None, None)
    );
}

#[test]
fn timestamps_in_seconds_and_milliseconds_agree() {
    let want = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    for t in [
        json!(1_700_000_000),
        json!(1_700_000_000_000_i64),
        json!("1700000000"),
        json!("2023-11-14T22:13:20Z"),
    ] {
        assert_eq!(timestamp(t.clone()).unwrap(), want, "{t}");
    }
    assert!(
        timestamp(json!("yesterday"))
            .unwrap_err()
            .contains("RFC 3339")
    );
    assert!(timestamp(json!(1e300)).is_err());
    assert!(timestamp(json!(true)).is_err());
}

#[test]
fn bad_experiences_say_what_is_wrong() {
    for (json, says) in [
        ("{not json", "invalid JSON"),
        (
            r#"{"reward": NaN}"#,
            "NaN and Infinity are not JSON numbers",
        ),
        (r#"{"reward": "NaN"}"#, "reward is NaN"),
        (r#"{"reward": "inf"}"#, "reward is infinite"),
        (r#"{"reward": [1]}"#, "not a number"),
        (r#"{"done": "maybe"}"#, "not a boolean"),
        (r#"[1, 2]"#, "must be a JSON object, not an array"),
        (r#"{"state": "a\u0000b"}"#, "NUL"),
        (r#"{"extra": {"k\u0000": 1}}"#, "NUL"),
        (r#"{"action": "a\u0000"}"#, "NUL"),
    ] {
        let e = exp(json).unwrap_err();
        assert!(e.contains(says), "{json}: {e}");
    }
    let e = experience_from_json("a", 0, None, b"\xff\xfe").unwrap_err();
    assert!(e.contains("invalid JSON"), "{e}");
}

#[test]
fn stream_entries_are_one_json_field_or_one_field_per_column() {
    let one = vec![(
        b"data".to_vec(),
        br#"{"action": "up", "reward": 1}"#.to_vec(),
    )];
    let e = experience_from_entry("a", 0, "5-0", &one).unwrap();
    assert_eq!((e.action.as_deref(), e.reward), (Some("up"), Some(1.0)));
    assert_eq!(e.source_id.as_deref(), Some("5-0"));
    let fields: Vec<(Vec<u8>, Vec<u8>)> = [
        ("state", r#"{"pos": [0, 1]}"#),
        ("action", "left"),
        ("reward", "0.25"),
        ("done", "true"),
        ("timestamp", "1700000000000"),
        ("note", "hello world"),
    ]
    .iter()
    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect();
    let e = experience_from_entry("a", 1, "6-0", &fields).unwrap();
    assert_eq!(e.state, Some(json!({"pos": [0, 1]})));
    assert_eq!(e.action.as_deref(), Some("left"));
    assert_eq!(e.reward, Some(0.25));
    assert_eq!(e.done, Some(true));
    assert_eq!(e.ts.unwrap().timestamp(), 1_700_000_000);
    assert_eq!(e.metadata, Some(json!({"note": "hello world"})));
    let broken = vec![
        (b"state".to_vec(), b"{\"x\": ".to_vec()),
        (b"action".to_vec(), b"a".to_vec()),
    ];
    let err = experience_from_entry("a", 2, "7-0", &broken).unwrap_err();
    assert!(
        err.contains("field `state`") && err.contains("invalid JSON"),
        "{err}"
    );
    let only_state = vec![(b"state".to_vec(), br#"{"action": "x"}"#.to_vec())];
    let e = experience_from_entry("a", 4, "9-0", &only_state).unwrap();
    assert_eq!((e.state, e.action), (Some(json!({"action": "x"})), None));
    let binary = vec![
        (b"\xff".to_vec(), b"1".to_vec()),
        (b"b".to_vec(), b"2".to_vec()),
    ];
    assert!(
        experience_from_entry("a", 3, "8-0", &binary)
            .unwrap_err()
            .contains("UTF-8")
    );
}

#[test]
fn q_value_fields_split_at_the_last_bar() {
    let q = q_value("a", b"s|1|up", b" 0.75 ").unwrap();
    assert_eq!(
        (q.state.as_str(), q.action.as_str(), q.value),
        ("s|1", "up", 0.75)
    );
    for (field, value, says) in [
        (&b"nobar"[..], &b"1"[..], "has no `|`"),
        (b"s|", b"1", "empty action"),
        (b"|a", b"1", "empty state"),
        (b"s|a", b"nan", "is NaN"),
        (b"s|a", b"-inf", "is infinite"),
        (b"s|a", b"high", "not a number"),
        (b"s\xff|a", b"1", "not UTF-8"),
        (b"s\0|a", b"1", "NUL"),
        (&[b'x'; 2600][..], b"1", "has no `|`"),
    ] {
        let e = q_value("a", field, value).unwrap_err();
        assert!(e.contains(says), "{field:?}={value:?}: {e}");
    }
}

#[test]
fn policies_are_any_json() {
    assert_eq!(
        policy("a", b"[0.1, 0.9]").unwrap().policy,
        json!([0.1, 0.9])
    );
    assert_eq!(policy("a", br#""greedy""#).unwrap().policy, json!("greedy"));
    assert!(policy("a", b"greedy").unwrap_err().contains("invalid JSON"));
    assert!(
        policy("a", br#"{"k": "\u0000"}"#)
            .unwrap_err()
            .contains("NUL")
    );
}

#[test]
fn keys_too_long_for_an_index_are_refused() {
    let long_state = format!("{}|up", "s".repeat(2598));
    let e = q_value("a", long_state.as_bytes(), b"1").unwrap_err();
    assert!(e.contains("2600"), "{e}");
    assert!(q_value("a", format!("{}|up", "s".repeat(2590)).as_bytes(), b"1").is_ok());
    assert!(agent_id(&[b'a'; 2601]).unwrap_err().contains("2601 bytes"));
    assert!(agent_id(b"").unwrap_err().contains("empty"));
    assert!(agent_id(b"\xff").unwrap_err().contains("not UTF-8"));
    assert_eq!(agent_id(b"a1").unwrap(), "a1");
}
