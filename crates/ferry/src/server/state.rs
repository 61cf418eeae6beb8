//! What every handler shares: the configured jobs' contexts, the server's options and its
//! stop signal.

use std::sync::Arc;

use axum::http::Method;
use axum::routing::MethodRouter;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use super::ServeOptions;
use super::history::MetricHistory;
use super::switches::JobSwitches;
use crate::jobs::Served;
use crate::jobs::events::EventsContext;
use crate::jobs::tier::TierContext;

/// How long the metric history reaches back.
const HISTORY_SPAN: std::time::Duration = std::time::Duration::from_secs(3600);

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The configured jobs (the list is [`crate::jobs::Served`]).
    pub jobs: Served,
    pub(crate) options: ServeOptions,
    pub(crate) max_body_bytes: usize,
    pub(crate) metrics: Option<PrometheusHandle>,
    /// The pause switches of the jobs this server runs.
    pub switches: JobSwitches,
    /// The service's own metric history (the dashboard's charts).
    pub history: Arc<MetricHistory>,
    stop: CancellationToken,
}

impl AppState {
    /// State for [`super::app`] with the tier job only (add others with the `with_` methods).
    pub fn new(
        tier: Option<TierContext>,
        options: ServeOptions,
        metrics: Option<PrometheusHandle>,
        stop: CancellationToken,
    ) -> Self {
        let jobs = Served {
            tier,
            ..Served::default()
        };
        Self::with_jobs(jobs, options, metrics, stop)
    }

    /// State for [`super::app`] running or watching `jobs`.
    pub fn with_jobs(
        jobs: Served,
        options: ServeOptions,
        metrics: Option<PrometheusHandle>,
        stop: CancellationToken,
    ) -> Self {
        AppState {
            jobs,
            max_body_bytes: options.max_body_bytes,
            switches: JobSwitches::default(),
            history: Arc::new(MetricHistory::covering(
                HISTORY_SPAN,
                options.history_interval,
            )),
            options,
            metrics,
            stop,
        }
    }

    /// Cancelled when the server stops (ends long-lived responses such as the live view).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Adds the configured bridges.
    pub fn with_bridges(mut self, bridges: Vec<crate::jobs::bridge::BridgeOptions>) -> Self {
        self.jobs.bridges = bridges
            .into_iter()
            .map(|o| Arc::new(crate::jobs::bridge::service::ServedBridge::new(o)))
            .collect();
        self
    }

    /// Adds the events job's endpoints.
    pub fn with_events(mut self, events: Arc<EventsContext>) -> Self {
        self.jobs.events = Some(events);
        self
    }
}

/// One endpoint: its method, its path and its handler.
pub type Endpoint = (Method, &'static str, MethodRouter<Arc<AppState>>);
