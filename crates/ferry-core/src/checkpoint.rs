//! Checkpoints, run leases and write ledgers.
//!
//! A long job saves its position (an opaque blob it serialises itself) after every batch whose
//! writes are committed, holds a lease so that two runs of one job never overlap, and records in
//! a *ledger* what it wrote so that a rollback can undo exactly that. Ledgers map a binary key to
//! a binary value. Redis backs the default store (see `ferry-connectors`); [`FileCheckpointStore`]
//! serves offline runs.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Classify, ErrorClass};

/// A held run lease: proof that this process owns `scope` until the lease expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The job scope the lease covers, e.g. `keys/default`.
    pub scope: String,
    /// The holder's unique token (host, pid and start time).
    pub owner: String,
    /// The fencing token: grows with every acquisition of `scope`, so that stores can refuse
    /// the writes of a holder whose lease was taken over (0 = the store does not fence).
    pub token: u64,
}

/// Errors of a checkpoint store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another run holds the lease.
    #[error(
        "another run of `{scope}` is in progress (lease held by {holder}); wait for it to finish, or if it died, wait for its lease to expire"
    )]
    LeaseHeld {
        /// The job scope.
        scope: String,
        /// Who holds the lease.
        holder: String,
    },
    /// The lease expired or was taken over while this run held it.
    #[error(
        "the lease on `{scope}` was lost (expired or taken over); stopping so that two runs never overlap"
    )]
    LeaseLost {
        /// The job scope.
        scope: String,
    },
    /// A file of the store could not be read or written.
    #[error("checkpoint file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The store's backend failed.
    #[error("checkpoint store: {0}")]
    Backend(String),
    /// Saved data could not be decoded.
    #[error("checkpoint store holds corrupt data at {0}; remove it or run rollback first")]
    Corrupt(String),
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::LeaseHeld { .. } => ErrorClass::User,
            StoreError::Corrupt(_) => ErrorClass::User,
            StoreError::LeaseLost { .. } | StoreError::Io { .. } | StoreError::Backend(_) => {
                ErrorClass::External
            }
        }
    }
}

/// A result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// One page of a ledger: the cursor to continue from (0 when done) and its entries.
pub type LedgerPage = (u64, Vec<(Vec<u8>, Vec<u8>)>);

