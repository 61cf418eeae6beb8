//! The vectors job's metric names (a test in `observe.rs` checks that docs/grafana/ferry-vectors.json uses
//! only these).

ferry_core::metric_names! {
    /// What the vectors job counts.
    pub enum VectorsMetric {
        /// Items read from the source.
        ItemsReadTotal => (Counter, "ferry_vectors_items_read_total", "Items read from the source."),
        /// Vectors written to the target.
        ItemsWrittenTotal => (Counter, "ferry_vectors_items_written_total", "Vectors written to the target."),
        /// Items that failed (invalid embedding, wrong dimension, refused by the target).
        ItemsFailedTotal => (Counter, "ferry_vectors_items_failed_total", "Items that could not be copied (invalid embedding, wrong dimension, refused by the target)."),
        /// Items without an embedding.
        ItemsMissingTotal => (Counter, "ferry_vectors_items_missing_embedding_total", "Items read that have no embedding."),
        /// Failed store calls, retried.
        RetriesTotal => (Counter, "ferry_vectors_retries_total", "Failed reads or writes, retried."),
        /// Time to read, write and commit one batch.
        BatchSeconds => (Histogram, "ferry_vectors_batch_seconds", "Time to copy one batch (read, upsert, commit)."),
        /// Items the migration has handled.
        MigrationDoneItems => (Gauge, "ferry_vectors_migration_done_items", "Items of the running migration handled so far (over every run)."),
        /// Items in the source when the migration was planned.
        MigrationTotalItems => (Gauge, "ferry_vectors_migration_total_items", "Items in the source when the migration was planned."),
        /// Items compared by the last validation, by `result` (match, mismatch, missing, orphan).
        ValidationItems => (Gauge, "ferry_vectors_validation_items", "Items compared by the last validation, by result (match, mismatch, missing, orphan)."),
        /// Share of matching items in the last validation.
        ValidationSuccessRatio => (Gauge, "ferry_vectors_validation_success_ratio", "Share of items that matched in the last validation (0..1)."),
    }
}
