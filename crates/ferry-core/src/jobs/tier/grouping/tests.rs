//! The grouping rules' tests.

use super::*;
use crate::jobs::tier::event_id;

/// Captions every 10 s; `scene` picks a unit vector so similarity is 1 within a scene and 0
/// across scenes.
fn input(i: u64, ts_s: i64, scene: usize, text: &str) -> GroupInput {
    let mut e = vec![0.0; 4];
    e[scene] = 1.0;
    GroupInput {
        entry: EntryId::new(i, 0),
        ts_ms: ts_s * 1000,
        text: text.to_owned(),
        norm: text.to_owned(),
        embedding: Some(e),
    }
}

fn config() -> GroupingConfig {
    GroupingConfig {
        min_duration_ms: 0,
        ..GroupingConfig::default()
    }
}

fn run(g: &mut Grouper, items: Vec<GroupInput>) -> Vec<TierEvent> {
    let mut out = Vec::new();
    for i in items {
        out.extend(g.push(i));
    }
    out.extend(g.close_all());
    out
}

#[test]
fn one_outlier_does_not_split_but_two_do() {
    let mut g = Grouper::new("c", config(), "r");
    let items = vec![
        input(1, 0, 0, "a"),
        input(2, 10, 0, "a"),
        input(3, 20, 1, "b"),
        input(4, 30, 0, "a"),
        input(5, 40, 1, "b"),
        input(6, 50, 1, "b2"),
        input(7, 60, 1, "b"),
    ];
    let events = run(&mut g, items);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].frame_count, 4);
    assert_eq!(events[0].last_entry, EntryId::new(4, 0));
    assert_eq!(events[1].frame_count, 3);
    assert_eq!(events[1].first_entry, EntryId::new(5, 0));
    assert_eq!(events[0].caption, "a");
}

#[test]
fn a_long_gap_closes_and_max_duration_continues_with_a_link() {
    let mut g = Grouper::new("c", config(), "r");
    let mut items = vec![input(1, 0, 0, "a"), input(2, 100, 0, "a")];
    for (n, t) in (110..=500).step_by(10).enumerate() {
        items.push(input(3 + n as u64, t, 0, "a"));
    }
    let events = run(&mut g, items);
    assert_eq!(
        events[0].frame_count, 1,
        "the 100 s gap closes the first event"
    );
    assert_eq!(events[1].previous_event_id, None);
    assert_eq!(
        events[2].previous_event_id.as_deref(),
        Some(events[1].id.as_str())
    );
    assert!(events.iter().all(|e| e.duration_ms() <= 300_000));
    let frames: u64 = events.iter().map(|e| e.frame_count).sum();
    assert_eq!(frames, 2 + (110..=500).step_by(10).count() as u64);
}

/// `n` captions of one scene every 10 s, entries from `first` on, starting at `from_s`.
fn scene_run(first: u64, from_s: i64, n: u64, scene: usize, text: &str) -> Vec<GroupInput> {
    (0..n)
        .map(|i| input(first + i, from_s + i as i64 * 10, scene, text))
        .collect()
}

/// The seed's 60 s minimum duration.
fn seed_config() -> GroupingConfig {
    GroupingConfig {
        min_duration_ms: 60_000,
        ..GroupingConfig::default()
    }
}

#[test]
fn an_outlier_ending_a_scene_stays_with_it_instead_of_opening_the_next_event() {
    let mut g = Grouper::new("c", seed_config(), "r");
    let mut items = scene_run(1, 0, 8, 0, "a");
    items.push(input(9, 80, 2, "outlier"));
    items.extend(scene_run(10, 90, 8, 1, "b"));
    let events = run(&mut g, items);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].last_entry, EntryId::new(9, 0));
    assert_eq!(events[0].frame_count, 9);
    assert_eq!(events[1].first_entry, EntryId::new(10, 0));
    assert_eq!(events[1].id, event_id("c", EntryId::new(10, 0)));
    assert_eq!(events[1].frame_count, 8);
}