/// Where jobs keep checkpoints, leases and ledgers.
pub trait CheckpointStore: Send + Sync {
    /// The saved state of `scope`, if any.
    fn load(&self, scope: &str) -> impl Future<Output = StoreResult<Option<Vec<u8>>>> + Send;
    /// Replaces the saved state of `scope`.
    fn save(&self, scope: &str, state: &[u8]) -> impl Future<Output = StoreResult<()>> + Send;
    /// Takes the lease on `scope` for `ttl`, or fails with [`StoreError::LeaseHeld`].
    fn acquire_lease(
        &self,
        scope: &str,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = StoreResult<Lease>> + Send;
    /// Extends a held lease, or fails with [`StoreError::LeaseLost`].
    fn renew_lease(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Gives a held lease up (a no-op when it was lost).
    fn release_lease(&self, lease: &Lease) -> impl Future<Output = StoreResult<()>> + Send;
    /// Inserts or replaces entries of a ledger.
    fn ledger_put(
        &self,
        scope: &str,
        ledger: &str,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Looks entries up; one result per key, in order.
    fn ledger_get(
        &self,
        scope: &str,
        ledger: &str,
        keys: &[Vec<u8>],
    ) -> impl Future<Output = StoreResult<Vec<Option<Vec<u8>>>>> + Send;
    /// Reads a page of about `count` entries from `cursor` (start with 0; 0 comes back at the
    /// end). An entry may be returned twice across pages; never skipped.
    fn ledger_page(
        &self,
        scope: &str,
        ledger: &str,
        cursor: u64,
        count: usize,
    ) -> impl Future<Output = StoreResult<LedgerPage>> + Send;
    /// Number of entries in a ledger.
    fn ledger_len(
        &self,
        scope: &str,
        ledger: &str,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Removes entries from a ledger.
    fn ledger_remove(
        &self,
        scope: &str,
        ledger: &str,
        keys: &[Vec<u8>],
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Deletes the saved state and every ledger of `scope` (not the lease).
    fn clear(&self, scope: &str) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A checkpoint store in a directory, for offline runs. Each scope is a sub-directory holding
/// `state.json`, `lease` and one append-only `<ledger>.ledger` file per ledger (loaded into memory
/// on first use).
#[derive(Debug)]
pub struct FileCheckpointStore {
    dir: PathBuf,
    ledgers: Mutex<BTreeMap<PathBuf, LedgerMap>>,
}

const TOMBSTONE: u32 = u32::MAX;

/// One ledger in memory.
type LedgerMap = BTreeMap<Vec<u8>, Vec<u8>>;

impl FileCheckpointStore {
    /// A store rooted at `dir` (created when missing).
    pub fn open(dir: impl Into<PathBuf>) -> StoreResult<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            dir,
            ledgers: Mutex::new(BTreeMap::new()),
        })
    }

    fn scope_dir(&self, scope: &str) -> StoreResult<PathBuf> {
        let safe: String = scope
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dir = self.dir.join(safe);
        fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    fn ledger_path(&self, scope: &str, ledger: &str) -> StoreResult<PathBuf> {
        Ok(self.scope_dir(scope)?.join(format!("{ledger}.ledger")))
    }

    /// Runs `f` on the in-memory copy of a ledger, loading it from its file first.
    fn with_ledger<T>(&self, path: &Path, f: impl FnOnce(&mut LedgerMap) -> T) -> StoreResult<T> {
        let mut all = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        if !all.contains_key(path) {
            all.insert(path.to_path_buf(), read_ledger(path)?);
        }
        Ok(f(all.get_mut(path).expect("just inserted")))
    }

    fn append(path: &Path, records: &[(&[u8], Option<&[u8]>)]) -> StoreResult<()> {
        let io_err = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut buf = Vec::new();
        for (key, value) in records {
            buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
            buf.extend_from_slice(key);
            match value {
                Some(v) => {
                    buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    buf.extend_from_slice(v);
                }
                None => buf.extend_from_slice(&TOMBSTONE.to_le_bytes()),
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err)?;
        file.write_all(&buf).map_err(io_err)?;
        file.sync_data().map_err(io_err)
    }
}

fn read_ledger(path: &Path) -> StoreResult<LedgerMap> {
    let mut map = BTreeMap::new();
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(map),
        Err(source) => {
            return Err(StoreError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let s = bytes.get(*at..*at + n)?;
        *at += n;
        Some(s)
    };
    while at < bytes.len() {
        // A record torn by a crash at the very end is ignored: it was never acknowledged.
        let Some(klen) = take(&mut at, 4) else { break };
        let klen = u32::from_le_bytes(klen.try_into().expect("4 bytes")) as usize;
        let Some(key) = take(&mut at, klen).map(<[u8]>::to_vec) else {
            break;
        };
        let Some(vlen) = take(&mut at, 4) else { break };
        let vlen = u32::from_le_bytes(vlen.try_into().expect("4 bytes"));
        if vlen == TOMBSTONE {
            map.remove(&key);
            continue;
        }
        let Some(value) = take(&mut at, vlen as usize) else {
            break;
        };
        map.insert(key, value.to_vec());
    }
    Ok(map)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LeaseFile {
    owner: String,
    expires_at_ms: i64,
}

impl CheckpointStore for FileCheckpointStore {
    async fn load(&self, scope: &str) -> StoreResult<Option<Vec<u8>>> {
        let path = self.scope_dir(scope)?.join("state.json");
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    async fn save(&self, scope: &str, state: &[u8]) -> StoreResult<()> {
        let dir = self.scope_dir(scope)?;
        let tmp = dir.join("state.json.tmp");
        let path = dir.join("state.json");
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(state).map_err(io_err(&tmp))?;
        f.sync_data().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    async fn acquire_lease(&self, scope: &str, owner: &str, ttl: Duration) -> StoreResult<Lease> {
        let path = self.scope_dir(scope)?.join("lease");
        let body = serde_json::to_vec(&LeaseFile {
            owner: owner.to_string(),
            expires_at_ms: now_ms() + ttl.as_millis() as i64,
        })
        .map_err(|e| StoreError::Backend(e.to_string()))?;
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(&body).map_err(|source| StoreError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    return Ok(Lease {
                        scope: scope.to_string(),
                        owner: owner.to_string(),
                        token: 0,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let held: Option<LeaseFile> = fs::read(&path)
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok());
                    match held {
                        Some(l) if l.expires_at_ms > now_ms() && l.owner != owner => {
                            return Err(StoreError::LeaseHeld {
                                scope: scope.to_string(),
                                holder: l.owner,
                            });
                        }
                        // Expired, unreadable or our own: take it over.
                        _ => {
                            let _ = fs::remove_file(&path);
                        }
                    }
                }
                Err(source) => return Err(StoreError::Io { path, source }),
            }
        }
        Err(StoreError::LeaseHeld {
            scope: scope.to_string(),
            holder: "a concurrent run".to_string(),
        })
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> StoreResult<()> {
        let path = self.scope_dir(&lease.scope)?.join("lease");
        let held: Option<LeaseFile> = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match held {
            Some(l) if l.owner == lease.owner => {
                let body = serde_json::to_vec(&LeaseFile {
                    owner: lease.owner.clone(),
                    expires_at_ms: now_ms() + ttl.as_millis() as i64,
                })
                .map_err(|e| StoreError::Backend(e.to_string()))?;
                fs::write(&path, body).map_err(|source| StoreError::Io { path, source })
            }
            _ => Err(StoreError::LeaseLost {
                scope: lease.scope.clone(),
            }),
        }
    }

    async fn release_lease(&self, lease: &Lease) -> StoreResult<()> {
        let path = self.scope_dir(&lease.scope)?.join("lease");
        let held: Option<LeaseFile> = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if held.is_some_and(|l| l.owner == lease.owner) {
            fs::remove_file(&path).map_err(|source| StoreError::Io { path, source })?;
        }
        Ok(())
    }

    async fn ledger_put(
        &self,
        scope: &str,
        ledger: &str,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> StoreResult<()> {
        let path = self.ledger_path(scope, ledger)?;
        let records: Vec<_> = entries
            .iter()
            .map(|(k, v)| (k.as_slice(), Some(v.as_slice())))
            .collect();
        Self::append(&path, &records)?;
        self.with_ledger(&path, |map| {
            for (k, v) in entries {
                map.insert(k.clone(), v.clone());
            }
        })
    }

    async fn ledger_get(
        &self,
        scope: &str,
        ledger: &str,
        keys: &[Vec<u8>],
    ) -> StoreResult<Vec<Option<Vec<u8>>>> {
        let path = self.ledger_path(scope, ledger)?;
        self.with_ledger(&path, |map| {
            keys.iter().map(|k| map.get(k).cloned()).collect()
        })
    }

    async fn ledger_page(
        &self,
        scope: &str,
        ledger: &str,
        cursor: u64,
        count: usize,
    ) -> StoreResult<LedgerPage> {
        let path = self.ledger_path(scope, ledger)?;
        self.with_ledger(&path, |map| {
            let start = cursor as usize;
            let page: Vec<_> = map
                .iter()
                .skip(start)
                .take(count)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let next = if start + page.len() >= map.len() {
                0
            } else {
                (start + page.len()) as u64
            };
            (next, page)
        })
    }

    async fn ledger_len(&self, scope: &str, ledger: &str) -> StoreResult<u64> {
        let path = self.ledger_path(scope, ledger)?;
        self.with_ledger(&path, |map| map.len() as u64)
    }

    async fn ledger_remove(&self, scope: &str, ledger: &str, keys: &[Vec<u8>]) -> StoreResult<()> {
        let path = self.ledger_path(scope, ledger)?;
        let records: Vec<_> = keys.iter().map(|k| (k.as_slice(), None)).collect();
        Self::append(&path, &records)?;
        self.with_ledger(&path, |map| {
            for k in keys {
                map.remove(k);
            }
        })
    }

    async fn clear(&self, scope: &str) -> StoreResult<()> {
        let dir = self.scope_dir(scope)?;
        let entries = fs::read_dir(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut all = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        for entry in entries.flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n != "lease") {
                all.remove(&path);
                fs::remove_file(&path).map_err(|source| StoreError::Io { path, source })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        // The file store never awaits anything, so a single poll completes it.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("file store future was pending"),
        }
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ferry-core-{name}-{}-{}",
            std::process::id(),
            now_ms()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn file_store_saves_and_reloads_state_and_ledgers() {
        let dir = tempdir("state");
        let store = FileCheckpointStore::open(&dir).unwrap();
        assert_eq!(block_on(store.load("keys/a")).unwrap(), None);
        block_on(store.save("keys/a", b"{\"cursor\":5}")).unwrap();
        let entries = vec![
            (b"new\x00\xff".to_vec(), b"cold".to_vec()),
            (b"k2".to_vec(), b"v2".to_vec()),
        ];
        block_on(store.ledger_put("keys/a", "created", &entries)).unwrap();
        block_on(store.ledger_remove("keys/a", "created", &[b"k2".to_vec()])).unwrap();

        // A second store on the same directory sees everything (as after a restart).
        let again = FileCheckpointStore::open(&dir).unwrap();
        assert_eq!(
            block_on(again.load("keys/a")).unwrap().as_deref(),
            Some(&b"{\"cursor\":5}"[..])
        );
        let got = block_on(again.ledger_get(
            "keys/a",
            "created",
            &[b"new\x00\xff".to_vec(), b"k2".to_vec()],
        ))
        .unwrap();
        assert_eq!(got, vec![Some(b"cold".to_vec()), None]);
        assert_eq!(block_on(again.ledger_len("keys/a", "created")).unwrap(), 1);
        block_on(again.clear("keys/a")).unwrap();
        assert_eq!(block_on(again.load("keys/a")).unwrap(), None);
        assert_eq!(block_on(again.ledger_len("keys/a", "created")).unwrap(), 0);
        fs::remove_dir_all(dir).unwrap();
    }

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
    fn torn_ledger_tail_is_ignored() {
        let dir = tempdir("torn");
        let store = FileCheckpointStore::open(&dir).unwrap();
        block_on(store.ledger_put("s", "l", &[(b"a".to_vec(), b"1".to_vec())])).unwrap();
        let path = store.ledger_path("s", "l").unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[5, 0, 0, 0, b'x']).unwrap();
        let again = FileCheckpointStore::open(&dir).unwrap();
        assert_eq!(block_on(again.ledger_len("s", "l")).unwrap(), 1);
        fs::remove_dir_all(dir).unwrap();
    }
}
