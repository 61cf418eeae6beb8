//! `ferry serve`'s own metric names (the jobs declare theirs in their `metrics.rs`).

ferry_core::metric_names! {
    /// What `ferry serve` itself reports.
    pub enum ServeMetric {
        /// 1 while a job is paused from the dashboard or the API, by `job`.
        JobPaused => (Gauge, "ferry_serve_job_paused", "1 while a job is paused through the API, by job."),
    }
}

/// Records whether `job` is paused (`ferry_serve_job_paused{job}` = 1 or 0).
pub fn set_job_paused(job: &str, paused: bool) {
    metrics::gauge!(ServeMetric::JobPaused.name(), "job" => job.to_string()).set(if paused {
        1.0
    } else {
        0.0
    });
}
