//! An application in transition reads the new key name and falls back to the old one.
//!
//! ```text
//! cargo run -p ferry --example fallback_read -- redis://127.0.0.1:6379/0 meta-glasses:user:profile:42
//! ```

use ferry::compat::{KeyMapper, Served, get_with_fallback};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let key = args
        .next()
        .unwrap_or_else(|| "meta-glasses:user:profile:42".into());
    let mapper = KeyMapper::from_toml_str(ferry::demo::SEED_RULES)?;
    println!(
        "old name of {key}: {:?}",
        mapper
            .old_key(key.as_bytes())
            .map(|k| String::from_utf8_lossy(&k).into_owned())
    );
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    match get_with_fallback(&mut conn, &mapper, key.as_bytes()).await? {
        Some((value, Served::New)) => println!("new key: {}", String::from_utf8_lossy(&value)),
        Some((value, Served::Old)) => println!(
            "old key (not migrated yet): {}",
            String::from_utf8_lossy(&value)
        ),
        None => println!("neither name exists"),
    }
    Ok(())
}
