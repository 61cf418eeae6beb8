//! Ferry's jobs, one folder each, all of the same shape:
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | the job's options, errors, context (its connected clients) and actions |
//! | `args.rs` | its command-line actions and flags (clap) |
//! | `cli.rs` | running one action from the command line: print, report, exit status |
//! | `config.rs` | its section of the config file (serde, defaults, validation) |
//! | `routes.rs` | its HTTP endpoints and its part of `/healthz` (jobs that serve any) |
//! | `service.rs` | what it runs inside `ferry serve` (jobs that run any) |
//! | `demo.rs` | its part of `ferry demo` |
//!
//! | `metrics.rs` | its metric names |
//!
//! plus one file or folder per stage of its work. A job is registered in this file only (its
//! module, its command, its metrics, its context in [`Served`] and what it brings to `ferry
//! serve`), and its config section is a field of [`crate::config::FileConfig`].

pub mod agentdb;
pub mod bridge;
pub mod events;
pub mod keys;
pub mod tier;
pub mod vectors;

use std::sync::Arc;

use clap::Subcommand;
use ferry_core::error::ExitStatus;
use ferry_core::telemetry::Kind;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::FileConfig;
use crate::server::card::JobCard;
use crate::server::{AppState, Endpoint, ServeOptions};

/// The configured jobs' contexts inside `ferry serve` (`None`: not configured, not started).
#[derive(Debug, Default)]
pub struct Served {
    /// The tier job.
    pub tier: Option<tier::TierContext>,
    /// Serialises the tier passes of this process (the scheduler's and the API's).
    pub tier_passes: tokio::sync::Mutex<()>,
    /// The events job.
    pub events: Option<Arc<events::EventsContext>>,
    /// The configured bridges (`[[bridge]]` sections).
    pub bridges: Vec<Arc<bridge::service::ServedBridge>>,
    /// The keys job's runs, watched (`[keys] source` and `rules` set).
    pub keys: Option<Arc<keys::routes::ServedKeys>>,
    /// The vectors migration, watched (`[vectors] source` or `state` set).
    pub vectors: Option<vectors::routes::ServedVectors>,
}

/// The jobs' commands: `ferry <job> <action>`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Restructure key names and copy keys between Redis servers or clusters.
    Keys {
        /// The action.
        #[command(subcommand)]
        action: keys::args::KeysAction,
    },
    /// Drain the Redis hot cache of camera captions into durable time-range events.
    Tier {
        /// The action.
        #[command(subcommand)]
        action: tier::args::TierAction,
    },
    /// Save every event in PostgreSQL, then publish it on Redis Pub/Sub, with nothing lost.
    Events {
        /// The action.
        #[command(subcommand)]
        action: events::args::EventsAction,
    },
    /// Move a message flow from Kafka to a Redis Stream (and back), re-encoding camera frames.
    Bridge {
        /// The action.
        #[command(subcommand)]
        action: bridge::args::BridgeAction,
    },
    /// Move embeddings from a graph, Redis hashes or PostgreSQL into a vector database.
    Vectors {
        /// The action.
        #[command(subcommand)]
        action: vectors::args::VectorsAction,
    },
    /// Move RL agent state (experiences, Q-values, policies) from Redis into PostgreSQL.
    Agentdb {
        /// The action.
        #[command(subcommand)]
        action: agentdb::args::AgentDbAction,
    },
}

impl JobCommand {
    /// Runs the action with its job's `cli::run`.
    pub async fn run(self, file: &FileConfig) -> ExitStatus {
        match self {
            JobCommand::Keys { action } => keys::cli::run(action, file).await,
            JobCommand::Tier { action } => tier::cli::run(action, file).await,
            JobCommand::Events { action } => events::cli::run(action, file).await,
            JobCommand::Bridge { action } => bridge::cli::run(action, file).await,
            JobCommand::Vectors { action } => vectors::cli::run(action, file).await,
            JobCommand::Agentdb { action } => agentdb::cli::run(action, file).await,
        }
    }
}

/// Every job's metrics: name, help text and kind (each job declares them in its `metrics.rs`).
pub fn metric_names() -> Vec<(&'static str, &'static str, Kind)> {
    let keys = keys::metrics::KeysMetric::ALL.iter();
    let keys = keys.map(|m| (m.name(), m.help(), m.kind()));
    let tier = tier::metrics::TierMetric::ALL.iter();
    let tier = tier.map(|m| (m.name(), m.help(), m.kind()));
    let events = events::metrics::EventsMetric::ALL.iter();
    let events = events.map(|m| (m.name(), m.help(), m.kind()));
    let bridge = bridge::metrics::BridgeMetric::ALL.iter();
    let bridge = bridge.map(|m| (m.name(), m.help(), m.kind()));
    let vectors = vectors::metrics::VectorsMetric::ALL.iter();
    let vectors = vectors.map(|m| (m.name(), m.help(), m.kind()));
    let agentdb = agentdb::metrics::AgentDbMetric::ALL.iter();
    let agentdb = agentdb.map(|m| (m.name(), m.help(), m.kind()));
    let dual = crate::dual_store::metrics::DualMetric::ALL.iter();
    let dual = dual.map(|m| (m.name(), m.help(), m.kind()));
    keys.chain(tier)
        .chain(events)
        .chain(bridge)
        .chain(vectors)
        .chain(agentdb)
        .chain(dual)
        .chain(
            crate::server::metrics::ServeMetric::ALL
                .iter()
                .map(|m| (m.name(), m.help(), m.kind())),
        )
        .collect()
}

