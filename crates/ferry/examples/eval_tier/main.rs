//! Evaluates the tier job's grouping on generated, labelled caption streams.
//!
//! Each camera films a sequence of true scenes; the captioner describes every frame with one of
//! the scene's paraphrases, with noise (dropped words, boilerplate prefixes, case), the odd
//! outlier caption from another scene, and gaps. The grouping then runs per backend and this
//! prints, per backend and threshold:
//! - reduction: 1 − events ÷ captions;
//! - purity: share of events whose captions all come from one true scene;
//! - fragmentation: events per true scene (continuations after `max_duration` count, so a
//!   scene longer than 300 s cannot score 1).
//!
//! Three corpora (`--corpus seed,other,third`): the seed-style one the defaults were first
//! calibrated on; a held-out one with other domains, wording, framing phrases and scenes from
//! 10 s to 15 min; and a third with yet other domains, short and long captioner-style
//! paraphrases, look-alike scene pairs and scenes from 10 s to 10 min.
//!
//! `scripts/eval-tier` runs it in release mode: `cargo run --release --example eval_tier --
//! [--corpus seed,other,third] [--sweep | --threshold X] [--backends lexical,minilm] [--cameras N]
//! [--outliers 0.04] [--min-scene S] [--background] [--no-learning] [--min-duration 60] [--split-confirm 2] [--show-impure]`; `--show-impure` lists each impure
//! event as runs of true scenes (`s12×30*`: 30 captions of scene instance 12, one of them an
//! outlier).

//!
//! Generating the corpora is in [`corpora`] (their shapes and scenes) and [`generate`] (the
//! labelled streams); measuring a grouping run is in [`metrics`]; this file reads the flags and
//! prints the report.

mod corpora;
mod generate;
mod metrics;

use std::collections::HashMap;

use ferry::jobs::tier::Backend;
use ferry_connectors::embed::MiniLm;
use ferry_core::jobs::tier::normalize::Normalizer;
use ferry_core::jobs::tier::{Embedder, GroupingConfig, LexicalEmbedder};

use corpora::Preset;
use generate::Labelled;

/// The flags, as given (see the module docs).
struct Options {
    sweep: bool,
    show_impure: bool,
    backends: String,
    corpora: String,
    min_duration_ms: i64,
    outliers: f64,
    background: bool,
    no_learning: bool,
    split_confirm: usize,
    threshold: Option<f32>,
    /// `--min-scene`, s (each corpus has its default).
    min_scene: Option<f64>,
    /// `--cameras` (each corpus has its default).
    cameras: Option<f64>,
}

