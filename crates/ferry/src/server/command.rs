//! `ferry serve` from the command line: checks the server's options, connects the jobs that are
//! configured (and only those: no model is loaded without the tier job) and runs the server.

use std::sync::Arc;

use ferry_core::error::ExitStatus;
use ferry_core::secret::SecretUrl;

use super::args::ServeArgs;
use crate::config::FileConfig;
use crate::jobs::Served;
use crate::jobs::bridge::service::ServedBridge;
use crate::jobs::events::EventsContext;
use crate::jobs::events::args::EventsArgs;
use crate::jobs::keys::routes::ServedKeys;
use crate::jobs::tier::TierContext;
use crate::jobs::tier::args::TierArgs;
use crate::jobs::vectors::routes::ServedVectors;

/// Runs `ferry serve` until Ctrl-C or SIGTERM; an error is printed and gives
/// [`ExitStatus::Fatal`].
pub async fn run(
    file: &FileConfig,
    tier: &TierArgs,
    events: &EventsArgs,
    serve: &ServeArgs,
) -> ExitStatus {
    match serve_jobs(file, tier, events, serve).await {
        Ok(()) => ExitStatus::Done,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitStatus::Fatal
        }
    }
}

/// The events flags of `ferry serve` (`--events-postgres`, `--events-redis`).
pub fn events_args(postgres: Option<SecretUrl>, redis: Option<SecretUrl>) -> EventsArgs {
    EventsArgs { postgres, redis }
}

async fn serve_jobs(
    file: &FileConfig,
    tier_args: &TierArgs,
    events_args: &EventsArgs,
    serve: &ServeArgs,
) -> anyhow::Result<()> {
    let mut opts = file.serve_options().map_err(anyhow::Error::msg)?;
    serve.apply_to(&mut opts).map_err(anyhow::Error::msg)?;
    // Refuse unusable tokens or an open API on the network before connecting to anything.
    opts.check()?;
    let stop = crate::runtime::shutdown_token();
    // The events job runs when a PostgreSQL is configured for it.
    let events_configured = events_args.postgres.is_some()
        || file.events.postgres.as_ref().is_some_and(|p| !p.is_empty());
    // The tier job runs when it is configured (its Redis or store set in the config or by a
    // flag), or when nothing else is (then on its defaults, as `ferry serve` always did).
    let tier_configured = file.tier.configured() || tier_args.configured();
    let bridges = file
        .bridge
        .iter()
        .map(|section| {
            let o = section.options(&crate::jobs::bridge::args::RunArgs::default());
            let o = o.map_err(anyhow::Error::msg)?;
            o.check()?;
            Ok(o)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let keys = watched_keys(file);
    let vectors = watched_vectors(file)?;
    // The tier job on its defaults only when no job at all is configured (as `ferry serve`
    // always did): with only another job set up, its defaults would drain a Redis nobody named.
    let nothing_else =
        !events_configured && bridges.is_empty() && keys.is_none() && vectors.is_none();
    let tier = if tier_configured || nothing_else {
        let ctx = TierContext::connect(tier_args.options(file)).await?;
        if opts.interval.as_millis() as i64 >= ctx.options.migrate_before_ms {
            tracing::warn!(
                interval_s = opts.interval.as_secs_f64(),
                migrate_before_s = ctx.options.migrate_before_ms as f64 / 1000.0,
                "the pass interval is not shorter than migrate_before: captions may expire between passes"
            );
        }
        Some(ctx)
    } else {
        tracing::info!("the tier job is not configured ([tier] redis and store): not started");
        None
    };
    let events = if events_configured {
        Some(Arc::new(
            EventsContext::connect(events_args.options(file)).await?,
        ))
    } else {
        None
    };
    let jobs = Served {
        tier,
        events,
        bridges: bridges
            .into_iter()
            .map(|o| Arc::new(ServedBridge::new(o)))
            .collect(),
        keys,
        vectors,
        ..Served::default()
    };
    super::serve(opts, jobs, stop).await
}

/// The keys job's runs, watched when `[keys] source` and `rules` are set (connected on first
/// use, so a source that is down shows on the dashboard instead of stopping the server).
fn watched_keys(file: &FileConfig) -> Option<Arc<ServedKeys>> {
    let k = &file.keys;
    let configured = k.source.as_ref().is_some_and(|s| !s.is_empty()) && k.rules.is_some();
    configured.then(|| Arc::new(ServedKeys::new(file.keys_options())))
}

/// The vectors migration, watched when `[vectors] source` or `state` is set.
fn watched_vectors(file: &FileConfig) -> anyhow::Result<Option<ServedVectors>> {
    let v = &file.vectors;
    let set = |u: &Option<SecretUrl>| u.as_ref().is_some_and(|u| !u.is_empty());
    if !(set(&v.source) || set(&v.state)) {
        return Ok(None);
    }
    let options = crate::jobs::vectors::cli::resolve(v, &Default::default())?;
    Ok(Some(ServedVectors::new(options)))
}
