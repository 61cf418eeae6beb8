//! The MiniLM embedder against sentence-transformers' own vectors (tests/fixtures, made by
//! scripts/minilm_reference.py). Needs the model that `make test-setup` installs; a missing
//! model fails these tests, it never skips them.
#![cfg(feature = "minilm")]

use std::time::Instant;

use ferry_connectors::embed::MiniLm;
use ferry_core::jobs::tier::Embedder;

fn model() -> MiniLm {
    match MiniLm::from_default_location() {
        Ok(model) => model,
        Err(e) => panic!("{e}"),
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[derive(serde::Deserialize)]
struct Fixture {
    sentences: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

#[test]
fn vectors_match_sentence_transformers() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm_reference.json"
    );
    let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(fixture.sentences.len(), fixture.vectors.len());
    let mut model = model();
    assert_eq!(model.name(), "minilm");
    assert_eq!(model.dim(), 384);
    let texts: Vec<&str> = fixture.sentences.iter().map(String::as_str).collect();
    let got = model.embed(&texts).unwrap();
    assert_eq!(got.len(), texts.len());
    for ((text, want), got) in texts.iter().zip(&fixture.vectors).zip(&got) {
        assert_eq!(got.len(), 384);
        let norm = dot(got, got).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{text:?}: norm {norm}");
        let diff = max_abs_diff(got, want);
        assert!(
            diff <= 1e-3,
            "{text:?}: max abs difference {diff} from sentence-transformers"
        );
        eprintln!("{diff:.2e}  {:.60}", text);
    }
}

#[test]
fn a_batch_embeds_like_its_texts_one_by_one() {
    let mut model = model();
    // More texts than one internal batch, of very different lengths, so that most are padded
    // next to longer neighbours.
    let mut texts: Vec<String> = (0..45)
        .map(|i| {
            let words = [
                "a red car",
                "parked at the gate",
                "near",
                "the loading dock",
            ];
            let n = 1 + i % 9;
            (0..n)
                .map(|j| words[(i + j) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    texts.push(String::new());
    texts.push("camera 3 sees a cyclist riding past the north entrance ".repeat(40));
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batched = model.embed(&texts).unwrap();
    assert_eq!(batched.len(), texts.len());
    for (text, batched) in texts.iter().zip(&batched) {
        let alone = model.embed(&[text]).unwrap().remove(0);
        let diff = max_abs_diff(batched, &alone);
        assert!(diff <= 1e-5, "{text:?}: batched and alone differ by {diff}");
    }
    assert!(model.embed(&[]).unwrap().is_empty());
}

#[test]
fn a_missing_model_names_the_setup_command() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-model");
    let e = MiniLm::load(&missing).unwrap_err().to_string();
    assert!(e.contains("make test-setup"), "{e}");
    assert!(e.contains("FERRY_MODEL_DIR"), "{e}");
    assert!(e.contains("no-such-model"), "{e}");

    // A directory with some of the files names the ones it lacks.
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    let e = MiniLm::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("model.safetensors, tokenizer.json"), "{e}");
    assert!(e.contains("make test-setup"), "{e}");
}

#[test]
fn paraphrases_are_closer_than_unrelated_captions() {
    let mut model = model();
    let v = model
        .embed(&[
            "surveillance camera view of man in fields",
            "security camera footage of a man standing in a field",
            "a red car parked at the gate",
            "a crimson automobile stopped by the entrance gate",
            "two dogs playing on the beach",
        ])
        .unwrap();
    let (man, man2, car, car2, dogs) = (&v[0], &v[1], &v[2], &v[3], &v[4]);
    for (a, b, unrelated) in [(man, man2, car), (car, car2, man), (man, man2, dogs)] {
        let close = dot(a, b);
        let far = dot(a, unrelated);
        assert!(close > far + 0.3, "paraphrase {close} vs unrelated {far}");
    }
    // sentence-transformers gives 0.80, 0.53 (no word in common but "gate") and 0.08.
    assert!(dot(man, man2) > 0.7, "{}", dot(man, man2));
    assert!(dot(car, car2) > 0.45, "{}", dot(car, car2));
    assert!(dot(man, car) < 0.2, "{}", dot(man, car));
}

/// Throughput on 1000 distinct captions (not a test: no timing is asserted). Run with
/// `RAYON_NUM_THREADS=1 cargo test --release -p ferry-connectors --features minilm --test minilm
/// -- --ignored --nocapture throughput`.
#[test]
#[ignore = "a measurement, run by hand"]
fn throughput() {
    let subjects = [
        "a man",
        "a woman",
        "two people",
        "a delivery truck",
        "a red car",
        "a cyclist",
        "a dog",
        "a security guard",
        "a child",
        "a white van",
    ];
    let actions = [
        "walking",
        "standing",
        "parked",
        "waiting",
        "running",
        "turning",
        "stopping",
        "moving slowly",
        "loitering",
        "passing by",
    ];
    let places = [
        "in the fields",
        "at the gate",
        "near the loading dock",
        "in the parking lot",
        "by the fence",
        "on the road",
        "at the north entrance",
        "behind the warehouse",
        "under the street light",
        "next to the barrier",
    ];
    let mut texts = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        for (j, a) in actions.iter().enumerate() {
            for p in places {
                texts.push(format!("camera {} view of {s} {a} {p}", (i * 10 + j) % 17));
            }
        }
    }
    assert_eq!(texts.len(), 1000);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut model = model();
    model.embed(&texts[..64]).unwrap();
    let started = Instant::now();
    let vectors = model.embed(&texts).unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(vectors.len(), texts.len());
    eprintln!(
        "minilm: {} texts in {secs:.2} s = {:.0} embeddings/s (RAYON_NUM_THREADS={})",
        texts.len(),
        texts.len() as f64 / secs,
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into()),
    );
}