#[test]
fn the_next_scenes_first_caption_starts_the_next_event_whatever_its_wording() {
    let mut g = Grouper::new("c", seed_config(), "r");
    let mut items = scene_run(1, 0, 8, 0, "a");
    items.push(input(9, 80, 1, "b worded once"));
    items.extend(scene_run(10, 90, 8, 1, "b"));
    let events = run(&mut g, items);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].last_entry, EntryId::new(8, 0));
    assert_eq!(events[1].first_entry, EntryId::new(9, 0));
    assert_eq!(events[1].id, event_id("c", EntryId::new(9, 0)));
    assert_eq!(events[1].frame_count, 9);
}

#[test]
fn the_event_after_a_settled_split_is_the_one_a_pass_starting_there_makes() {
    // Held captions with their own wording: the next event is grouped again from them.
    let mut items = scene_run(1, 0, 8, 0, "a");
    items.push(input(9, 80, 1, "b once"));
    items.push(input(10, 90, 1, "b twice"));
    items.extend(scene_run(11, 100, 8, 1, "b"));
    let whole = run(&mut Grouper::new("c", seed_config(), "r"), items.clone());
    let from_there = run(
        &mut Grouper::new("c", seed_config(), "r"),
        items[8..].to_vec(),
    );
    assert_eq!(whole.len(), 2);
    assert_eq!(whole[1], from_there[0]);
    assert_eq!(whole[1].frame_count, 10);
}

/// A split whose regrouping confirms a second split before a gap, a close or the end of
/// an event: every caption must end in exactly one event, in order.
fn split_within_a_split() -> Vec<GroupInput> {
    let with = |i, ts_s, e: [f32; 4], text| GroupInput {
        embedding: Some(e.to_vec()),
        ..input(i, ts_s, 0, text)
    };
    let mut items = scene_run(1, 0, 8, 0, "a");
    items.push(input(9, 80, 1, "b"));
    items.push(with(10, 90, [0.0, 0.0, 1.0, 0.0], "c"));
    items.push(with(11, 100, [0.0, 0.0, 0.0, 1.0], "c"));
    items.push(with(12, 150, [0.0, 0.0, -0.8, 0.6], "v"));
    items.push(with(13, 160, [0.0, 0.0, -0.8, 0.6], "v"));
    items.push(with(14, 170, [0.0, 0.0, 0.0, 1.0], "d"));
    items
}

fn assert_partition(events: &[TierEvent], captions: u64) {
    let frames: u64 = events.iter().map(|e| e.frame_count).sum();
    assert_eq!(frames, captions, "{events:?}");
    for pair in events.windows(2) {
        assert!(pair[0].last_entry < pair[1].first_entry, "{events:?}");
    }
}