impl Options {
    /// Reads the flags; an unknown one is ignored, a value that is not a number is as if absent.
    fn from_args(args: &[String]) -> Self {
        let flag = |name: &str| args.iter().any(|a| a == name);
        let text_arg = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1).cloned())
        };
        let arg = |name: &str| text_arg(name).and_then(|v| v.parse::<f64>().ok());
        Options {
            sweep: flag("--sweep"),
            show_impure: flag("--show-impure"),
            backends: text_arg("--backends").unwrap_or_else(|| "lexical,minilm".into()),
            corpora: text_arg("--corpus").unwrap_or_else(|| "seed,other,third".into()),
            min_duration_ms: arg("--min-duration").map_or(60_000, |s| (s * 1000.0) as i64),
            outliers: arg("--outliers").unwrap_or(0.04),
            background: flag("--background"),
            no_learning: flag("--no-learning"),
            split_confirm: arg("--split-confirm").map_or(2, |n| (n as usize).max(1)),
            threshold: arg("--threshold").map(|t| t as f32),
            min_scene: arg("--min-scene"),
            cameras: arg("--cameras"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let options = Options::from_args(&args);
    let normalizer = Normalizer::default();
    let mut models: HashMap<String, Box<dyn Embedder>> = HashMap::new();
    for name in options.corpora.split(',') {
        let Some(preset) = corpora::preset(name) else {
            eprintln!("unknown corpus {name} (seed, other, third)");
            continue;
        };
        run_corpus(&options, &preset, &normalizer, &mut models);
    }
}

/// Generates one corpus, prints its summary and table header, and a row per backend and
/// threshold.
fn run_corpus(
    options: &Options,
    preset: &Preset,
    normalizer: &Normalizer,
    models: &mut HashMap<String, Box<dyn Embedder>>,
) {
    let corpus = preset.corpus;
    let min_scene_ms = options
        .min_scene
        .map_or(preset.default_min_scene * 1000.0, |s| s * 1000.0)
        .clamp(1_000.0, corpus.max_scene_ms as f64 - 1_000.0) as u64;
    let cameras = options
        .cameras
        .map_or(preset.default_cameras, |n| (n as usize).max(1));
    let mut streams = generate::generate(
        corpus,
        cameras,
        preset.scenes_per_camera,
        preset.seed,
        options.outliers,
        min_scene_ms,
        options.background,
    );
    generate::normalise(&mut streams, normalizer);
    let distinct: Vec<String> = {
        let mut set: Vec<String> = streams
            .iter()
            .flatten()
            .map(|c| c.input.norm.clone())
            .collect();
        set.sort();
        set.dedup();
        set
    };
    let total: usize = streams.iter().map(Vec::len).sum();
    let scene_count: usize = streams.len() * preset.scenes_per_camera;
    println!(
        "\n{} corpus: {} cameras, {scene_count} true scenes of {}–{} s, {:.0} % outlier captions, {total} captions ({} distinct after normalising), min_duration {} s{}\n",
        corpus.name,
        streams.len(),
        min_scene_ms / 1000,
        corpus.max_scene_ms / 1000,
        options.outliers * 100.0,
        distinct.len(),
        options.min_duration_ms / 1000,
        if options.background {
            "; every other scene the background (the first scene type), the ones between up to 60 s"
        } else {
            ""
        }
    );
    println!(
        "| corpus | backend | threshold | captions | events | reduction | purity | fragmentation |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for backend in options.backends.split(',') {
        let Some(embedder) = embedder(models, backend) else {
            continue;
        };
        let refs: Vec<&str> = distinct.iter().map(String::as_str).collect();
        let vectors: HashMap<String, Vec<f32>> = distinct
            .iter()
            .cloned()
            .zip(embedder.embed(&refs).expect("embedding"))
            .collect();
        run_backend(options, corpus.name, backend, &streams, &vectors);
    }
}

/// The backend's embedder, loaded on first use; `None` (and why, on stderr) when it is unknown
/// or cannot be loaded.
fn embedder<'m>(
    models: &'m mut HashMap<String, Box<dyn Embedder>>,
    backend: &str,
) -> Option<&'m mut Box<dyn Embedder>> {
    if !models.contains_key(backend) {
        let embedder: Box<dyn Embedder> = match backend {
            "lexical" => Box::new(LexicalEmbedder::default()),
            "minilm" => match MiniLm::from_default_location() {
                Ok(m) => Box::new(m),
                Err(e) => {
                    eprintln!("minilm: {e}");
                    return None;
                }
            },
            other => {
                eprintln!("unknown backend {other}");
                return None;
            }
        };
        models.insert(backend.to_string(), embedder);
    }
    Some(models.get_mut(backend).expect("inserted above"))
}

/// Groups the corpus with one backend's vectors at its default threshold (or `--threshold`,
/// or every threshold of `--sweep`) and prints a row each.
fn run_backend(
    options: &Options,
    corpus: &str,
    backend: &str,
    streams: &[Vec<Labelled>],
    vectors: &HashMap<String, Vec<f32>>,
) {
    let default = match backend {
        "minilm" => Backend::Minilm,
        _ => Backend::Lexical,
    }
    .default_threshold();
    let thresholds: Vec<f32> = if options.sweep {
        (5..=19).map(|i| i as f32 * 0.05).collect()
    } else {
        vec![options.threshold.unwrap_or(default)]
    };
    for threshold in thresholds {
        let config = GroupingConfig {
            similarity_threshold: threshold,
            min_duration_ms: options.min_duration_ms,
            split_confirm: options.split_confirm,
            ..GroupingConfig::default()
        };
        let learn = backend == "lexical" && !options.no_learning;
        let s = metrics::evaluate(streams, &config, vectors, learn, options.show_impure);
        println!(
            "| {corpus} | {backend} | {threshold:.2} | {} | {} | {:.1} % | {:.3} | {:.2} |",
            s.captions,
            s.events,
            s.reduction * 100.0,
            s.purity,
            s.fragmentation
        );
    }
}
