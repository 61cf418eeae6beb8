//! The lease of a scope as files: `lease` (JSON: owner, expiry, fencing token) and `fence` (the
//! last fencing token handed out, in decimal; never removed), and the fence check before a
//! write. Best effort: a file system has no compare-and-swap spanning a check and a write (see
//! [`FileCheckpointStore`]).

use super::disk::{io_err, read_optional, write_atomically};
use super::*;

impl FileCheckpointStore {
    /// Who holds the lease on `scope` ([`CheckpointStore::lease_holder`]).
    pub(super) fn holder(&self, scope: &str) -> StoreResult<Option<String>> {
        let path = self.scope_dir(scope)?.join("lease");
        Ok(read_lease(&path)
            .filter(|l| l.expires_at_ms > now_ms())
            .map(|l| l.owner))
    }

    /// Takes the lease on `scope` for `ttl` ([`CheckpointStore::acquire_lease`]): creates the
    /// lease file, or replaces one that expired, is unreadable or is `owner`'s own.
    pub(super) fn acquire(&self, scope: &str, owner: &str, ttl: Duration) -> StoreResult<Lease> {
        let dir = self.scope_dir(scope)?;
        let path = dir.join("lease");
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => return self.grant(&dir, scope, owner, ttl),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match read_lease(&path) {
                    Some(l) if l.expires_at_ms > now_ms() && l.owner != owner => {
                        return Err(StoreError::LeaseHeld {
                            scope: scope.to_string(),
                            holder: l.owner,
                        });
                    }
                    // Being written by a concurrent acquisition.
                    None if recently_modified(&path) => break,
                    // Expired, unreadable or our own: take it over.
                    _ => {
                        let _ = fs::remove_file(&path);
                    }
                },
                Err(source) => return Err(StoreError::Io { path, source }),
            }
        }
        Err(StoreError::LeaseHeld {
            scope: scope.to_string(),
            holder: "a concurrent run".to_string(),
        })
    }

    /// Takes the lease on `scope` over from `expected_holder`
    /// ([`CheckpointStore::take_over_lease`]); when the lease names someone else, the regular
    /// acquisition decides.
    pub(super) fn take_over(
        &self,
        scope: &str,
        expected_holder: &str,
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<Lease> {
        let dir = self.scope_dir(scope)?;
        match read_lease(&dir.join("lease")) {
            Some(l) if l.owner == expected_holder => self.grant(&dir, scope, owner, ttl),
            // Released, expired or taken by someone else meanwhile: the regular way decides.
            _ => self.acquire(scope, owner, ttl),
        }
    }

    /// Extends a held lease ([`CheckpointStore::renew_lease`]), keeping its fencing token.
    pub(super) fn renew(&self, lease: &Lease, ttl: Duration) -> StoreResult<()> {
        let path = self.scope_dir(&lease.scope)?.join("lease");
        match read_lease(&path) {
            Some(l) if l.owner == lease.owner => write_lease(&path, &lease.owner, ttl, l.token),
            _ => Err(StoreError::LeaseLost {
                scope: lease.scope.clone(),
            }),
        }
    }

    /// Gives a held lease up ([`CheckpointStore::release_lease`]): removes the lease file while
    /// it still names the holder; the fence stays.
    pub(super) fn release(&self, lease: &Lease) -> StoreResult<()> {
        self.tokens.forget(lease);
        let path = self.scope_dir(&lease.scope)?.join("lease");
        if read_lease(&path).is_some_and(|l| l.owner == lease.owner) {
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// Refuses a write to `scope` (in `dir`) when this store holds a lease on it whose token a
    /// newer acquisition has passed.
    pub(super) fn check_fence(&self, scope: &str, dir: &Path) -> StoreResult<()> {
        let Some(token) = self.tokens.get(scope) else {
            return Ok(());
        };
        let current = read_fence(dir)?;
        if current > token {
            return Err(StoreError::Fenced {
                scope: scope.to_string(),
                token,
                current,
            });
        }
        Ok(())
    }

    /// Gives the lease on `scope` to `owner` with the next fencing token (the caller made sure
    /// it may).
    fn grant(&self, dir: &Path, scope: &str, owner: &str, ttl: Duration) -> StoreResult<Lease> {
        let token = read_fence(dir)? + 1;
        write_atomically(&dir.join("fence"), token.to_string().as_bytes())?;
        write_lease(&dir.join("lease"), owner, ttl, token)?;
        let lease = Lease {
            scope: scope.to_string(),
            owner: owner.to_string(),
            token,
        };
        self.tokens.hold(&lease);
        Ok(lease)
    }
}

/// The last fencing token handed out for the scope in `dir` (0 before the first).
fn read_fence(dir: &Path) -> StoreResult<u64> {
    let path = dir.join("fence");
    match read_optional(&path)? {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| StoreError::Corrupt(path.display().to_string())),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LeaseFile {
    owner: String,
    expires_at_ms: i64,
    /// Absent in lease files written before fencing.
    #[serde(default)]
    token: u64,
}

fn read_lease(path: &Path) -> Option<LeaseFile> {
    fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn write_lease(path: &Path, owner: &str, ttl: Duration, token: u64) -> StoreResult<()> {
    let body = serde_json::to_vec(&LeaseFile {
        owner: owner.to_string(),
        expires_at_ms: now_ms() + ttl.as_millis() as i64,
        token,
    })
    .map_err(|e| StoreError::Backend(e.to_string()))?;
    write_atomically(path, &body)
}

/// Whether `path` changed within the last two seconds (a lease file being written).
fn recently_modified(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{all_entries, block_on, entry, tempdir};
    use super::*;

    #[test]
    fn file_lease_is_exclusive_until_released_or_expired() {
        let dir = tempdir("lease");
        let store = FileCheckpointStore::open(&dir).unwrap();
        let ttl = Duration::from_secs(30);
        let lease = block_on(store.acquire_lease("keys/a", "one", ttl)).unwrap();
        let err = block_on(store.acquire_lease("keys/a", "two", ttl)).unwrap_err();
        assert!(matches!(err, StoreError::LeaseHeld { ref holder, .. } if holder == "one"));
        block_on(store.renew_lease(&lease, ttl)).unwrap();
        block_on(store.release_lease(&lease)).unwrap();
        let second = block_on(store.acquire_lease("keys/a", "two", Duration::ZERO)).unwrap();
        assert!(matches!(
            block_on(store.renew_lease(&lease, ttl)),
            Err(StoreError::LeaseLost { .. })
        ));
        // An expired lease is taken over.
        std::thread::sleep(Duration::from_millis(5));
        block_on(store.acquire_lease("keys/a", "three", ttl)).unwrap();
        assert!(block_on(store.renew_lease(&second, ttl)).is_err());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn file_store_refuses_the_writes_of_a_taken_over_lease() {
        let dir = tempdir("fence");
        let a = FileCheckpointStore::open(&dir).unwrap();
        let b = FileCheckpointStore::open(&dir).unwrap();
        let first = block_on(a.acquire_lease("keys/a", "one", Duration::ZERO)).unwrap();
        assert_eq!(first.token, 1);
        assert_eq!(a.fence("keys/a"), Some(1));
        block_on(a.save("keys/a", b"a1")).unwrap();
        block_on(a.ledger_put("keys/a", "created", &[entry("k", "a")])).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        // The lease expired (a paused run); another run takes it with a newer token.
        let second = block_on(b.acquire_lease("keys/a", "two", Duration::from_secs(30))).unwrap();
        assert_eq!(second.token, 2);
        block_on(b.save("keys/a", b"b1")).unwrap();

        let fenced = |r: StoreResult<()>| {
            assert!(
                matches!(
                    r,
                    Err(StoreError::Fenced {
                        token: 1,
                        current: 2,
                        ..
                    })
                ),
                "{r:?}"
            )
        };
        fenced(block_on(a.save("keys/a", b"a2")));
        fenced(block_on(a.ledger_put(
            "keys/a",
            "created",
            &[entry("x", "a")],
        )));
        fenced(block_on(a.ledger_remove(
            "keys/a",
            "created",
            &[b"k".to_vec()],
        )));
        fenced(block_on(a.clear("keys/a")));
        assert!(matches!(
            block_on(a.renew_lease(&first, Duration::from_secs(30))),
            Err(StoreError::LeaseLost { .. })
        ));
        let msg = StoreError::Fenced {
            scope: "keys/a".into(),
            token: 1,
            current: 2,
        }
        .to_string();
        assert!(
            msg.contains("taken over by a newer run (token 2 > 1)"),
            "{msg}"
        );

        // Nothing changed; the new holder's writes work; a store without a lease is not fenced.
        assert_eq!(
            block_on(b.load("keys/a")).unwrap().as_deref(),
            Some(&b"b1"[..])
        );
        assert_eq!(
            all_entries(&b, "keys/a", "created"),
            [entry("k", "a")].into()
        );
        block_on(b.ledger_put("keys/a", "created", &[entry("k2", "b")])).unwrap();
        let reader = FileCheckpointStore::open(&dir).unwrap();
        block_on(reader.save("keys/a", b"r")).unwrap();
        block_on(b.clear("keys/a")).unwrap();
        // The fence outlives `clear`: the next acquisition still gets a newer token.
        block_on(b.release_lease(&second)).unwrap();
        assert_eq!(b.fence("keys/a"), None);
        let third = block_on(b.acquire_lease("keys/a", "three", Duration::from_secs(30))).unwrap();
        assert_eq!(third.token, 3);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn file_take_over_swaps_only_the_expected_holder() {
        let dir = tempdir("takeover");
        let store = FileCheckpointStore::open(&dir).unwrap();
        let ttl = Duration::from_secs(30);
        let held = block_on(store.acquire_lease("s", "dead", ttl)).unwrap();
        let err = block_on(store.take_over_lease("s", "someone-else", "me", ttl)).unwrap_err();
        assert!(matches!(err, StoreError::LeaseHeld { ref holder, .. } if holder == "dead"));
        let mine = block_on(store.take_over_lease("s", "dead", "me", ttl)).unwrap();
        assert_eq!((mine.owner.as_str(), mine.token), ("me", held.token + 1));
        assert!(block_on(store.renew_lease(&held, ttl)).is_err());
        block_on(store.renew_lease(&mine, ttl)).unwrap();
        fs::remove_dir_all(dir).unwrap();
    }
}
