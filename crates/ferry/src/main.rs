//! The `ferry` binary: parses the command line, reads the config file, sets up logging,
//! metrics and the runtime, and hands the command over to its job (`ferry::jobs::<job>::cli`).

/// Ferry allocates many small buffers per key (commands, replies); mimalloc keeps that cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;
use ferry::cli::{Cli, Command};
use ferry::config::FileConfig;
use ferry::server;
use ferry_core::error::ExitStatus;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = match &cli.config {
        Some(path) => match FileConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(ExitStatus::Fatal.code() as u8);
            }
        },
        None => FileConfig::default(),
    };
    let format = cli.log_format.or(file.log.format).unwrap_or_default();
    let level = cli
        .log_level
        .clone()
        .or(file.log.level.clone())
        .unwrap_or_else(|| "info".into());
    ferry::observe::init_logging(format, &level);
    ferry::observe::describe_metrics();
    // `ferry serve` answers requests, relays events and renews leases while a pass runs: two
    // async workers, with CPU-heavy work (MiniLM embedding, SQLite) on the blocking pool. The
    // one-shot commands keep one thread (measured faster for `keys apply`, whose Redis shares
    // the machine's cores).
    let mut builder = if matches!(cli.command, Command::Serve { .. }) {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let status = runtime.block_on(run(cli, file));
    ExitCode::from(status.code() as u8)
}

/// Hands the command over to its job.
async fn run(cli: Cli, file: FileConfig) -> ExitStatus {
    if cli.metrics_listen.is_some() && !matches!(cli.command, Command::Job(_)) {
        eprintln!(
            "error: --metrics-listen is for a job's action; `ferry serve` serves /metrics on its own address and `ferry demo` through its dashboard"
        );
        return ExitStatus::Fatal;
    }
    match cli.command {
        Command::Job(job) => {
            // Metrics of a one-shot command, served while it runs.
            let metrics_stop = tokio_util::sync::CancellationToken::new();
            let _stop_metrics = metrics_stop.clone().drop_guard();
            if let Some(addr) = cli.metrics_listen {
                match ferry::observe::serve_metrics(addr, metrics_stop).await {
                    Ok(bound) => println!("metrics: http://{bound}/metrics"),
                    Err(e) => {
                        eprintln!("error: cannot serve metrics on {addr}: {e}");
                        return ExitStatus::Fatal;
                    }
                }
            }
            job.run(&file).await
        }
        Command::Serve {
            tier,
            events_postgres,
            events_redis,
            serve,
        } => {
            let events = server::command::events_args(events_postgres, events_redis);
            server::command::run(&file, &tier, &events, &serve).await
        }
        Command::Demo {
            redis,
            keys,
            report,
            postgres,
            no_serve,
            listen,
        } => {
            let options = ferry::demo::DemoOptions {
                redis,
                keys,
                report,
                postgres,
                serve: !no_serve,
                listen,
            };
            match ferry::demo::run(options).await {
                Ok(()) => ExitStatus::Done,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitStatus::Fatal
                }
            }
        }
    }
}
