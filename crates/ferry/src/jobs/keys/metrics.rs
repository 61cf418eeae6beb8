//! The keys job's metric names.

ferry_core::metric_names! {
    /// What the keys job counts.
    pub enum KeysMetric {
        /// Keys returned by SCAN (label `job`).
        ScannedTotal => (Counter, "ferry_keys_scanned_total", "Keys returned by SCAN on the source."),
        /// Keys handled, by `rule` and `outcome` (migrated, skipped_existing, vanished, failed,
        /// unmatched).
        ProcessedTotal => (Counter, "ferry_keys_processed_total", "Keys handled, by rule and outcome."),
        /// Value bytes copied (label `job`).
        BytesTotal => (Counter, "ferry_keys_copied_bytes_total", "Bytes of values copied to the target."),
    }
}
