//! The tier job's metric names.

ferry_core::metric_names! {
    /// What the tier job counts.
    pub enum TierMetric {
        /// Captions read from Redis by the tier job.
        CaptionsReadTotal => (Counter, "ferry_tier_captions_read_total", "Captions read from Redis by the tier job."),
        /// Captions merged into events that were stored.
        CaptionsMigratedTotal => (Counter, "ferry_tier_captions_migrated_total", "Captions merged into stored events."),
        /// Events written to the durable store (inserted or extended).
        EventsWrittenTotal => (Counter, "ferry_tier_events_written_total", "Events written to the durable store."),
        /// Caption entries deleted from Redis after their events were stored.
        EntriesDeletedTotal => (Counter, "ferry_tier_entries_deleted_total", "Caption entries deleted from Redis after commit."),
        /// Entries that could not be read as captions (left in Redis).
        MalformedTotal => (Counter, "ferry_tier_malformed_total", "Entries that are not captions, left in Redis."),
        /// Tier passes, by `outcome` (ok, failed).
        PassesTotal => (Counter, "ferry_tier_passes_total", "Tier passes, by outcome."),
        /// Duration of one tier pass.
        PassDurationSeconds => (Histogram, "ferry_tier_pass_duration_seconds", "Duration of one tier pass."),
        /// Captions waiting in Redis, sampled by the statistics task.
        CaptionsPending => (Gauge, "ferry_tier_captions_pending", "Captions waiting in Redis (sampled)."),
        /// Age of the oldest caption waiting in Redis, over every camera (sampled).
        OldestPendingSeconds => (Gauge, "ferry_tier_oldest_pending_seconds", "Age of the oldest caption waiting in Redis, seconds (sampled)."),
    }
}
