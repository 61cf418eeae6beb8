//! Measuring one grouping run against the truth: reduction, purity and fragmentation over all
//! cameras, and the impure events spelled out as runs of true scenes.

use std::collections::{HashMap, HashSet};

use ferry_core::jobs::tier::wordings::Wordings;
use ferry_core::jobs::tier::{EntryId, Grouper, GroupingConfig};

use crate::generate::Labelled;

/// The scores of one backend and threshold on one corpus.
pub struct Scores {
    /// Captions grouped.
    pub captions: usize,
    /// Events made.
    pub events: usize,
    /// 1 − events ÷ captions.
    pub reduction: f64,
    /// Share of events whose captions all come from one true scene.
    pub purity: f64,
    /// Events per true scene.
    pub fragmentation: f64,
}

/// Groups every camera's stream with `config` and the captions' `vectors` (mixed with the
/// camera's learned wordings when `learn`), and scores the events; `show_impure` prints each
/// impure event.
pub fn evaluate(
    streams: &[Vec<Labelled>],
    config: &GroupingConfig,
    vectors: &HashMap<String, Vec<f32>>,
    learn: bool,
    show_impure: bool,
) -> Scores {
    let mut events = 0;
    let mut pure = 0;
    let mut captions = 0;
    let mut scenes = HashSet::new();
    for stream in streams {
        // The lexical backend learns each camera's wordings before its pass, as the job does
        // (`Wordings::learn_from` on the captions with their plain vectors, then `mix`).
        let mixed: Option<HashMap<String, Vec<f32>>> = learn.then(|| {
            let captions: Vec<(EntryId, i64, &str)> = stream
                .iter()
                .map(|c| (c.input.entry, c.input.ts_ms, c.input.norm.as_str()))
                .collect();
            let plain = |t: &str| vectors.get(t).cloned().unwrap_or_default();
            let mut wordings = Wordings::default();
            wordings.learn_from(config, &captions, plain);
            stream
                .iter()
                .map(|c| c.input.norm.as_str())
                .collect::<HashSet<_>>()
                .into_iter()
                .map(|t| (t.to_string(), wordings.mix(t, &plain(t), plain)))
                .collect()
        });
        let vectors = mixed.as_ref().unwrap_or(vectors);
        let mut grouper = Grouper::new(&format!("cam{}", stream[0].camera), config.clone(), "eval");
        let by_entry: HashMap<EntryId, usize> = stream
            .iter()
            .map(|c| (c.input.entry, c.scene_instance))
            .collect();
        let mut made = Vec::new();
        for c in stream {
            captions += 1;
            scenes.insert(c.scene_instance);
            let mut input = c.input.clone();
            input.embedding = vectors.get(&input.norm).cloned();
            made.extend(grouper.push(input));
        }
        made.extend(grouper.close_all());
        let frames: u64 = made.iter().map(|e| e.frame_count).sum();
        assert_eq!(
            frames,
            stream.len() as u64,
            "every caption in exactly one event"
        );
        // Events partition the stream into contiguous runs of entries.
        let mut entries: Vec<EntryId> = by_entry.keys().copied().collect();
        entries.sort();
        for e in &made {
            let from = entries.partition_point(|x| *x < e.first_entry);
            let to = entries.partition_point(|x| *x <= e.last_entry);
            let truth: HashSet<usize> = entries[from..to].iter().map(|x| by_entry[x]).collect();
            if truth.len() == 1 {
                pure += 1;
            } else if show_impure {
                println!("  impure: {}", describe(&stream[..], e, &by_entry));
            }
            events += 1;
        }
    }
    Scores {
        captions,
        events,
        reduction: 1.0 - events as f64 / captions as f64,
        purity: pure as f64 / events as f64,
        fragmentation: events as f64 / scenes.len() as f64,
    }
}

/// One impure event as runs of true scenes (`scene×captions`, `*` marks outlier captions), its
/// duration and whether it continues an earlier event.
fn describe(
    stream: &[Labelled],
    event: &ferry_core::jobs::tier::TierEvent,
    by_entry: &HashMap<EntryId, usize>,
) -> String {
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for c in stream
        .iter()
        .filter(|c| c.input.entry >= event.first_entry && c.input.entry <= event.last_entry)
    {
        let scene = by_entry[&c.input.entry];
        let outlier = usize::from(c.outlier);
        match runs.last_mut() {
            Some((s, n, o)) if *s == scene => {
                *n += 1;
                *o += outlier;
            }
            _ => runs.push((scene, 1, outlier)),
        }
    }
    let runs: Vec<String> = runs
        .iter()
        .map(|(s, n, o)| format!("s{s}×{n}{}", "*".repeat(*o)))
        .collect();
    format!(
        "{} ({} s{})",
        runs.join(" "),
        (event.end_ms - event.start_ms) / 1000,
        if event.previous_event_id.is_some() {
            ", continuation"
        } else {
            ""
        }
    )
}