#[test]
fn every_caption_lands_in_one_event_when_a_regrouping_splits_again() {
    let items = split_within_a_split();
    let n = items.len() as u64;
    assert_partition(
        &run(&mut Grouper::new("c", seed_config(), "r"), items.clone()),
        n,
    );

    let mut gap = items.clone();
    gap.push(input(15, 300, 0, "a"));
    assert_partition(&run(&mut Grouper::new("c", seed_config(), "r"), gap), n + 1);

    let mut long = items.clone();
    long.push(input(15, 230, 3, "v"));
    let short_events = GroupingConfig {
        max_duration_ms: 120_000,
        ..seed_config()
    };
    assert_partition(&run(&mut Grouper::new("c", short_events, "r"), long), n + 1);

    let mut g = Grouper::new("c", seed_config(), "r");
    let mut events = Vec::new();
    for i in items {
        events.extend(g.push(i));
    }
    events.extend(g.settle_split());
    events.extend(g.close_all());
    assert_partition(&events, n);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A caption: seconds since the previous one, a direction (one of six, some alike, one
    /// opposite) and one of three wordings.
    fn caption() -> impl Strategy<Value = (i64, usize, usize)> {
        (1i64..120, 0usize..6, 0usize..3)
    }

    const DIRECTIONS: [[f32; 4]; 6] = [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
        [0.7, 0.7, 0.0, 0.0],
        [0.0, 0.0, -0.8, 0.6],
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the captions and settings, and wherever a pass settles its split, every
        /// caption ends in exactly one event and events follow each other in time.
        #[test]
        fn every_caption_lands_in_exactly_one_event(
            captions in prop::collection::vec(caption(), 1..80),
            split_confirm in 1usize..4,
            min_duration_s in prop::sample::select(vec![0i64, 30, 60]),
            max_duration_s in prop::sample::select(vec![90i64, 300]),
            settle_at in 0usize..80,
        ) {
            let config = GroupingConfig {
                split_confirm,
                min_duration_ms: min_duration_s * 1000,
                max_duration_ms: max_duration_s * 1000,
                ..GroupingConfig::default()
            };
            let mut g = Grouper::new("c", config, "r");
            let mut events = Vec::new();
            let mut t = 0;
            for (i, (dt, direction, wording)) in captions.iter().enumerate() {
                t += dt;
                events.extend(g.push(GroupInput {
                    embedding: Some(DIRECTIONS[*direction].to_vec()),
                    ..input(i as u64 + 1, t, 0, &format!("{direction}/{wording}"))
                }));
                if i == settle_at {
                    events.extend(g.settle_split());
                }
            }
            events.extend(g.close_all());
            let frames: u64 = events.iter().map(|e| e.frame_count).sum();
            prop_assert_eq!(frames, captions.len() as u64);
            for pair in events.windows(2) {
                prop_assert!(pair[0].last_entry < pair[1].first_entry);
            }
            for e in &events {
                prop_assert!(e.end_ms - e.start_ms <= max_duration_s * 1000);
            }
        }
    }
}

#[test]
fn a_split_awaiting_the_next_events_captions_is_settled_before_a_snapshot() {
    let mut g = Grouper::new("c", seed_config(), "r");
    let mut items = scene_run(1, 0, 8, 0, "a");
    items.extend(scene_run(9, 80, 3, 1, "b"));
    let mut closed = Vec::new();
    for i in items {
        closed.extend(g.push(i));
    }
    assert!(
        closed.is_empty(),
        "the split waits for the next event's captions"
    );
    assert!(
        g.snapshot_open().is_none(),
        "no snapshot while a split is unsettled"
    );
    let settled = g.settle_split();
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].last_entry, EntryId::new(8, 0));
    let (open, _) = g.snapshot_open().expect("the next event is open");
    assert_eq!(open.first_entry, EntryId::new(9, 0));
    assert_eq!(open.frame_count, 3);
}

/// Regression (issue 12): with the seed's 60 s `min_duration`, a scene shorter than that
/// used to be glued to the next one. A 20 s scene between two long ones stays its own event
/// — whether it has three captions or only two — with the default settings.
#[test]
fn a_short_distinct_scene_between_long_ones_stays_its_own_event() {
    for short in [3, 2] {
        let mut items = scene_run(1, 0, 12, 0, "empty lot");
        items.extend(scene_run(13, 120, short, 1, "person climbing the gate"));
        let next = 13 + short;
        items.extend(scene_run(
            next,
            120 + short as i64 * 10,
            12,
            2,
            "van at the gate",
        ));
        let events = run(
            &mut Grouper::new("c", GroupingConfig::default(), "r"),
            items,
        );
        let texts: Vec<(&str, u64)> = events
            .iter()
            .map(|e| (e.caption.as_str(), e.frame_count))
            .collect();
        assert_eq!(
            texts,
            vec![
                ("empty lot", 12),
                ("person climbing the gate", short),
                ("van at the gate", 12)
            ],
            "{short} captions"
        );
    }
}

/// Wherever the short scene falls — also where the long scene reaches `max_duration` and a
/// continuation starts — it stays its own event, and no event mixes the scenes.
#[test]
fn a_short_scene_stays_its_own_event_wherever_it_falls() {
    for short in [2, 3] {
        for at in (100..=420).step_by(10) {
            let n_before = at / 10;
            let mut items = scene_run(1, 0, n_before, 0, "empty lot");
            let first_short = 1 + n_before;
            items.extend(scene_run(
                first_short,
                at as i64,
                short,
                1,
                "person climbing the gate",
            ));
            items.extend(scene_run(
                first_short + short,
                at as i64 + short as i64 * 10,
                30,
                0,
                "empty lot",
            ));
            let events = run(
                &mut Grouper::new("c", GroupingConfig::default(), "r"),
                items,
            );
            let gate: Vec<&TierEvent> = events
                .iter()
                .filter(|e| e.captions.iter().any(|c| c.text.contains("gate")))
                .collect();
            assert_eq!(gate.len(), 1, "{short} captions at {at} s: {events:?}");
            assert_eq!(
                gate[0].captions.len(),
                1,
                "{short} captions at {at} s: the gate is glued: {events:?}"
            );
            assert_eq!(gate[0].frame_count, short);
        }
    }
}

