//! Secrets never show: `{:?}` of every options struct and of the parsed config file, and the
//! errors of connections that fail, hold no password or token — also when the password has
//! characters a URL parser misreads (`/`, `#`, `?`, `@`) or sits in a PostgreSQL `key=value`
//! string.

use std::path::Path;

use ferry::config::FileConfig;
use ferry::demo::DemoOptions;
use ferry::jobs::events::{EventsContext, EventsOptions};
use ferry::jobs::keys::{KeysContext, KeysOptions};
use ferry::jobs::tier::{Backend, TierContext, TierOptions};
use ferry::server::ServeOptions;

/// Passwords that break naive URL redaction; each holds the marker `Zq9`.
const PASSWORDS: &[&str] = &[
    "Zq9/slash",
    "Zq9#hash",
    "Zq9?query",
    "Zq9@at",
    "Zq9:a/b#c?d@e",
];
const TOKEN: &str = "tokZq9secret";

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains("Zq9"), "{what} shows a secret: {text}");
}

#[test]
fn options_structs_debug_without_passwords_or_tokens() {
    for pw in PASSWORDS {
        let keys = KeysOptions {
            source: format!("redis://u:{pw}@127.0.0.1:6379/0").into(),
            target: Some(format!("rediss://:{pw}@target.example:6380").into()),
            source_password: Some((*pw).into()),
            target_password: Some((*pw).into()),
            checkpoint: Some(format!("redis+cluster://u:{pw}@c:7000").into()),
            ..KeysOptions::default()
        };
        let shown = format!("{keys:?}");
        assert_clean("KeysOptions", &shown);
        assert!(shown.contains("127.0.0.1:6379"), "the host stays: {shown}");

        let tier = TierOptions {
            redis: format!("redis://:{pw}@127.0.0.1:6379").into(),
            redis_password: Some((*pw).into()),
            store: format!("host=db port=5432 user=ferry password='{pw}' dbname=tier").into(),
            checkpoint: Some(format!("redis://u:{pw}@h:1").into()),
            ..TierOptions::default()
        };
        assert_clean("TierOptions", &format!("{tier:?}"));

        let events = EventsOptions {
            postgres: format!("postgres://ferry:{pw}@db.example:5432/app?sslmode=require").into(),
            redis: format!("redis://default:{pw}@r:6379").into(),
            ..EventsOptions::default()
        };
        assert_clean("EventsOptions", &format!("{events:?}"));

        let demo = DemoOptions {
            redis: Some(format!("redis://:{pw}@h:6379").into()),
            keys: 1,
            report: "r.json".into(),
            postgres: format!("postgres://postgres:{pw}@127.0.0.1:5432").into(),
            serve: false,
            listen: "127.0.0.1:8080".parse().unwrap(),
        };
        assert_clean("DemoOptions", &format!("{demo:?}"));
    }
    let serve = ServeOptions {
        token: Some(TOKEN.into()),
        ..ServeOptions::default()
    };
    assert_clean("ServeOptions", &format!("{serve:?}"));
}

#[test]
fn the_config_file_and_the_options_it_gives_debug_without_secrets() {
    for pw in PASSWORDS {
        let toml = format!(
            r#"
[checkpoint]
url = "redis://u:{pw}@cp:6379"
[keys]
source = "redis://u:{pw}@src:6379"
target = "redis://:{pw}@dst:6379"
[tier]
redis = "redis://:{pw}@r:6379"
store = "host=db password='{pw}' dbname=tier"
[serve]
token = "{TOKEN}"
[events]
postgres = "postgres://ferry:{pw}@db/app?sslmode=verify-full"
redis = "redis://:{pw}@r:6379"
"#
        );
        let cfg = FileConfig::parse(&toml).expect("parses");
        assert_clean("FileConfig", &format!("{cfg:?}"));
        assert_clean("keys options", &format!("{:?}", cfg.keys_options()));
        assert_clean("tier options", &format!("{:?}", cfg.tier_options()));
        assert_clean("events options", &format!("{:?}", cfg.events_options()));
        assert_clean(
            "serve options",
            &format!("{:?}", cfg.serve_options().unwrap()),
        );
        // The raw values still reach the code that connects.
        assert_eq!(
            cfg.events_options().postgres.expose(),
            format!("postgres://ferry:{pw}@db/app?sslmode=verify-full")
        );
    }
}

/// Connections that fail (nothing listens on port 1) report the server without its password.
#[tokio::test]
async fn connection_errors_never_show_the_password() {
    for pw in PASSWORDS {
        let tier = TierContext::connect(TierOptions {
            redis: format!("redis://:{pw}@127.0.0.1:1").into(),
            similarity: Backend::Lexical,
            ..TierOptions::default()
        })
        .await
        .expect_err("nothing listens on port 1");
        assert_clean("tier Redis error", &format!("{tier} {tier:?}"));

        for postgres in [
            format!("postgres://ferry:{pw}@127.0.0.1:1/app"),
            format!("host=127.0.0.1 port=1 user=ferry password='{pw}' dbname=app"),
            format!("postgres://ferry:{pw}@127.0.0.1:1/app?sslmode=bogus"),
        ] {
            let events = EventsContext::connect(EventsOptions {
                postgres: postgres.clone().into(),
                ..EventsOptions::default()
            })
            .await
            .expect_err("nothing listens on port 1");
            assert_clean("events PostgreSQL error", &format!("{events} {events:?}"));
        }

        let keys = KeysContext::connect(KeysOptions {
            source: format!("redis://u:{pw}@127.0.0.1:1").into(),
            rules: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../config/examples/seed-002-rules.toml"),
            ..KeysOptions::default()
        })
        .await
        .expect_err("nothing listens on port 1");
        assert_clean("keys Redis error", &format!("{keys} {keys:?}"));
    }
}
