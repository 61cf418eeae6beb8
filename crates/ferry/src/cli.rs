//! Command-line interface: `ferry <job> <action> [options]`, `ferry serve`, `ferry demo`. Each
//! job defines its own actions and options in its folder (`jobs/<job>/args.rs`); the jobs are
//! listed once, in [`crate::jobs::JobCommand`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ferry_core::secret::{Secret, SecretUrl};

use crate::jobs::JobCommand;
use crate::jobs::tier::args::TierArgs;
use crate::observe::LogFormat;
use crate::server::args::ServeArgs;

/// Ferry moves live data in and around Redis without losing any of it.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, propagate_version = true)]
pub struct Cli {
    /// A TOML config file (see config/reference.toml); flags and FERRY_* variables override it.
    #[arg(long, global = true, env = "FERRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, env = "FERRY_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter (error, warn, info, debug, trace); RUST_LOG wins.
    #[arg(long, global = true, env = "FERRY_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics while a job's action runs (e.g.
    /// `ferry keys apply --metrics-listen 127.0.0.1:9187`), for a Prometheus to scrape;
    /// `ferry serve` has its own /metrics.
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// What to do: one job's action, `serve` or `demo`.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
pub enum Command {
    /// A job's action (`ferry keys …`, `ferry tier …`, `ferry events …`).
    #[command(flatten)]
    Job(JobCommand),
    /// Run the tier job on a schedule (and the events relay when [events] postgres or
    /// --events-postgres is set); serve the HTTP API and Prometheus metrics.
    Serve {
        #[command(flatten)]
        tier: TierArgs,
        /// Run the events job on this PostgreSQL (API, relay).
        #[arg(long, env = "FERRY_EVENTS_POSTGRES", hide_env_values = true)]
        events_postgres: Option<SecretUrl>,
        /// The Redis the events job publishes on.
        #[arg(long, env = "FERRY_EVENTS_REDIS", hide_env_values = true)]
        events_redis: Option<SecretUrl>,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Run the keys, tier and events jobs end to end on generated data in a throwaway
    /// redis-server (and a throwaway PostgreSQL database).
    Demo {
        /// Use this Redis instead of starting one (demo keys are written to it).
        #[arg(long, env = "FERRY_DEMO_REDIS", hide_env_values = true)]
        redis: Option<SecretUrl>,
        /// Keys to generate.
        #[arg(long, default_value_t = 20_000)]
        keys: usize,
        /// Where to write the JSON report.
        #[arg(long, default_value = "ferry-demo-report.json")]
        report: PathBuf,
        /// PostgreSQL server for the events part (a throwaway database is created on it).
        #[arg(
            long,
            env = "FERRY_DEMO_POSTGRES",
            default_value = "postgres://postgres@127.0.0.1:5432",
            hide_env_values = true
        )]
        postgres: SecretUrl,
        /// End after the jobs instead of serving the dashboard until Ctrl-C.
        #[arg(long)]
        no_serve: bool,
        /// Where the dashboard listens at the end (another free port when it is taken).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
}

/// A secret flag (`--token`): held as [`Secret`], so `{:?}` of the parsed command line never
/// shows it.
pub(crate) fn secret(value: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::from(value))
}

/// A number of seconds given as `flag`: finite, not negative, at most 100 years (see
/// [`crate::config::check_seconds`]), and not 0 when `positive` says what 0 would do; clap
/// reports a bad value with the flag and exits with 2.
pub(crate) fn parse_seconds(
    flag: &str,
    value: &str,
    positive: Option<&str>,
) -> Result<f64, String> {
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number of seconds"))?;
    crate::config::check_seconds(flag, v, positive)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ferry").chain(args.iter().copied()))
    }

    #[test]
    fn parsed_command_lines_debug_without_secrets() {
        let pw = "Zq9/h#s?x@y";
        let cases: [Vec<String>; 4] = [
            vec![
                "serve".into(),
                "--token=tokZq9".into(),
                format!("--events-postgres=postgres://u:{pw}@db/app?sslmode=require"),
                format!("--events-redis=redis://:{pw}@r:6379"),
                format!("--redis=redis://:{pw}@r:6379"),
                format!("--store=host=db password='{pw}' dbname=t"),
                format!("--checkpoint=redis://u:{pw}@c:1"),
            ],
            vec![
                "keys".into(),
                "plan".into(),
                format!("--source=redis://u:{pw}@s:6379"),
                format!("--target=redis+cluster://u:{pw}@t:7000"),
                format!("--checkpoint=redis://:{pw}@c:1"),
            ],
            vec![
                "events".into(),
                "query".into(),
                format!("--postgres=postgres://u:{pw}@db/app"),
                format!("--redis=redis://:{pw}@r:6379"),
            ],
            vec![
                "demo".into(),
                format!("--redis=redis://:{pw}@r:6379"),
                format!("--postgres=postgres://postgres:{pw}@127.0.0.1:5432"),
            ],
        ];
        for args in cases {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let cli = parse(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let shown = format!("{cli:?}");
            assert!(!shown.contains("Zq9"), "{shown}");
        }
    }

    #[test]
    fn duration_flags_refuse_negative_infinite_nan_huge_and_zero_loops() {
        let cases: [(&[&str], &str, bool); 3] = [
            (&["serve"], "--interval", true),
            (&["events", "ingest"], "--claim-idle", true),
            (&["keys", "verify"], "--ttl-tolerance", false),
        ];
        for (head, flag, zero_refused) in cases {
            for bad in ["-1", "inf", "NaN", "-inf", "1e300", "soon"] {
                let arg = format!("{flag}={bad}");
                let mut args = head.to_vec();
                args.push(&arg);
                let err = parse(&args).expect_err(&arg);
                assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{arg}");
                assert_eq!(err.exit_code(), 2, "{arg}");
                let text = err.to_string();
                assert!(text.contains(flag) && text.contains(bad), "{arg}: {text}");
            }
            // `--interval -5` (a separate word) is a bad value too, not an unknown flag.
            for bad in ["-5", "-inf"] {
                let mut args = head.to_vec();
                args.extend([flag, bad]);
                let err = parse(&args).expect_err(bad);
                assert_eq!(
                    err.kind(),
                    clap::error::ErrorKind::ValueValidation,
                    "{flag} {bad}"
                );
            }
            let arg = format!("{flag}=0");
            let mut args = head.to_vec();
            args.push(&arg);
            match parse(&args) {
                Err(e) => {
                    assert!(zero_refused, "{arg}: {e}");
                    assert!(e.to_string().contains("positive"), "{e}");
                }
                Ok(_) => assert!(!zero_refused, "{arg} was accepted"),
            }
            let arg = format!("{flag}=0.5");
            let mut args = head.to_vec();
            args.push(&arg);
            assert!(parse(&args).is_ok(), "{arg}");
        }
    }
}
