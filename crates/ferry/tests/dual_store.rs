//! The dual-write store against real Redis 8 servers holding two vector sets: modes changed
//! live through the mode key, a dead or hung secondary, shadow comparisons, cutover reads and
//! their fallback, a dead primary, an unreachable mode key.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ferry::dual_store::{DualOptions, DualStore, ModeSource};
use ferry_connectors::redis::{RedisEndpoint, VectorSetOptions, VectorSetTarget};
use ferry_core::jobs::vectors::{IdKind, Quantization, StorageMode, VectorId, VectorTarget};
use ferry_testkit::{RedisServer, redis8_server_bin, unique_name};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

type Store = DualStore<VectorSetTarget, VectorSetTarget>;

const MODE_KEY: &str = "ferry:vectors:mode";
const REFRESH: Duration = Duration::from_millis(50);

fn redis8() -> RedisServer {
    RedisServer::start_with_binary(&redis8_server_bin(), &[])
}

async fn vector_set(server: &RedisServer) -> VectorSetTarget {
    let options = VectorSetOptions {
        quantization: Quantization::NoQuant,
        ..VectorSetOptions::default()
    };
    VectorSetTarget::open(&server.url(), &unique_name("vs"), options)
        .await
        .expect("open a vector set on Redis 8")
}

async fn redis_mode(server: &RedisServer) -> ModeSource {
    ModeSource::Redis {
        endpoint: RedisEndpoint::connect(&server.url(), None)
            .await
            .expect("connect to the mode Redis"),
        key: MODE_KEY.into(),
        refresh: REFRESH,
    }
}

fn options(timeout_ms: u64) -> DualOptions {
    DualOptions {
        secondary_timeout: Duration::from_millis(timeout_ms),
        search_min_overlap: 1.0,
        ..DualOptions::default()
    }
}

async fn dual(primary: &RedisServer, secondary: &RedisServer, mode: ModeSource) -> Store {
    let (p, s) = (vector_set(primary).await, vector_set(secondary).await);
    DualStore::new(p, s, mode, IdKind::Int, options(1000))
}

fn set_mode(server: &RedisServer, mode: &str) {
    let _: () = redis::cmd("SET")
        .arg(MODE_KEY)
        .arg(mode)
        .query(&mut server.conn())
        .expect("SET the mode key");
}

/// Waits until the store follows `mode` (it rereads the key every REFRESH).
async fn wait_mode(store: &Store, mode: StorageMode) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.mode().await != mode {
        assert!(Instant::now() < deadline, "the store never followed {mode}");
        tokio::time::sleep(REFRESH / 2).await;
    }
}

/// A distinct 8-dimensional vector per id.
fn vector(id: i64) -> Vec<f32> {
    (0..8)
        .map(|i| ((id * 7 + i * 3) % 11) as f32 - 5.0 + id as f32 / 100.0)
        .collect()
}

fn items(ids: impl IntoIterator<Item = i64>) -> Vec<(VectorId, Vec<f32>)> {
    ids.into_iter()
        .map(|i| (VectorId::Int(i), vector(i)))
        .collect()
}

fn ids(ids: &[i64]) -> Vec<VectorId> {
    ids.iter().map(|&i| VectorId::Int(i)).collect()
}

async fn holds(store: &impl VectorTarget, id: i64) -> bool {
    store.get(&ids(&[id])).await.expect("read one store")[0].is_some()
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4)
}