/// Every job's HTTP endpoints (a job that is not configured answers 404 saying so).
pub fn endpoints() -> Vec<Endpoint> {
    let mut all = tier::routes::endpoints();
    all.extend(events::routes::endpoints());
    all.extend(bridge::routes::endpoints());
    all.extend(keys::routes::endpoints());
    all.extend(vectors::routes::endpoints());
    all
}

/// A card being put together.
type CardFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = JobCard> + Send + 'a>>;

/// How long the overview waits for one job's card.
const CARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Every configured job's card for the dashboard's overview, in a fixed order; a new job
/// appears on the page by adding its card here.
pub async fn cards(state: &AppState) -> Vec<JobCard> {
    let mut pending: Vec<(JobCard, CardFuture<'_>)> = Vec::new();
    if let Some(tier) = &state.jobs.tier {
        let card = tier::routes::card(state, tier);
        pending.push((tier::routes::skeleton(state), Box::pin(card)));
    }
    if let Some(events) = &state.jobs.events {
        let card = events::routes::card(state, events);
        pending.push((events::routes::skeleton(state), Box::pin(card)));
    }
    if let Some(keys) = &state.jobs.keys {
        pending.push((keys::routes::skeleton(), Box::pin(keys::routes::card(keys))));
    }
    if let Some(vectors) = &state.jobs.vectors {
        let card = vectors::routes::card(vectors);
        pending.push((vectors::routes::skeleton(vectors), Box::pin(card)));
    }
    // The cards ask their stores concurrently; one whose stores are slow or hang is shown
    // without its figures but with its controls (a slow store is not a failed one).
    let mut cards =
        futures::future::join_all(pending.into_iter().map(|(mut stand_in, card)| async move {
            match tokio::time::timeout(CARD_TIMEOUT, card).await {
                Ok(card) => card,
                Err(_) => {
                    stand_in.reason = Some(format!(
                        "its stores did not give its figures within {} s (slow or hanging); shown without them",
                        CARD_TIMEOUT.as_secs()
                    ));
                    stand_in
                }
            }
        }))
        .await;
    cards.extend(
        state
            .jobs
            .bridges
            .iter()
            .map(|b| bridge::routes::card(state, b)),
    );
    let window = std::time::Duration::from_secs(60);
    let now = chrono::Utc::now().timestamp_millis();
    for card in &mut cards {
        if let Some(chart) = card.charts.iter().find(|c| c.show == "rate") {
            card.throughput = state.history.rate(chart.metric, window, now);
        }
    }
    cards
}

/// The configured jobs' part of `/healthz`: `false` when a service one of them needs fails.
pub async fn health(state: &AppState, body: &mut serde_json::Value) -> bool {
    let mut healthy = true;
    // A store that hangs makes its job unhealthy within the time limit, not the check endless.
    if let Some(tier) = &state.jobs.tier {
        let mut part = serde_json::json!({});
        let ok = tokio::time::timeout(CARD_TIMEOUT, tier::routes::health(tier, &mut part)).await;
        healthy &= ok.unwrap_or_else(|_| {
            part["tier"] = serde_json::json!("no answer within 5 s");
            false
        });
        merge(body, part);
    }
    if let Some(events) = &state.jobs.events {
        let mut part = serde_json::json!({});
        let check = events::routes::health(events, &mut part);
        let ok = tokio::time::timeout(CARD_TIMEOUT, check).await;
        healthy &= ok.unwrap_or_else(|_| {
            part["events"] = serde_json::json!("no answer within 5 s");
            false
        });
        merge(body, part);
    }
    if !state.jobs.bridges.is_empty() {
        healthy &= bridge::routes::health(&state.jobs.bridges, body);
    }
    healthy
}

/// Copies the fields of `part` into `body`.
fn merge(body: &mut serde_json::Value, part: serde_json::Value) {
    if let (Some(b), serde_json::Value::Object(p)) = (body.as_object_mut(), part) {
        b.extend(p);
    }
}

/// Starts what the configured jobs run inside `ferry serve` (the tier scheduler and sampler,
/// the events relay, the bridges) until `stop`.
pub fn spawn_services(
    state: &Arc<AppState>,
    options: &ServeOptions,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = tier::service::spawn(state, options, stop);
    if let Some(ctx) = &state.jobs.events {
        let switch = state.switches.register(events::service::JOB);
        tasks.extend(events::service::spawn(ctx.clone(), switch, stop));
    }
    for b in &state.jobs.bridges {
        let switch = state
            .switches
            .register(&bridge::service::job_id(&b.options.name));
        tasks.push(bridge::service::spawn(b.clone(), switch, stop));
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jobs_metric_names_follow_the_convention_and_are_unique() {
        let all = metric_names();
        let mut names: Vec<_> = all.iter().map(|(name, _, _)| *name).collect();
        for (name, _, kind) in &all {
            ferry_core::telemetry::check_convention(name, *kind).unwrap();
        }
        names.extend(ferry_core::telemetry::Metric::ALL.iter().map(|m| m.name()));
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a metric name is declared twice");
    }
}
