//! Deciding what each key of a batch becomes: clashes claimed between the batches in flight,
//! the conflict policy for names that exist, and backups of what `overwrite` replaces.

use super::*;

impl Batcher {
    /// Checks which new names exist and decides: a name this run wrote from the same source is
    /// redone; one it wrote from another source is a clash (never overwritten); any other goes
    /// by the conflict policy.
    pub(super) async fn decide(
        &self,
        items: Vec<Item>,
        stats: &mut Stats,
        per_rule: &mut PerRule,
        errors: &mut ErrorLog,
    ) -> Result<Vec<Item>, KeysError> {
        if items.is_empty() {
            return Ok(items);
        }
        let mut items = items;
        let replies = self
            .target
            .run(
                items
                    .iter()
                    .map(|i| (i.dst.clone(), exists_cmd(&i.dst)))
                    .collect(),
            )
            .await?;
        let existing: Vec<usize> = replies
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Ok(Value::Int(1))))
            .map(|(i, _)| i)
            .collect();
        if existing.is_empty() {
            return Ok(items);
        }
        let keys: Vec<Vec<u8>> = existing.iter().map(|&i| items[i].dst.clone()).collect();
        let ours = self
            .store
            .ledger_get(&self.scope, LEDGER_CREATED, &keys)
            .await?;
        let mut drop = vec![false; items.len()];
        for (&i, ledger) in existing.iter().zip(ours) {
            let item = &mut items[i];
            let rule = per_rule.entry(self.rule_name(item.rule)).or_default();
            match ledger.as_deref().map(parse_ledger_value) {
                Some((flags, src)) if src == item.src.as_slice() => {
                    item.action = Action::Redo(flags);
                    continue;
                }
                Some((_, other)) => {
                    // Another old key took this name in this run (it appeared after the check
                    // for clashes): never overwrite it.
                    drop[i] = true;
                    let other = other.to_vec();
                    self.count_clash(item, &other, stats, per_rule, errors);
                    continue;
                }
                None => {}
            }
            match self.opts.on_conflict {
                OnConflict::Overwrite => item.action = Action::Overwrite,
                OnConflict::Skip => {
                    stats.skipped_existing += 1;
                    rule.skipped_existing += 1;
                    drop[i] = true;
                }
                OnConflict::Fail => {
                    stats.failed += 1;
                    rule.failed += 1;
                    errors.push(display_key(&item.src), exists_error(&item.dst));
                    drop[i] = true;
                }
            }
        }
        let mut keep = drop.into_iter();
        items.retain(|_| !keep.next().unwrap_or(false));
        Ok(items)
    }

    /// Claims the new names of `items` for this batch. Two old keys with one new name in the
    /// batches being written (a clash that appeared after the check for clashes): the first
    /// claims the name, the others are counted as clashes and dropped. Returns the items kept
    /// and the names claimed, to release once the batch is written.
    pub(super) fn claim(
        &self,
        items: Vec<Item>,
        stats: &mut Stats,
        per_rule: &mut PerRule,
        errors: &mut ErrorLog,
    ) -> (Vec<Item>, Vec<Vec<u8>>) {
        if items.is_empty() {
            return (items, Vec::new());
        }
        let mut claims = Vec::with_capacity(items.len());
        let mut kept = Vec::with_capacity(items.len());
        let mut clashes = Vec::new();
        {
            let mut claimed = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            for item in items {
                match claimed.get(&item.dst) {
                    // The same key twice (SCAN may return a key more than once).
                    Some(src) if *src == item.src => {}
                    Some(other) => clashes.push((item, other.clone())),
                    None => {
                        claimed.insert(item.dst.clone(), item.src.clone());
                        claims.push(item.dst.clone());
                        kept.push(item);
                    }
                }
            }
        }
        for (item, other) in clashes {
            self.count_clash(&item, &other, stats, per_rule, errors);
        }
        (kept, claims)
    }

    /// Counts an old key whose new name another old key (`other`) takes in this run.
    pub(super) fn count_clash(
        &self,
        item: &Item,
        other: &[u8],
        stats: &mut Stats,
        per_rule: &mut PerRule,
        errors: &mut ErrorLog,
    ) {
        if self.opts.on_collision == OnCollision::FirstWins {
            stats.collisions += 1;
            return;
        }
        stats.failed += 1;
        per_rule
            .entry(self.rule_name(item.rule))
            .or_default()
            .failed += 1;
        errors.push(
            display_key(&item.src),
            format!(
                "its new name {} is written by this run from {}; left under its old name",
                display_key(&item.dst),
                display_key(other)
            ),
        );
    }

    /// The key on the target that keeps the old value of an overwritten `dst` too big for one
    /// payload.
    pub(super) fn backup_key(&self, dst: &[u8]) -> Option<Vec<u8>> {
        let tag = format!("{}-backup", self.opts.run_name);
        chunk_tmp_key(dst, &tag, self.target.is_cluster())
    }

    /// Saves the current value of every key about to be overwritten into the backup ledger:
    /// small values as DUMP payloads (a bounded number of bytes at a time), bigger ones by a
    /// server-side COPY into a backup key on the target. Items whose value cannot be backed
    /// up are counted failed and dropped.
    pub(super) async fn backup_overwritten(
        &self,
        items: Vec<Item>,
        stats: &mut Stats,
        errors: &mut ErrorLog,
    ) -> Result<Vec<Item>, KeysError> {
        let victims: Vec<usize> = (0..items.len())
            .filter(|&i| items[i].action == Action::Overwrite)
            .collect();
        if victims.is_empty() {
            return Ok(items);
        }
        let sizes = memory_usages(&self.target, victims.iter().map(|&i| &items[i].dst)).await?;
        let mut small = Vec::new();
        let mut by_key = Vec::new();
        for (&i, size) in victims.iter().zip(sizes) {
            match size {
                Ok(Value::Int(n))
                    if n as u64 > self.opts.max_payload && self.target.version() >= (6, 2) =>
                {
                    by_key.push(i)
                }
                Ok(Value::Int(n)) => small.push((i, n as u64)),
                // Gone meanwhile: nothing to back up, the write creates it.
                _ => small.push((i, 0)),
            }
        }
        let mut failed = vec![false; items.len()];
        for group in payload_groups(&small) {
            let mut cmds = Vec::new();
            for &i in &group {
                let dst = &items[i].dst;
                cmds.push((dst.clone(), self.target.expiry_cmd(dst)));
                cmds.push((dst.clone(), cmd("DUMP").arg(dst).clone()));
            }
            let now = now_ms();
            let replies = self.target.run(cmds).await?;
            let mut entries = Vec::new();
            for (&i, pair) in group.iter().zip(replies.chunks(2)) {
                if let (Some(expiry), Ok(Value::BulkString(payload))) =
                    (self.target.expiry_from(&pair[0], now), &pair[1])
                {
                    let at: i64 = expiry.unwrap_or(-1);
                    let mut value = at.to_le_bytes().to_vec();
                    value.extend_from_slice(payload);
                    entries.push((items[i].dst.clone(), value));
                }
            }
            self.store
                .ledger_put(&self.scope, LEDGER_BACKUP, &entries)
                .await?;
        }
        if !by_key.is_empty() {
            let mut entries = Vec::new();
            let mut cmds = Vec::new();
            let mut copied = Vec::new();
            for &i in &by_key {
                let dst = &items[i].dst;
                let Some(backup) = self.backup_key(dst) else {
                    failed[i] = true;
                    continue;
                };
                let mut value = BACKUP_BY_KEY.to_le_bytes().to_vec();
                value.extend_from_slice(&backup);
                entries.push((dst.clone(), value));
                let mut c = cmd("COPY");
                c.arg(dst).arg(&backup).arg("REPLACE");
                cmds.push((dst.clone(), c));
                copied.push(i);
            }
            // Recorded first: a crash after the COPY leaves a backup key rollback knows.
            self.store
                .ledger_put(&self.scope, LEDGER_BACKUP, &entries)
                .await?;
            let replies = self.target.run(cmds).await?;
            for (&i, reply) in copied.iter().zip(replies) {
                if let Err(e) = reply {
                    failed[i] = true;
                    errors.push(
                        display_key(&items[i].src),
                        format!("backing up the value it would overwrite: {e}"),
                    );
                }
            }
        }
        let mut kept = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            if failed[i] {
                stats.failed += 1;
                if self.backup_key(&item.dst).is_none() {
                    errors.push(
                        display_key(&item.src),
                        "its new name has an unbalanced hash tag, so its old value cannot be backed up before overwriting".to_string(),
                    );
                }
            } else {
                kept.push(item);
            }
        }
        Ok(kept)
    }
}

/// `MEMORY USAGE key SAMPLES 1` of each key, pipelined: the estimate that decides whether a
/// value goes in one payload.
pub(super) async fn memory_usages<'a>(
    endpoint: &RedisEndpoint,
    keys: impl Iterator<Item = &'a Vec<u8>>,
) -> Result<Vec<ferry_connectors::redis::RedisResult<Value>>, KeysError> {
    let cmds = keys
        .map(|key| {
            let mut c = cmd("MEMORY");
            c.arg("USAGE").arg(key).arg("SAMPLES").arg(1);
            (key.clone(), c)
        })
        .collect();
    Ok(endpoint.run(cmds).await?)
}