#[tokio::test]
async fn modes_change_live_through_the_redis_key() {
    let (p, s) = (redis8(), redis8());
    let store = dual(&p, &s, redis_mode(&p).await).await;

    assert_eq!(store.mode().await, StorageMode::PrimaryOnly, "missing key");
    assert!(store.upsert(&items([1])).await.unwrap().is_empty());
    assert!(holds(store.primary(), 1).await && !holds(store.secondary(), 1).await);

    set_mode(&p, "dual_write");
    wait_mode(&store, StorageMode::DualWrite).await;
    store.upsert(&items([2, 3])).await.unwrap();
    assert!(holds(store.secondary(), 2).await && holds(store.primary(), 2).await);
    assert_eq!(store.delete(&ids(&[3])).await.unwrap(), 1);
    assert!(!holds(store.secondary(), 3).await);
    store.secondary().upsert(&items([50])).await.unwrap();
    assert_eq!(
        store.get(&ids(&[50])).await.unwrap(),
        vec![None],
        "reads the primary"
    );

    set_mode(&p, "cutover");
    wait_mode(&store, StorageMode::Cutover).await;
    let got = store.get(&ids(&[50])).await.unwrap();
    assert!(
        close(got[0].as_deref().unwrap(), &vector(50)),
        "reads the secondary"
    );
    let found: Vec<VectorId> = store
        .search(&vector(50), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(
        found.contains(&VectorId::Int(50)),
        "searches the secondary: {found:?}"
    );

    set_mode(&p, "primary_only");
    wait_mode(&store, StorageMode::PrimaryOnly).await;
    store.upsert(&items([4])).await.unwrap();
    assert!(
        !holds(store.secondary(), 4).await,
        "rolled back: primary only"
    );
    assert_eq!(store.stats().mode, Some(StorageMode::PrimaryOnly));
    assert_eq!(store.stats().secondary.errors, 0);
}

#[tokio::test]
async fn dual_write_survives_a_dead_secondary() {
    let (p, s) = (redis8(), redis8());
    let store = dual(&p, &s, ModeSource::Fixed(StorageMode::DualWrite)).await;
    store.upsert(&items(1..=5)).await.unwrap();
    drop(s);

    let started = Instant::now();
    assert!(store.upsert(&items(6..=8)).await.unwrap().is_empty());
    let got = store.get(&ids(&[6, 99])).await.unwrap();
    assert!(close(got[0].as_deref().unwrap(), &vector(6)) && got[1].is_none());
    let found = store.search(&vector(7), 1).await.unwrap();
    assert_eq!(found[0].0, VectorId::Int(7));
    assert_eq!(store.delete(&ids(&[8])).await.unwrap(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let stats = store.stats();
    assert_eq!((stats.primary.ok, stats.primary.errors), (5, 0));
    assert_eq!(
        (stats.secondary.ok, stats.secondary.errors),
        (1, 2),
        "two writes failed"
    );
    assert_eq!(stats.secondary.success_rate(), 1.0 / 3.0);
}

#[tokio::test]
async fn a_hung_secondary_costs_at_most_the_timeout() {
    let (p, s) = (redis8(), redis8());
    let (pt, st) = (vector_set(&p).await, vector_set(&s).await);
    let mode = ModeSource::Fixed(StorageMode::ShadowRead);
    let store = DualStore::new(pt, st, mode, IdKind::Int, options(300));
    store.upsert(&items(1..=3)).await.unwrap();

    let mut conn = s.conn();
    let sleeper = std::thread::spawn(move || {
        let _: redis::RedisResult<()> = redis::cmd("DEBUG").arg("SLEEP").arg(3).query(&mut conn);
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    store.upsert(&items([4])).await.unwrap();
    let got = store.get(&ids(&[4])).await.unwrap();
    let elapsed = started.elapsed();
    assert!(close(got[0].as_deref().unwrap(), &vector(4)));
    assert!(
        elapsed < Duration::from_millis(1500),
        "two calls took {elapsed:?}"
    );
    let stats = store.stats();
    assert_eq!((stats.secondary.errors, stats.secondary.timeouts), (2, 2));
    assert_eq!(stats.shadow_reads, 0, "nothing compared without an answer");
    drop(s);
    let _ = sleeper.join();
}

#[tokio::test]
async fn shadow_read_counts_a_mismatch_only_when_the_secondary_differs() {
    let (p, s) = (redis8(), redis8());
    let store = dual(&p, &s, ModeSource::Fixed(StorageMode::ShadowRead)).await;
    store.upsert(&items(1..=20)).await.unwrap();

    let all: Vec<i64> = (1..=20).collect();
    store.get(&ids(&all)).await.unwrap();
    store.search(&vector(3), 5).await.unwrap();
    let stats = store.stats();
    assert_eq!((stats.shadow_reads, stats.shadow_mismatches), (21, 0));

    store
        .secondary()
        .upsert(
            &items([7])
                .into_iter()
                .map(|(id, _)| (id, vector(13)))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    store.secondary().delete(&ids(&[8])).await.unwrap();
    let got = store.get(&ids(&[7, 8, 9])).await.unwrap();
    assert!(
        close(got[0].as_deref().unwrap(), &vector(7)),
        "the primary's answer"
    );
    assert!(got[1].is_some());
    let stats = store.stats();
    assert_eq!((stats.shadow_reads, stats.shadow_mismatches), (24, 2));

    store.secondary().upsert(&items([7, 8])).await.unwrap();
    let nearest: Vec<VectorId> = store
        .search(&vector(3), 5)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    store.secondary().delete(&nearest[..2]).await.unwrap();
    store.search(&vector(3), 5).await.unwrap();
    let stats = store.stats();
    assert_eq!((stats.shadow_reads, stats.shadow_mismatches), (26, 3));
    assert_eq!(stats.secondary.errors, 0);
}

#[tokio::test]
async fn cutover_reads_the_secondary_and_falls_back_when_it_is_down() {
    let (p, s) = (redis8(), redis8());
    let store = dual(&p, &s, ModeSource::Fixed(StorageMode::Cutover)).await;
    store.upsert(&items(1..=3)).await.unwrap();
    store
        .secondary()
        .upsert(&[(VectorId::Int(1), vector(40))])
        .await
        .unwrap();
    store.primary().upsert(&items([9])).await.unwrap();

    let got = store.get(&ids(&[1, 9, 77])).await.unwrap();
    assert!(
        close(got[0].as_deref().unwrap(), &vector(40)),
        "from the secondary"
    );
    assert!(
        close(got[1].as_deref().unwrap(), &vector(9)),
        "filled from the primary"
    );
    assert!(got[2].is_none());
    assert_eq!(
        store.search(&vector(40), 1).await.unwrap()[0].0,
        VectorId::Int(1)
    );
    assert_eq!((store.stats().filled, store.stats().fallbacks), (1, 0));

    drop(s);
    let got = store.get(&ids(&[1])).await.unwrap();
    assert!(
        close(got[0].as_deref().unwrap(), &vector(1)),
        "the primary's after the fallback"
    );
    let found = store.search(&vector(2), 1).await.unwrap();
    assert_eq!(found[0].0, VectorId::Int(2));
    store.upsert(&items([5])).await.unwrap();
    assert!(holds(store.primary(), 5).await);
    let stats = store.stats();
    assert_eq!(stats.fallbacks, 2);
    assert_eq!(stats.secondary.errors, 3);
}

#[tokio::test]
async fn a_primary_failure_fails_the_call() {
    let (p, s, control) = (redis8(), redis8(), redis8());
    let store = dual(&p, &s, redis_mode(&control).await).await;
    store.upsert(&items(1..=3)).await.unwrap();
    set_mode(&control, "dual_write");
    wait_mode(&store, StorageMode::DualWrite).await;
    store.upsert(&items(1..=3)).await.unwrap();
    drop(p);

    for mode in StorageMode::ALL {
        set_mode(&control, mode.as_str());
        wait_mode(&store, mode).await;
        let e = store.upsert(&items([10])).await.unwrap_err();
        assert!(e.to_string().contains("Redis"), "{mode}: {e}");
        assert!(store.delete(&ids(&[1])).await.is_err(), "{mode}");
        let get = store.get(&ids(&[2])).await;
        let search = store.search(&vector(2), 1).await;
        if mode == StorageMode::Cutover {
            assert!(
                close(get.unwrap()[0].as_deref().unwrap(), &vector(2)),
                "the secondary serves"
            );
            assert_eq!(search.unwrap()[0].0, VectorId::Int(2));
            assert!(
                store.get(&ids(&[42])).await.is_err(),
                "a missing id needs the primary"
            );
        } else {
            assert!(get.is_err() && search.is_err(), "{mode}");
        }
    }
    assert!(
        !holds(store.secondary(), 10).await,
        "a write the primary refused never reaches the secondary (cutover would read it)"
    );
}

#[tokio::test]
async fn an_unreachable_mode_redis_keeps_the_last_mode() {
    let (p, s, control) = (redis8(), redis8(), redis8());
    let store = dual(&p, &s, redis_mode(&control).await).await;
    set_mode(&control, "cutover");
    wait_mode(&store, StorageMode::Cutover).await;

    set_mode(&control, "hybrid");
    tokio::time::sleep(REFRESH * 3).await;
    assert_eq!(
        store.mode().await,
        StorageMode::Cutover,
        "an invalid value keeps it"
    );

    drop(control);
    tokio::time::sleep(REFRESH * 3).await;
    assert_eq!(
        store.mode().await,
        StorageMode::Cutover,
        "an unreachable key keeps it"
    );
    store.secondary().upsert(&items([60])).await.unwrap();
    assert!(
        store.get(&ids(&[60])).await.unwrap()[0].is_some(),
        "still reads the secondary"
    );
    assert_eq!(store.stats().mode, Some(StorageMode::Cutover));

    let never = redis8();
    let mode = redis_mode(&never).await;
    drop(never);
    let (pt, st) = (vector_set(&p).await, vector_set(&s).await);
    let store = DualStore::new(pt, st, mode, IdKind::Int, options(300));
    assert_eq!(
        store.mode().await,
        StorageMode::DualWrite,
        "the fallback mode"
    );
    assert_eq!(store.stats().mode, None);
    store.upsert(&items([1])).await.unwrap();
    assert!(
        holds(store.secondary(), 1).await,
        "the fallback writes both"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_serves_many_tasks() {
    let (p, s) = (redis8(), redis8());
    let store = Arc::new(dual(&p, &s, ModeSource::Fixed(StorageMode::DualWrite)).await);
    let tasks: Vec<_> = (0..8_i64)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.upsert(&items(t * 10..t * 10 + 10)).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap().is_empty());
    }
    assert_eq!(store.secondary().ids(IdKind::Int).await.unwrap().len(), 80);
    assert_eq!(store.stats().secondary.ok, 8);
}

fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("install the Prometheus recorder")
    })
}

#[tokio::test]
async fn calls_and_shadow_reads_are_prometheus_metrics() {
    let handle = prometheus();
    let (p, s) = (redis8(), redis8());
    let store = dual(&p, &s, ModeSource::Fixed(StorageMode::ShadowRead)).await;
    store.upsert(&items(1..=3)).await.unwrap();
    store.get(&ids(&[1])).await.unwrap();
    drop(s);
    store.search(&vector(1), 2).await.unwrap();

    let text = handle.render();
    for line in [
        r#"ferry_vectors_dual_calls_total{store="primary",op="upsert",outcome="ok"}"#,
        r#"ferry_vectors_dual_calls_total{store="secondary",op="search",outcome="error"}"#,
        r#"ferry_vectors_dual_call_seconds{store="secondary",op="get""#,
        r#"ferry_vectors_shadow_reads_total{op="get"}"#,
        r#"ferry_vectors_shadow_read_mismatches_total{op="get"}"#,
        "ferry_vectors_storage_mode ",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

/// A secondary whose server restarts is written to again once it is back (the vector set
/// target connects again), so dual writes resume by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_writes_resume_after_the_secondary_server_restarts() {
    use ferry::dual_store::{DualOptions, DualStore, ModeSource};
    use ferry_connectors::redis::{VectorSetOptions, VectorSetTarget};
    use ferry_core::jobs::vectors::{IdKind, Quantization, StorageMode, VectorId, VectorTarget};
    let bin = ferry_testkit::redis8_server_bin();
    let primary_server = ferry_testkit::RedisServer::start_with_binary(&bin, &[]);
    let mut secondary_server = ferry_testkit::RedisServer::start_with_binary(&bin, &[]);
    let options = VectorSetOptions {
        quantization: Quantization::NoQuant,
        ..VectorSetOptions::default()
    };
    let primary = VectorSetTarget::open(&primary_server.url(), "p", options)
        .await
        .unwrap();
    let secondary = VectorSetTarget::open(&secondary_server.url(), "s", options)
        .await
        .unwrap();
    let store = DualStore::new(
        primary,
        secondary,
        ModeSource::Fixed(StorageMode::DualWrite),
        IdKind::Int,
        DualOptions::default(),
    );
    store
        .upsert(&[(VectorId::Int(1), vec![1.0, 2.0])])
        .await
        .unwrap();
    secondary_server.stop();
    store
        .upsert(&[(VectorId::Int(2), vec![1.0, 3.0])])
        .await
        .unwrap();
    secondary_server.restart();
    store
        .upsert(&[(VectorId::Int(3), vec![1.0, 4.0])])
        .await
        .unwrap();
    let got = store.secondary().get(&[VectorId::Int(3)]).await.unwrap();
    assert!(
        got[0].is_some(),
        "the write after the restart reached the secondary"
    );
    drop(secondary_server);
}
