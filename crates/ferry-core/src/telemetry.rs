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
    /// Captions read from Redis by the tier job.
    TierCaptionsReadTotal,
    /// Captions merged into events that were stored.
    TierCaptionsMigratedTotal,
    /// Events written to the durable store (inserted or extended).
    TierEventsWrittenTotal,
    /// Caption entries deleted from Redis after their events were stored.
    TierEntriesDeletedTotal,
    /// Entries that could not be read as captions (left in Redis).
    TierMalformedTotal,
    /// Tier passes, by `outcome` (ok, failed).
    TierPassesTotal,
    /// Duration of one tier pass.
    TierPassDurationSeconds,
    /// Captions waiting in Redis, sampled by the statistics task.
    TierCaptionsPending,
    /// Events stored by the events job, by `source` (api, library, stream).
    EventsSavedTotal,
    /// Events refused as bad input, by `source`.
    EventsRejectedTotal,
    /// Events published on Redis and marked published.
    EventsPublishedTotal,
    /// Time from an event's commit to its publication.
    EventsPublishLagSeconds,
    /// Relay or ingest attempts that failed and are retried, by `stage`.
    EventsRetriesTotal,
}

impl Metric {
    /// Every metric, for describing them to the exporter.
    pub const ALL: [Metric; 19] = [
        Metric::KeysScannedTotal,
        Metric::KeysProcessedTotal,
        Metric::KeysBytesTotal,
        Metric::BatchDurationSeconds,
        Metric::CheckpointsSavedTotal,
        Metric::ErrorsTotal,
        Metric::TierCaptionsReadTotal,
        Metric::TierCaptionsMigratedTotal,
        Metric::TierEventsWrittenTotal,
        Metric::TierEntriesDeletedTotal,
        Metric::TierMalformedTotal,
        Metric::TierPassesTotal,
        Metric::TierPassDurationSeconds,
        Metric::TierCaptionsPending,
        Metric::EventsSavedTotal,
        Metric::EventsRejectedTotal,
        Metric::EventsPublishedTotal,
        Metric::EventsPublishLagSeconds,
        Metric::EventsRetriesTotal,
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
            Metric::TierCaptionsReadTotal => "ferry_tier_captions_read_total",
            Metric::TierCaptionsMigratedTotal => "ferry_tier_captions_migrated_total",
            Metric::TierEventsWrittenTotal => "ferry_tier_events_written_total",
            Metric::TierEntriesDeletedTotal => "ferry_tier_entries_deleted_total",
            Metric::TierMalformedTotal => "ferry_tier_malformed_total",
            Metric::TierPassesTotal => "ferry_tier_passes_total",
            Metric::TierPassDurationSeconds => "ferry_tier_pass_duration_seconds",
            Metric::TierCaptionsPending => "ferry_tier_captions_pending",
            Metric::EventsSavedTotal => "ferry_events_saved_total",
            Metric::EventsRejectedTotal => "ferry_events_rejected_total",
            Metric::EventsPublishedTotal => "ferry_events_published_total",
            Metric::EventsPublishLagSeconds => "ferry_events_publish_lag_seconds",
            Metric::EventsRetriesTotal => "ferry_events_retries_total",
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
            Metric::TierCaptionsReadTotal => "Captions read from Redis by the tier job.",
            Metric::TierCaptionsMigratedTotal => "Captions merged into stored events.",
            Metric::TierEventsWrittenTotal => "Events written to the durable store.",
            Metric::TierEntriesDeletedTotal => "Caption entries deleted from Redis after commit.",
            Metric::TierMalformedTotal => "Entries that are not captions, left in Redis.",
            Metric::TierPassesTotal => "Tier passes, by outcome.",
            Metric::TierPassDurationSeconds => "Duration of one tier pass.",
            Metric::TierCaptionsPending => "Captions waiting in Redis (sampled).",
            Metric::EventsSavedTotal => "Events stored in PostgreSQL, by source.",
            Metric::EventsRejectedTotal => "Events refused as bad input, by source.",
            Metric::EventsPublishedTotal => "Events published on Redis and marked published.",
            Metric::EventsPublishLagSeconds => "Time from an event's commit to its publication.",
            Metric::EventsRetriesTotal => "Failed relay or ingest attempts, retried, by stage.",
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
                    | Metric::TierCaptionsReadTotal
                    | Metric::TierCaptionsMigratedTotal
                    | Metric::TierEventsWrittenTotal
                    | Metric::TierEntriesDeletedTotal
                    | Metric::TierMalformedTotal
                    | Metric::TierPassesTotal
                    | Metric::EventsSavedTotal
                    | Metric::EventsRejectedTotal
                    | Metric::EventsPublishedTotal
                    | Metric::EventsRetriesTotal
            );
            assert_eq!(counter, name.ends_with("_total"), "{name}");
        }
    }
}
