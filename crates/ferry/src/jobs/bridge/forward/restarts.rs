//! Before a partition's first write: did its topic start over, did Redis lose entries?

use super::*;

impl Forward<'_> {
    /// Looks, once per partition and assignment, at where its records start against what the
    /// offsets hash records, before they are written:
    ///
    /// - records at or below the last offset written are normally a batch delivered again (the
    ///   consumer starts at the group's committed offset, which the last write may be ahead
    ///   of). They are something else when the consumer starts below the committed offset, or
    ///   the group has none and the partition's first record differs from the first one
    ///   written (its timestamp): the topic was deleted and created again, or its broker lost
    ///   its data, and offsets started over. The partition's record is then forgotten, so its
    ///   records are bridged rather than skipped as written;
    /// - a committed offset beyond the last offset written + 1 means Redis lost entries after
    ///   they were acknowledged (a restore from an older snapshot, a failover to a replica that
    ///   lagged): said as an error in the log and the status; they cannot be read again.
    pub(super) async fn check_restarts(&mut self, out: &[Outgoing]) -> Result<(), BridgeError> {
        let generation = self.consumer.context().count();
        let mut first: BTreeMap<i32, &Outgoing> = BTreeMap::new();
        for o in out {
            let e = first.entry(o.partition).or_insert(o);
            if o.offset < e.offset {
                *e = o;
            }
        }
        first.retain(|p, _| self.checked.get(p) != Some(&generation));
        if first.is_empty() {
            return Ok(());
        }
        let consumer = self.consumer.clone();
        let topic = self.options.topic.clone();
        let partitions: Vec<i32> = first.keys().copied().collect();
        let committed = tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in partitions {
                tpl.add_partition(&topic, p);
            }
            consumer.committed_offsets(tpl, KAFKA_TIMEOUT)
        })
        .await
        .map_err(|e| BridgeError::Internal(e.to_string()))?;
        let Ok(committed) = committed else {
            // Not known now: the script's check stands; look again with the next batch.
            return Ok(());
        };
        let o = self.options;
        for (&p, record) in &first {
            let field = partition_field(&o.topic, p);
            let recorded = crate::jobs::bridge::sink::recorded(&mut self.conn, &o.stream, &field)
                .await
                .map_err(|e| BridgeError::redis(&o.redis, e))?;
            let committed = match committed.find_partition(&o.topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(c)) => Some(c),
                _ => None,
            };
            let Some(last) = recorded.last else {
                self.checked.insert(p, generation);
                continue;
            };
            let started_over = record.offset <= last
                && match committed {
                    Some(c) => record.offset < c,
                    None => recorded.first.is_some_and(|(offset, ts)| {
                        offset == record.offset && ts != record.timestamp.unwrap_or(-1)
                    }),
                };
            if started_over {
                tracing::warn!(
                    partition = p,
                    offset = record.offset,
                    recorded = last,
                    committed = ?committed,
                    "{field} starts over at offset {} below the {last} recorded as written to {}: the topic was created again or its broker lost its data; its records are bridged again, not skipped",
                    record.offset,
                    o.stream
                );
                crate::jobs::bridge::sink::forget_partition(&mut self.conn, &o.stream, &o.topic, p)
                    .await
                    .map_err(|e| BridgeError::redis(&o.redis, e))?;
            } else if let Some(c) = committed
                && c > last + 1
            {
                let reason = format!(
                    "{field}: Kafka has offsets up to {c} committed but {} records only up to {last}: Redis lost entries {} to {} after it acknowledged them (a restore from an older snapshot or a failover?)",
                    o.stream,
                    last + 1,
                    c - 1
                );
                tracing::error!("{reason}");
                self.status.set_state("running", Some(reason));
            }
            self.checked.insert(p, generation);
        }
        Ok(())
    }
}
