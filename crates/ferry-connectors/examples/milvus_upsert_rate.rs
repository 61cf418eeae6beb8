//! Upsert rate into Milvus Lite: 20k 384-dimensional vectors in batches of 1000, into a
//! throwaway server started by ferry-testkit. Prints vectors per second; a measurement, not a
//! test.
//!
//! `cargo run -p ferry-connectors --features milvus --example milvus_upsert_rate [N] [BATCH]`

use std::time::Instant;

use ferry_connectors::milvus::{MilvusOptions, MilvusTarget};
use ferry_core::jobs::vectors::{IdKind, VectorId, VectorTarget};
use ferry_testkit::MilvusServer;

const DIM: usize = 384;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: i64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let server = MilvusServer::start();
    let target = MilvusTarget::open(&server.url(), "rate", MilvusOptions::default()).await?;
    target.prepare(DIM, IdKind::Int).await?;
    let items: Vec<(VectorId, Vec<f32>)> = (0..n)
        .map(|i| (VectorId::Int(i), ferry_testkit::test_vector(i as u64, DIM)))
        .collect();
    let started = Instant::now();
    for chunk in items.chunks(batch) {
        let failures = target.upsert(chunk).await?;
        assert!(failures.is_empty(), "{failures:?}");
    }
    let upsert = started.elapsed();
    let count = target.describe().await?.items;
    println!(
        "upserted {n} {DIM}-d vectors in batches of {batch}: {:.2} s, {:.0} vectors/s ({count} rows)",
        upsert.as_secs_f64(),
        n as f64 / upsert.as_secs_f64()
    );
    let started = Instant::now();
    let ids = target.ids(IdKind::Int).await?;
    println!(
        "ids(): {} ids in {:.2} s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let got = target.get(&ids[..5000.min(ids.len())]).await?;
    println!(
        "get(): {} vectors in {:.2} s",
        got.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