/// A scene that starts with a short one of its own is not glued to it either.
#[test]
fn a_short_first_scene_is_not_merged_into_the_next() {
    let mut items = scene_run(1, 0, 2, 1, "person climbing the gate");
    items.extend(scene_run(3, 20, 12, 0, "empty lot"));
    let events = run(
        &mut Grouper::new("c", GroupingConfig::default(), "r"),
        items,
    );
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].frame_count, 2);
    assert_eq!(events[1].caption, "empty lot");
}

/// Repeated captions still make one event; and a young event split by two differently
/// worded captions of the same scene (a false alarm: the event after the split is alike)
/// is made whole again.
#[test]
fn repeated_captions_merge_and_a_young_false_split_is_undone() {
    let events = run(
        &mut Grouper::new("c", GroupingConfig::default(), "r"),
        scene_run(1, 0, 20, 0, "empty lot"),
    );
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].frame_count, 20);

    let with = |i, ts_s, e: [f32; 4], text| GroupInput {
        embedding: Some(e.to_vec()),
        ..input(i, ts_s, 0, text)
    };
    // Two wordings whose vectors are below the threshold of each other, both near the
    // scene's mean.
    let mut items = vec![
        with(1, 0, [1.0, 0.0, 0.0, 0.0], "lot"),
        with(2, 10, [1.0, 0.0, 0.0, 0.0], "lot"),
        with(3, 20, [0.45, 0.9, 0.0, 0.0], "car park"),
        with(4, 30, [0.45, 0.9, 0.0, 0.0], "car park"),
    ];
    for i in 0..7 {
        let e = if i % 2 == 0 {
            [1.0, 0.0, 0.0, 0.0]
        } else {
            [0.45, 0.9, 0.0, 0.0]
        };
        items.push(with(5 + i, 40 + i as i64 * 10, e, "lot or car park"));
    }
    let events = run(
        &mut Grouper::new("c", GroupingConfig::default(), "r"),
        items.clone(),
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].frame_count, 11);
    // Past `min_duration` the same split stands.
    let late: Vec<GroupInput> = scene_run(100, -200, 20, 0, "lot")
        .into_iter()
        .chain(items.into_iter().skip(2))
        .collect();
    let events = run(&mut Grouper::new("c", GroupingConfig::default(), "r"), late);
    assert_eq!(events.len(), 2, "{events:?}");
}

/// A continuation after `max_duration` is the same scene: it goes on comparing captions with
/// the scene's centroid, not with its own first caption alone, so a wording the scene used
/// all along does not split it.
#[test]
fn a_continuation_keeps_the_wordings_its_scene_had() {
    let with = |i, ts_s, e: [f32; 4], text| GroupInput {
        embedding: Some(e.to_vec()),
        ..input(i, ts_s, 0, text)
    };
    let lot = [1.0, 0.0, 0.0, 0.0];
    // Between the two wordings: similar to both (0.85), while they are 0.45 apart.
    let mixed = [0.85, 0.53, 0.0, 0.0];
    let car_park = [0.45, 0.9, 0.0, 0.0];
    let mut items: Vec<GroupInput> = (0..=30)
        .map(|i| {
            let e = if i % 2 == 0 { lot } else { mixed };
            with(
                i + 1,
                i as i64 * 10,
                e,
                if i % 2 == 0 { "lot" } else { "mixed" },
            )
        })
        .collect();
    items.push(with(32, 310, lot, "lot"));
    items.push(with(33, 320, car_park, "car park"));
    items.push(with(34, 330, car_park, "car park"));
    for i in 0..6 {
        items.push(with(35 + i, 340 + i as i64 * 10, lot, "lot"));
    }
    let events = run(
        &mut Grouper::new("c", GroupingConfig::default(), "r"),
        items,
    );
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[1].previous_event_id.as_deref(),
        Some(events[0].id.as_str())
    );
    assert_eq!(events[1].frame_count, 9);
}

