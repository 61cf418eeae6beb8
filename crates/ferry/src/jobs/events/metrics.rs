//! The events job's metric names.

ferry_core::metric_names! {
    /// What the events job counts.
    pub enum EventsMetric {
        /// Events stored by the events job, by `source` (api, library, stream).
        SavedTotal => (Counter, "ferry_events_saved_total", "Events stored in PostgreSQL, by source."),
        /// Events refused as bad input, by `source`.
        RejectedTotal => (Counter, "ferry_events_rejected_total", "Events refused as bad input, by source."),
        /// Events published on Redis and marked published.
        PublishedTotal => (Counter, "ferry_events_published_total", "Events published on Redis and marked published."),
        /// Time from an event's commit to its publication.
        PublishLagSeconds => (Histogram, "ferry_events_publish_lag_seconds", "Time from an event's commit to its publication."),
        /// Events stored but not yet published (sampled by `ferry serve`).
        OutboxBacklog => (Gauge, "ferry_events_outbox_backlog", "Events stored but not yet published (sampled)."),
        /// Age of the oldest unpublished event (sampled by `ferry serve`).
        OutboxOldestSeconds => (Gauge, "ferry_events_outbox_oldest_seconds", "Age of the oldest event not yet published, seconds (sampled)."),
        /// Relay or ingest attempts that failed and are retried, by `stage`.
        RetriesTotal => (Counter, "ferry_events_retries_total", "Failed relay or ingest attempts, retried, by stage."),
    }
}
