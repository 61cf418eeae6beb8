//! The service's own metric history: a short in-memory ring of samples of everything `/metrics`
//! shows, taken every few seconds, so the dashboard draws charts without a Prometheus server.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// One sample: when, and the value of every series (`name{labels}` as `/metrics` prints it).
#[derive(Debug)]
struct Sample {
    t_ms: i64,
    values: HashMap<Arc<str>, f64>,
}

/// The ring of samples (oldest first), shared by the sampler and the handlers.
#[derive(Debug)]
pub struct MetricHistory {
    interval: Duration,
    capacity: usize,
    samples: Mutex<VecDeque<Sample>>,
}

/// One series' points over the ring.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Series {
    /// The metric name.
    pub metric: String,
    /// Its labels as printed (`{job="tier"}`, empty for none).
    pub labels: String,
    /// `[unix ms, value]`, oldest first.
    pub points: Vec<(i64, f64)>,
}

/// The series `/metrics` text holds: `(name{labels}, value)` per sample line.
pub fn parse_exposition(text: &str) -> Vec<(&str, f64)> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.trim_end(), value.parse::<f64>().ok()?))
        })
        .collect()
}

/// Where a series' labels begin.
const LABELS_OPEN: char = '{';

/// The metric name of a series (`a{b="c"}` → `a`).
fn metric_of(series: &str) -> &str {
    series.split_once(LABELS_OPEN).map_or(series, |(m, _)| m)
}

impl MetricHistory {
    /// An empty ring of `capacity` samples taken every `interval`.
    pub fn new(interval: Duration, capacity: usize) -> Self {
        MetricHistory {
            interval,
            capacity: capacity.max(2),
            samples: Mutex::new(VecDeque::new()),
        }
    }

    /// A ring reaching `span` back at one sample every `interval` (between 60 and 10,000
    /// samples: a very short interval reaches back less).
    pub fn covering(span: Duration, interval: Duration) -> Self {
        let n = span.as_secs_f64() / interval.as_secs_f64().max(1e-3);
        Self::new(interval, (n.ceil() as usize).clamp(60, 10_000))
    }

    /// Time between samples.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Adds a sample of `/metrics` text taken at `t_ms`, dropping the oldest beyond capacity.
    pub fn record(&self, t_ms: i64, text: &str) {
        let values = parse_exposition(text)
            .into_iter()
            .filter(|(s, _)| s.starts_with("ferry_"))
            .map(|(s, v)| (Arc::from(s), v))
            .collect();
        let mut ring = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        ring.push_back(Sample { t_ms, values });
        while ring.len() > self.capacity {
            ring.pop_front();
        }
    }

    /// The points of every series of the metrics `names` (a summary's `name{quantile=…}` lines
    /// belong to `name`; ask for `name_sum` or `name_count` by those names) since `since_ms`.
    pub fn series(&self, names: &[&str], since_ms: i64) -> Vec<Series> {
        let ring = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Series> = Vec::new();
        let mut index: HashMap<Arc<str>, usize> = HashMap::new();
        for sample in ring.iter().filter(|s| s.t_ms >= since_ms) {
            for (series, value) in &sample.values {
                if !names.contains(&metric_of(series)) {
                    continue;
                }
                let i = *index.entry(series.clone()).or_insert_with(|| {
                    let metric = metric_of(series).to_string();
                    let labels = series[metric.len()..].to_string();
                    out.push(Series {
                        metric,
                        labels,
                        points: Vec::new(),
                    });
                    out.len() - 1
                });
                out[i].points.push((sample.t_ms, *value));
            }
        }
        out.sort_by(|a, b| (&a.metric, &a.labels).cmp(&(&b.metric, &b.labels)));
        out
    }

