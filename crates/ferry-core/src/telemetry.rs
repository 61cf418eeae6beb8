//! Metric names: `ferry_<subsystem>_<what>_<unit>`, counters end in `_total`; labels stay
//! low-cardinality (`job`, `stage`, `rule`, `outcome`), never a key name.
//!
//! Each job declares its own metrics with [`crate::metric_names!`] in its folder
//! (`ferry::jobs::<job>::metrics`); [`Metric`] holds the ones every job shares.

/// What kind of metric a name is, for describing it to the exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; the name ends in `_total`.
    Counter,
    /// A sampled value.
    Gauge,
    /// A distribution (durations in seconds).
    Histogram,
}

/// Declares an enum of metric names, each with its kind, Prometheus name and help text, and
/// its `ALL`, `name()`, `help()` and `kind()`, so names cannot drift:
///
/// ```
/// ferry_core::metric_names! {
///     /// The example job's metrics.
///     pub enum ExampleMetric {
///         /// Things done.
///         DoneTotal => (Counter, "ferry_example_done_total", "Things done."),
///     }
/// }
/// assert_eq!(ExampleMetric::DoneTotal.name(), "ferry_example_done_total");
/// assert!(ferry_core::telemetry::check_convention(ExampleMetric::DoneTotal.name(), ExampleMetric::DoneTotal.kind()).is_ok());
/// ```
#[macro_export]
macro_rules! metric_names {
    (
        $(#[$attr:meta])*
        pub enum $set:ident {
            $( $(#[doc = $doc:literal])+ $metric:ident => ($kind:ident, $name:literal, $help:literal), )+
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $set {
            $( $(#[doc = $doc])+ $metric, )+
        }

        impl $set {
            /// Every metric of the set, for describing them to the exporter.
            pub const ALL: &'static [$set] = &[$($set::$metric),+];

            /// The Prometheus name.
            pub const fn name(self) -> &'static str {
                match self { $($set::$metric => $name),+ }
            }

            /// One line of help text.
            pub const fn help(self) -> &'static str {
                match self { $($set::$metric => $help),+ }
            }

            /// Counter, gauge or histogram.
            pub const fn kind(self) -> $crate::telemetry::Kind {
                match self { $($set::$metric => $crate::telemetry::Kind::$kind),+ }
            }
        }
    };
}

metric_names! {
    /// The metrics every job shares.
    pub enum Metric {
        /// Duration of one pipelined batch, by `stage`.
        BatchDurationSeconds => (Histogram, "ferry_batch_duration_seconds", "Duration of one pipelined batch, by stage."),
        /// Checkpoints saved (label `job`).
        CheckpointsSavedTotal => (Counter, "ferry_checkpoints_saved_total", "Checkpoints saved."),
        /// Errors by `job`, `stage` and `error_type`.
        ErrorsTotal => (Counter, "ferry_errors_total", "Errors, by job, stage and error type."),
    }
}

/// Checks a metric name against the convention: `ferry_` first, no empty part, `_total` on
/// counters and only on counters, `_seconds` on histograms.
pub fn check_convention(name: &str, kind: Kind) -> Result<(), String> {
    if !name.starts_with("ferry_") || name.contains("__") || name.ends_with('_') {
        return Err(format!("{name}: not ferry_<subsystem>_<what>_<unit>"));
    }
    if (kind == Kind::Counter) != name.ends_with("_total") {
        return Err(format!(
            "{name}: counters, and only counters, end in _total"
        ));
    }
    if kind == Kind::Histogram && !name.ends_with("_seconds") {
        return Err(format!("{name}: a histogram of durations ends in _seconds"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_metric_names_follow_the_convention() {
        for m in Metric::ALL {
            check_convention(m.name(), m.kind()).unwrap();
        }
        assert!(check_convention("ferry_x_total", Kind::Gauge).is_err());
        assert!(check_convention("ferry_x", Kind::Counter).is_err());
        assert!(check_convention("redis_x_total", Kind::Counter).is_err());
    }
}
