//! The tier job's part of `ferry demo`: caption streams of a few cameras drained into events.

use std::path::Path;

use ferry_connectors::redis::{RedisEndpoint, cmd};
use tokio_util::sync::CancellationToken;

use crate::jobs::tier::{self, Backend, PassRequest, TierContext, TierOptions};

/// One scene of the tier demo: its paraphrases and how many captions it gets.
type DemoScene = (&'static [&'static str], usize);

/// Caption scenes of the tier demo, per camera.
const DEMO_CAMERAS: &[(&str, &[DemoScene])] = &[
    (
        "field-north",
        &[
            (
                &[
                    "surveillance camera view of man in fields",
                    "man in fields surveillance view",
                    "surveillance view of man in field",
                    "a man working in an agricultural field",
                ],
                24,
            ),
            (
                &[
                    "person walking away from field",
                    "a man walks away across the field",
                ],
                8,
            ),
        ],
    ),
    (
        "gate",
        &[
            (
                &[
                    "red car parked at the gate",
                    "a red car parked near the gate",
                    "red vehicle parked by the entrance gate",
                ],
                30,
            ),
            (
                &[
                    "two people talking near the door",
                    "a pair of people chatting by the entrance",
                ],
                12,
            ),
        ],
    ),
    (
        "dock",
        &[(
            &[
                "delivery truck unloading boxes at the dock",
                "workers unload a truck at the loading dock",
                "boxes carried off a delivery truck",
            ],
            40,
        )],
    ),
];

/// The tier part of `ferry demo`: caption streams of a few cameras, aged past the hot window's migration
/// point, drained in one pass into an SQLite store; the events are printed.
/// MiniLM when its model is installed, else the lexical backend.
pub fn backend() -> Backend {
    match ferry_connectors::embed::MiniLm::locate() {
        Ok(_) => Backend::Minilm,
        Err(_) => Backend::Lexical,
    }
}

pub async fn part(endpoint: &RedisEndpoint, url: &str, dir: &Path) -> anyhow::Result<()> {
    let start = crate::jobs::tier::now_ms() - 2 * 3_600_000;
    let mut cmds = Vec::new();
    let mut total = 0;
    for (camera, scenes) in DEMO_CAMERAS {
        let mut t = start;
        for (texts, n) in *scenes {
            for i in 0..*n {
                let mut c = cmd("XADD");
                c.arg(format!("captions:{camera}"))
                    .arg(format!("{t}-0"))
                    .arg("caption")
                    .arg(texts[i % texts.len()]);
                cmds.push((format!("captions:{camera}").into_bytes(), c));
                t += 5_000;
                total += 1;
            }
        }
    }
    for r in endpoint.run(cmds).await? {
        r?;
    }
    println!(
        "6. tier: {total} captions of {} cameras in Redis streams, older than the 2 h hot window's migration point",
        DEMO_CAMERAS.len()
    );
    let backend = backend();
    if backend == Backend::Lexical
        && let Err(e) = ferry_connectors::embed::MiniLm::locate()
    {
        println!("   ({e}; using the lexical backend)");
    }
    let store = dir.join("tier-demo.db");
    let ctx = TierContext::connect(TierOptions {
        redis: url.into(),
        store: format!("sqlite://{}", store.display()).into(),
        similarity: backend,
        ..TierOptions::default()
    })
    .await?;
    let pass = tier::run_pass(
        &ctx,
        PassRequest {
            trigger: "demo".into(),
            ..PassRequest::default()
        },
        CancellationToken::new(),
    )
    .await?;
    println!(
        "7. tier run ({}): {} captions merged into {} events ({:.0} % fewer records), {} entries removed from Redis",
        backend.as_str(),
        pass.run.captions_migrated,
        pass.run.events_written,
        100.0 * (1.0 - pass.run.events_written as f64 / pass.run.captions_migrated.max(1) as f64),
        pass.run.entries_deleted
    );
    let mut events = tier::events(&ctx, None, 100).await?;
    events.sort_by(|a, b| (&a.camera_id, a.start_ms).cmp(&(&b.camera_id, b.start_ms)));
    for e in &events {
        println!(
            "     {:<12} {:>4} s {:>3} frames  {}",
            e.camera_id,
            e.duration_ms() / 1000,
            e.frame_count,
            e.caption
        );
    }
    if pass.run.failed > 0 || pass.run.captions_migrated != total {
        anyhow::bail!(
            "the tier demo did not migrate every caption: {:?}",
            pass.run.error
        );
    }
    Ok(())
}
