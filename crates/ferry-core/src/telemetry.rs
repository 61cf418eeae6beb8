//! Names of the metrics Ferry emits: `ferry_<subsystem>_<what>_<unit>`, counters end in
//! `_total`; labels stay low-cardinality (`job`, `stage`, `rule`, `outcome`), never a key name.

/// Every metric Ferry emits, in one place so names cannot drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Keys returned by SCAN (label `job`).
    KeysScannedTotal,
    /// Keys handled, by `rule` and `outcome` (migrated, skipped_existing, vanished, failed, unmatched).
    KeysProcessedTotal,
    /// Value bytes copied (label `job`).
    KeysBytesTotal,
    /// Duration of one pipelined batch, by `stage`.
    BatchDurationSeconds,
    /// Checkpoints saved (label `job`).
    CheckpointsSavedTotal,
    /// Errors by `job`, `stage` and `error_type`.
    ErrorsTotal,
}

impl Metric {
    /// Every metric, for describing them to the exporter.
    pub const ALL: [Metric; 6] = [
        Metric::KeysScannedTotal,
        Metric::KeysProcessedTotal,
        Metric::KeysBytesTotal,
        Metric::BatchDurationSeconds,
        Metric::CheckpointsSavedTotal,
        Metric::ErrorsTotal,
    ];

    /// The Prometheus name.
    pub const fn name(self) -> &'static str {
        match self {
            Metric::KeysScannedTotal => "ferry_keys_scanned_total",
            Metric::KeysProcessedTotal => "ferry_keys_processed_total",
            Metric::KeysBytesTotal => "ferry_keys_copied_bytes_total",
            Metric::BatchDurationSeconds => "ferry_batch_duration_seconds",
            Metric::CheckpointsSavedTotal => "ferry_checkpoints_saved_total",
            Metric::ErrorsTotal => "ferry_errors_total",
        }
    }

    /// One line of help text.
    pub const fn help(self) -> &'static str {
        match self {
            Metric::KeysScannedTotal => "Keys returned by SCAN on the source.",
            Metric::KeysProcessedTotal => "Keys handled, by rule and outcome.",
            Metric::KeysBytesTotal => "Bytes of values copied to the target.",
            Metric::BatchDurationSeconds => "Duration of one pipelined batch, by stage.",
            Metric::CheckpointsSavedTotal => "Checkpoints saved.",
            Metric::ErrorsTotal => "Errors, by job, stage and error type.",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Metric;

    #[test]
    fn metric_names_follow_the_convention() {
        for m in Metric::ALL {
            let name = m.name();
            assert!(name.starts_with("ferry_"), "{name}");
            assert!(!name.contains("__"), "{name}");
            let counter = matches!(
                m,
                Metric::KeysScannedTotal
                    | Metric::KeysProcessedTotal
                    | Metric::KeysBytesTotal
                    | Metric::CheckpointsSavedTotal
                    | Metric::ErrorsTotal
            );
            assert_eq!(counter, name.ends_with("_total"), "{name}");
        }
    }
}