/// The next scene's first caption, worded unlike the rest of it but closer to it than to the
/// scene before, does not end the event before (it stays on the next scene's side).
#[test]
fn the_next_scenes_oddly_worded_first_caption_is_not_given_to_the_scene_before() {
    let mut items = scene_run(1, 0, 12, 0, "empty lot");
    items.push(GroupInput {
        embedding: Some(vec![0.0, 0.2, 0.0, 0.98]),
        ..input(13, 120, 1, "someone by a van")
    });
    items.extend(scene_run(14, 130, 10, 1, "van at the gate"));
    let events = run(
        &mut Grouper::new("c", GroupingConfig::default(), "r"),
        items,
    );
    assert_eq!(events[0].frame_count, 12, "{events:?}");
    assert_eq!(events[0].last_entry, EntryId::new(12, 0));
    assert_eq!(events[1].first_entry, EntryId::new(13, 0));
    let frames: u64 = events[1..].iter().map(|e| e.frame_count).sum();
    assert_eq!(frames, 11);
}

#[test]
fn continuations_split_on_similarity_at_once() {
    let cfg = GroupingConfig {
        min_duration_ms: 60_000,
        ..GroupingConfig::default()
    };
    let mut g = Grouper::new("c", cfg, "r");
    // 310 s of scene 0 → a continuation starts at 310 s; scene 1 arrives 20 s later.
    let mut items: Vec<GroupInput> = (0..32).map(|i| input(i, i as i64 * 10, 0, "a")).collect();
    items.push(input(32, 320, 1, "b"));
    items.push(input(33, 330, 1, "b"));
    let events = run(&mut g, items);
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[1].previous_event_id.as_deref(),
        Some(events[0].id.as_str())
    );
    assert_eq!(events[0].frame_count, 31);
    assert_eq!(
        events[1].frame_count, 1,
        "the continuation did not swallow scene 1"
    );
    assert_eq!(events[2].frame_count, 2);
}

#[test]
fn identical_text_joins_without_an_embedding() {
    let mut g = Grouper::new("c", config(), "r");
    let mut a = input(1, 0, 0, "same");
    a.embedding = None;
    let mut b = input(2, 10, 0, "same");
    b.embedding = None;
    let events = run(&mut g, vec![a, b]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].frame_count, 2);
    assert!(events[0].centroid.is_empty());
}

#[test]
fn resumed_state_yields_the_same_event_as_one_pass() {
    let items: Vec<_> = (0..10).map(|i| input(i, i as i64 * 5, 0, "a")).collect();
    let mut whole = Grouper::new("c", config(), "r");
    let expected = run(&mut whole, items.clone());

    let mut first = Grouper::new("c", config(), "r");
    for i in items[..4].iter().cloned() {
        assert!(first.push(i).is_empty());
    }
    let (open_event, state) = first.snapshot_open().unwrap();
    assert_eq!(open_event.status, EventStatus::Open);
    let json = serde_json::to_string(&state).unwrap();
    let mut second = Grouper::resume(config(), "r", serde_json::from_str(&json).unwrap());
    let resumed = run(&mut second, items[4..].to_vec());
    assert_eq!(resumed, expected);
}

#[test]
fn idle_events_close_only_after_max_gap() {
    let mut g = Grouper::new("c", config(), "r");
    assert!(g.push(input(1, 0, 0, "a")).is_empty());
    assert!(g.close_if_idle(30_000).is_empty());
    assert_eq!(g.close_if_idle(61_000).len(), 1);
    assert!(g.open().is_none());
}

#[test]
fn config_validation_names_the_field() {
    let bad = GroupingConfig {
        similarity_threshold: 1.5,
        ..GroupingConfig::default()
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("similarity_threshold")
    );
    let bad = GroupingConfig {
        min_duration_ms: 400_000,
        ..GroupingConfig::default()
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("min_duration")
    );
    GroupingConfig::default().validate().unwrap();
}