    /// The per-second increase of counter `metric` (all its series summed) over the last
    /// `window`, `None` with fewer than two samples in it. A counter that went down (a restart)
    /// counts from its new value.
    pub fn rate(&self, metric: &str, window: Duration, now_ms: i64) -> Option<f64> {
        let since = now_ms - window.as_millis() as i64;
        let series = self.series(&[metric], since);
        let mut increase = 0.0;
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        for s in &series {
            for pair in s.points.windows(2) {
                let (a, b) = (pair[0].1, pair[1].1);
                increase += if b >= a { b - a } else { b };
            }
            if let (Some(f), Some(l)) = (s.points.first(), s.points.last()) {
                first = first.min(f.0);
                last = last.max(l.0);
            }
        }
        if first > last {
            return None;
        }
        let span = (last - first) as f64 / 1000.0;
        (span > 0.0).then(|| increase / span)
    }

    /// When `metric` (all its series summed) last changed, in Unix ms, within the ring.
    pub fn last_change(&self, metric: &str) -> Option<i64> {
        let ring = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let sum = |s: &Sample| -> f64 {
            s.values
                .iter()
                .filter(|(k, _)| metric_of(k) == metric)
                .map(|(_, v)| *v)
                .sum()
        };
        let sums: Vec<(i64, f64)> = ring.iter().map(|s| (s.t_ms, sum(s))).collect();
        sums.windows(2)
            .rev()
            .find(|w| w[1].1 != w[0].1)
            .map(|w| w[1].0)
    }

    /// The newest value of each series of `metric`, summed (`None` when it was never seen).
    pub fn latest(&self, metric: &str) -> Option<f64> {
        let ring = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let newest = ring.back()?;
        let values: Vec<f64> = newest
            .values
            .iter()
            .filter(|(s, _)| metric_of(s) == metric)
            .map(|(_, v)| *v)
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    /// Samples `handle` every interval until `stop`.
    pub async fn run(self: Arc<Self>, handle: PrometheusHandle, stop: CancellationToken) {
        loop {
            handle.run_upkeep();
            self.record(chrono::Utc::now().timestamp_millis(), &handle.render());
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP ferry_a_total A.\n# TYPE ferry_a_total counter\n\
        ferry_a_total{job=\"x\"} 10\nferry_a_total{job=\"y\"} 5\n\
        ferry_lag_seconds{quantile=\"0.99\"} 0.25\nferry_lag_seconds_sum 3\n\
        other_metric 1\nbroken line\n";

    #[test]
    fn parses_sample_lines_and_skips_the_rest() {
        let parsed = parse_exposition(TEXT);
        assert_eq!(parsed.len(), 5, "{parsed:?}");
        assert_eq!(parsed[0], ("ferry_a_total{job=\"x\"}", 10.0));
        assert_eq!(parse_exposition("x{a=\"b c\"} +Inf")[0].1, f64::INFINITY);
    }

    #[test]
    fn keeps_a_bounded_ring_and_computes_rates_across_a_reset() {
        let h = MetricHistory::new(Duration::from_secs(1), 3);
        h.record(0, TEXT);
        h.record(1000, &TEXT.replace("} 10", "} 20"));
        h.record(2000, &TEXT.replace("} 10", "} 30"));
        // A restart: the counter starts again from 4.
        h.record(3000, &TEXT.replace("} 10", "} 4"));
        let s = h.series(&["ferry_a_total"], 0);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels, "{job=\"x\"}");
        assert_eq!(s[0].points, vec![(1000, 20.0), (2000, 30.0), (3000, 4.0)]);
        // x: +10 then +4 (after the reset); y: flat; over 2 s.
        assert_eq!(
            h.rate("ferry_a_total", Duration::from_secs(10), 3000),
            Some(7.0)
        );
        assert_eq!(h.latest("ferry_a_total"), Some(9.0));
        assert_eq!(h.last_change("ferry_a_total"), Some(3000));
        assert_eq!(h.last_change("ferry_lag_seconds"), None, "never changed");
        let lag = h.series(&["ferry_lag_seconds"], 0);
        assert_eq!(
            lag.len(),
            1,
            "the summary's _sum is another metric: {lag:?}"
        );
        assert!(
            h.series(&["other_metric"], 0).is_empty(),
            "only ferry_ series are kept"
        );
        assert_eq!(
            h.rate("ferry_missing_total", Duration::from_secs(10), 3000),
            None
        );
    }
}
