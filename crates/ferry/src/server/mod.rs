//! `ferry serve`: runs the configured jobs — the tier job on a schedule, the events job's relay —
//! and serves the HTTP API (axum) with Prometheus metrics. A job that is not configured is not
//! started and loads nothing (no model without the tier job); its routes answer 404 saying so.
//! Several replicas may run against one Redis: per-camera leases make sure no camera is drained
//! by two of them at once.
//!
//! The API is guarded by one authentication layer over the whole router (`auth.rs`): an admin
//! token for everything, a read token for `GET`/`HEAD`; `/healthz` is always open. CPU-heavy work
//! (MiniLM embedding) runs on blocking threads so that requests and lease renewals are answered
//! while a pass runs.

pub mod args;
mod auth;
pub mod card;
pub mod command;
pub mod config;
mod dashboard;
pub mod error;
pub mod history;
pub mod metrics;
pub mod openapi;
pub mod params;
mod router;
mod state;
pub mod switches;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use ferry_core::error::{Classify, ErrorClass};
use ferry_core::secret::{ExposeSecret, Secret};

pub use auth::{ALWAYS_OPEN, Access, BearerAuth, OPEN_PREFIXES, auth_layer, is_read_method};
pub use router::{app, routes};
pub use state::{AppState, Endpoint};
pub use switches::{JobSwitch, JobSwitches};

/// Checked options of `ferry serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// The admin bearer token: may call every endpoint (`{:?}` shows `[REDACTED]`).
    pub token: Option<Secret>,
    /// The read-only bearer token: `GET` and `HEAD` endpoints only.
    pub read_token: Option<Secret>,
    /// `/metrics` answers without a token (it always does when no token is set).
    pub metrics_public: bool,
    /// Serve without any token on an address other than loopback (`--insecure`).
    pub insecure: bool,
    /// Time between tier passes.
    pub interval: Duration,
    /// Time between statistics samples.
    pub stats_interval: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// `GET` and `HEAD` requests answer without a token (a read-only dashboard for everyone
    /// who can reach the server); changes still need the admin token.
    pub public_read: bool,
    /// Time between samples of the metric history the dashboard draws.
    pub history_interval: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            read_token: None,
            metrics_public: false,
            insecure: false,
            interval: Duration::from_secs(60),
            stats_interval: Duration::from_secs(300),
            max_body_bytes: 1 << 20,
            public_read: false,
            history_interval: Duration::from_secs(5),
        }
    }
}

/// Options of `ferry serve` that must not be used as they are. A user error (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ServeConfigError {
    /// A token set to the empty string (it would not protect anything).
    #[error(
        "the {0} is empty: an empty token is refused rather than taken as \"no authentication\"; \
         set a token or remove the setting"
    )]
    EmptyToken(&'static str),
    /// A token that starts or ends with white space (a header value is trimmed, so it could
    /// never match).
    #[error(
        "the {0} starts or ends with white space, which no Authorization header can carry: \
         remove it (a stray newline from a file or a variable is the usual cause)"
    )]
    PaddedToken(&'static str),
    /// A read token without an admin token.
    #[error(
        "a read token is set but no admin token: set the admin token too (FERRY_SERVE_TOKEN, \
         --token or [serve] token)"
    )]
    ReadTokenAlone,
    /// Both tokens have the same value (read-token holders would be admins).
    #[error("the read token is the same as the admin token: give each its own value")]
    SameTokens,
    /// No token, and an address other machines can reach.
    #[error(
        "refusing to serve the API without authentication on {0}, which is not a loopback \
         address: set an admin token (FERRY_SERVE_TOKEN, --token or [serve] token), listen on \
         127.0.0.1, or pass --insecure to serve it open anyway"
    )]
    OpenOnNetwork(SocketAddr),
}

impl Classify for ServeConfigError {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}

impl ServeOptions {
    /// Checks the tokens and the address: no empty token, no read token without an admin token
    /// or equal to it, and no open API on an address other than loopback unless `insecure`.
    pub fn check(&self) -> Result<(), ServeConfigError> {
        let empty = |t: &Option<Secret>| t.as_ref().is_some_and(|t| t.expose_secret().is_empty());
        if empty(&self.token) {
            return Err(ServeConfigError::EmptyToken("admin token"));
        }
        if empty(&self.read_token) {
            return Err(ServeConfigError::EmptyToken("read token"));
        }
        let padded = |t: &Option<Secret>| {
            t.as_ref()
                .is_some_and(|t| t.expose_secret().trim() != t.expose_secret())
        };
        if padded(&self.token) {
            return Err(ServeConfigError::PaddedToken("admin token"));
        }
        if padded(&self.read_token) {
            return Err(ServeConfigError::PaddedToken("read token"));
        }
        match (&self.token, &self.read_token) {
            (None, Some(_)) => return Err(ServeConfigError::ReadTokenAlone),
            (Some(a), Some(r)) if a.expose_secret() == r.expose_secret() => {
                return Err(ServeConfigError::SameTokens);
            }
            _ => {}
        }
        if self.token.is_none() && !self.listen.ip().is_loopback() && !self.insecure {
            return Err(ServeConfigError::OpenOnNetwork(self.listen));
        }
        Ok(())
    }
}

/// Every metric name Ferry exports: the shared ones and every job's.
pub fn exported_metric_names() -> Vec<&'static str> {
    let shared = ferry_core::telemetry::Metric::ALL.iter().map(|m| m.name());
    shared
        .chain(crate::jobs::metric_names().into_iter().map(|(n, _, _)| n))
        .collect()
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().ok();
            crate::observe::describe_metrics();
            handle
        })
        .clone()
}

/// Runs the HTTP server with the jobs that are configured — the tier job's scheduler and
/// statistics sampler, the events job's relay, the bridges — until `stop` is cancelled, then waits for a
/// running pass to finish. Prints the bound address (`listening on …`).
pub async fn serve(
    options: ServeOptions,
    jobs: crate::jobs::Served,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    options.check()?;
    if options.token.is_none() {
        tracing::warn!(
            listen = %options.listen,
            "no token set: every endpoint of the API is open to whoever can reach it"
        );
    }
    let metrics = prometheus();
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", options.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    // A service must not stop because its standard output went away (a closed pipe, a
    // supervisor that restarted its log reader): the line is for whoever listens, logs go to
    // stderr.
    let _ = writeln!(std::io::stdout().lock(), "listening on http://{addr}");
    let state = Arc::new(AppState::with_jobs(
        jobs,
        options.clone(),
        metrics,
        stop.clone(),
    ));
    let mut tasks = crate::jobs::spawn_services(&state, &options, &stop);
    if let Some(handle) = &state.metrics {
        let history = state.history.clone().run(handle.clone(), stop.clone());
        tasks.push(tokio::spawn(history));
    }
    let shutdown = stop.clone();
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(())
}
