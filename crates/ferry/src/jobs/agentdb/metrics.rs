//! The agentdb job's metric names.

ferry_core::metric_names! {
    /// What the agentdb job counts.
    pub enum AgentDbMetric {
        /// Redis items read, by `kind` (experiences, q_values, policy).
        ItemsReadTotal => (Counter, "ferry_agentdb_items_read_total", "Redis items read, by kind."),
        /// Rows inserted or changed in PostgreSQL, by `kind`.
        RowsWrittenTotal => (Counter, "ferry_agentdb_rows_written_total", "Rows inserted or changed in PostgreSQL, by kind."),
        /// Items that could not be moved (bad records, keys of the wrong type), by `kind`.
        FailedItemsTotal => (Counter, "ferry_agentdb_failed_items_total", "Items that could not be moved, by kind."),
        /// Batches committed (rows and checkpoints in one transaction).
        BatchesTotal => (Counter, "ferry_agentdb_batches_total", "Batches committed with their checkpoints."),
        /// Duration of one batch's transaction (COPY, INSERT, checkpoints, COMMIT).
        CommitSeconds => (Histogram, "ferry_agentdb_commit_seconds", "Duration of one batch transaction."),
        /// Keys whose Redis count differs from PostgreSQL's after the run, by `kind`.
        ValidationMismatchesTotal => (Counter, "ferry_agentdb_validation_mismatches_total", "Keys whose counts differ between Redis and PostgreSQL, by kind."),
    }
}
