//! The bridge job's metric names; every one is labelled with the bridge's `bridge` name.

ferry_core::metric_names! {
    /// What the bridge job counts.
    pub enum BridgeMetric {
        /// Messages read from the source, by `bridge`.
        MessagesInTotal => (Counter, "ferry_bridge_messages_in_total", "Messages read from the source (Kafka records or Stream entries)."),
        /// Messages written to the destination, by `bridge`.
        MessagesOutTotal => (Counter, "ferry_bridge_messages_out_total", "Messages written to the destination."),
        /// Bytes read, by `bridge`.
        BytesInTotal => (Counter, "ferry_bridge_bytes_in_total", "Bytes of the messages read (key, value, headers)."),
        /// Bytes written, by `bridge`.
        BytesOutTotal => (Counter, "ferry_bridge_bytes_out_total", "Bytes of the message values written."),
        /// Messages delivered again and not written twice, by `bridge`.
        DuplicatesSkippedTotal => (Counter, "ferry_bridge_duplicates_skipped_total", "Messages delivered again (after a crash or rebalance) and not written twice."),
        /// Messages moved to the dead-letter Stream, by `bridge`.
        DeadLettersTotal => (Counter, "ferry_bridge_dead_letters_total", "Messages moved to the dead-letter Stream."),
        /// Failed attempts, retried, by `bridge`.
        RetriesTotal => (Counter, "ferry_bridge_retries_total", "Failed attempts to write or commit, retried."),
        /// Time to transform and write one batch, by `bridge`.
        BatchSeconds => (Histogram, "ferry_bridge_batch_seconds", "Time to transform and write one batch."),
        /// Records not yet bridged, by `bridge` and `partition`.
        ConsumerLag => (Gauge, "ferry_bridge_consumer_lag_messages", "Records of a partition not yet bridged."),
        /// Image bytes before / after re-encoding, by `bridge`.
        CompressionRatio => (Gauge, "ferry_bridge_compression_ratio", "Frame image bytes before re-encoding divided by bytes after."),
        /// 1 while consuming is paused for backpressure, by `bridge`.
        Paused => (Gauge, "ferry_bridge_paused", "1 while consuming is paused because the Stream or Redis is over its limit."),
    }
}
