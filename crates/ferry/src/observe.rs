//! Logs, metrics and progress: one place that sets them up.

use std::time::Duration;

use ferry_core::telemetry::{Kind, Metric};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global `tracing` subscriber writing to stderr. `level` is an `EnvFilter`
/// directive such as `info` or `ferry=debug`; `RUST_LOG` overrides it.
pub fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Describes every metric to the installed recorder (`ferry serve` installs the Prometheus
/// one; without a recorder the metric macros cost nothing).
pub fn describe_metrics() {
    let shared = Metric::ALL.iter().map(|m| (m.name(), m.help(), m.kind()));
    for (name, help, kind) in shared.chain(crate::jobs::metric_names()) {
        match kind {
            Kind::Histogram => metrics::describe_histogram!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Counter => metrics::describe_counter!(name, help),
        }
    }
}

/// A progress bar with rate and ETA on a terminal; hidden otherwise (then [`Progress`] logs a
/// line every 10 seconds instead).
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    tty: bool,
    last_log: std::time::Instant,
    what: &'static str,
}

impl Progress {
    /// A progress display for `total` items (an estimate; 0 when unknown).
    pub fn new(what: &'static str, total: u64) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = if tty {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(what);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        } else {
            ProgressBar::hidden()
        };
        Self {
            bar,
            tty,
            last_log: std::time::Instant::now(),
            what,
        }
    }

    /// Advances by `n` items.
    pub fn inc(&mut self, n: u64) {
        self.bar.inc(n);
        if !self.tty && self.last_log.elapsed() >= Duration::from_secs(10) {
            self.last_log = std::time::Instant::now();
            tracing::info!(what = self.what, done = self.bar.position(), "progress");
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Serves the process's Prometheus metrics at `http://ADDR/metrics` until `stop`, so that a
/// long command-line run (`ferry keys apply --metrics-listen …`) can be scraped like
/// `ferry serve`. Returns once the port is bound; the server runs on a background task.
pub async fn serve_metrics(
    addr: std::net::SocketAddr,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<std::net::SocketAddr> {
    use axum::http::header;
    let Some(handle) = crate::server::prometheus() else {
        return Err(std::io::Error::other(
            "another metrics recorder is installed in this process",
        ));
    };
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every `ferry_…` name in `text`.
    fn names_in(text: &str) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("ferry_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
        names
    }

    /// The queries of a Grafana dashboard, every panel's targets.
    fn dashboard_queries(text: &str) -> String {
        let dashboard: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
        let mut out = String::new();
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push_str(target["expr"].as_str().expect("expr"));
                out.push('\n');
            }
        }
        out
    }

    /// The `expr` of every alerting rule.
    fn alert_queries(text: &str) -> String {
        let rules: serde_json::Value = serde_yaml_ng::from_str(text).expect("valid YAML");
        let mut out = String::new();
        for group in rules["groups"].as_array().expect("groups") {
            for rule in group["rules"].as_array().expect("rules") {
                assert!(rule["alert"].is_string(), "every rule is an alert: {rule}");
                out.push_str(rule["expr"].as_str().expect("expr"));
                out.push('\n');
            }
        }
        out
    }

    #[test]
    fn the_grafana_dashboards_and_alert_rules_use_only_metrics_ferry_exports() {
        let exported: BTreeSet<&str> = crate::server::exported_metric_names().into_iter().collect();
        let docs = [
            (
                "docs/grafana/ferry.json",
                dashboard_queries(include_str!("../../../docs/grafana/ferry.json")),
                30,
            ),
            (
                "docs/grafana/ferry-vectors.json",
                dashboard_queries(include_str!("../../../docs/grafana/ferry-vectors.json")),
                10,
            ),
            (
                "docs/prometheus/alerts.yml",
                alert_queries(include_str!("../../../docs/prometheus/alerts.yml")),
                8,
            ),
        ];
        for (file, queries, at_least) in docs {
            let names = names_in(&queries);
            assert!(names.len() >= at_least, "{file}: {names:?}");
            for name in &names {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                assert!(
                    exported.contains(name.as_str()) || exported.contains(base),
                    "{file} uses {name}, which ferry does not export"
                );
            }
        }
    }

    #[test]
    fn the_overview_dashboard_has_a_row_per_job() {
        let text = include_str!("../../../docs/grafana/ferry.json");
        let dashboard: serde_json::Value = serde_json::from_str(text).unwrap();
        let rows: Vec<&str> = dashboard["panels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["type"] == "row")
            .filter_map(|p| p["title"].as_str())
            .collect();
        for job in ["keys", "tier", "events", "bridge", "vectors", "agentdb"] {
            assert!(rows.contains(&job), "no row for {job}: {rows:?}");
        }
    }
}
