//! The checkpoint store in a directory (`file://DIR`), for offline runs.

use super::*;

/// A checkpoint store in a directory, for offline runs. Each scope is a sub-directory holding
/// `state.json`, `lease` (JSON: owner, expiry, fencing token), `fence` (the last fencing token
/// handed out, in decimal; never removed) and one append-only `<ledger>.ledger` file per ledger
/// (loaded into memory on first use).
///
/// Leases and fencing are best effort here: they keep a second run and a run paused past its
/// lease from writing, but a file system has no compare-and-swap spanning a check and a write,
/// so processes racing within the same instant could both pass. Where that matters, use the
/// Redis store, whose checks and writes are atomic.
///
/// A ledger file starts with `FLEDGER2`; each record is: key length (u32 LE), key, value length
/// (u32 LE; `u32::MAX` marks a removal), value, CRC-32C of the bytes before (u32 LE). Files from
/// before the checksums (no such header; they cannot start with it, as that would announce a
/// key of over 1 GB) are still read, and rewritten in this format before their first append. A
/// record cut short at the end of a file (a crash mid-append, never acknowledged) is ignored
/// when reading, and cut off before the next append (the cut bytes are kept in
/// `<ledger>.ledger.torn`); a record failing its checksum elsewhere is reported as corrupt.
#[derive(Debug)]
pub struct FileCheckpointStore {
    dir: PathBuf,
    ledgers: Mutex<BTreeMap<PathBuf, LoadedLedger>>,
    tokens: HeldTokens,
}

const TOMBSTONE: u32 = u32::MAX;
const LEDGER_MAGIC: &[u8; 8] = b"FLEDGER2";
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// One ledger in memory.
type LedgerMap = BTreeMap<Vec<u8>, Vec<u8>>;

/// A ledger loaded from its file; `appendable` once the file was checked (torn tail cut off,
/// format current) for this store's appends.
#[derive(Debug)]
struct LoadedLedger {
    map: LedgerMap,
    appendable: bool,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Io { path, source }
}

/// Replaces `path` with `bytes` at once (a temporary file renamed over it).
fn write_atomically(path: &Path, bytes: &[u8]) -> StoreResult<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!("{name}.{}.tmp", std::process::id()));
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_data().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// The file's bytes, or `None` when it does not exist.
fn read_optional(path: &Path) -> StoreResult<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
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

/// Appends one record to `buf`.
fn encode_record(buf: &mut Vec<u8>, key: &[u8], value: Option<&[u8]>) {
    let start = buf.len();
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(key);
    match value {
        Some(v) => {
            buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
            buf.extend_from_slice(v);
        }
        None => buf.extend_from_slice(&TOMBSTONE.to_le_bytes()),
    }
    let sum = CRC32C.checksum(&buf[start..]);
    buf.extend_from_slice(&sum.to_le_bytes());
}

/// A ledger file read: its entries, how many leading bytes hold complete records, and whether
/// it has checksums (the current format).
struct ParsedLedger {
    map: LedgerMap,
    valid_len: usize,
    checksummed: bool,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
}

fn parse_ledger(path: &Path, bytes: &[u8]) -> StoreResult<ParsedLedger> {
    let checksummed = bytes.starts_with(LEDGER_MAGIC);
    let mut r = Reader {
        bytes,
        at: if checksummed { LEDGER_MAGIC.len() } else { 0 },
    };
    let mut map = BTreeMap::new();
    let mut valid_len = r.at;
    // A record torn by a crash at the very end is ignored: it was never acknowledged.
    while r.at < bytes.len() {
        let Some(klen) = r.u32() else { break };
        let Some(key) = r.take(klen as usize) else {
            break;
        };
        let Some(vlen) = r.u32() else { break };
        let value = if vlen == TOMBSTONE {
            None
        } else {
            match r.take(vlen as usize) {
                Some(v) => Some(v),
                None => break,
            }
        };
        if checksummed {
            let Some(sum) = r.u32() else { break };
            if sum != CRC32C.checksum(&bytes[valid_len..r.at - 4]) {
                if r.at == bytes.len() {
                    break;
                }
                return Err(StoreError::Corrupt(format!(
                    "{} (the record at byte {valid_len} fails its checksum)",
                    path.display()
                )));
            }
        }
        match value {
            Some(v) => map.insert(key.to_vec(), v.to_vec()),
            None => map.remove(key),
        };
        valid_len = r.at;
    }
    Ok(ParsedLedger {
        map,
        valid_len,
        checksummed,
    })
}

fn read_ledger(path: &Path) -> StoreResult<LedgerMap> {
    let bytes = read_optional(path)?.unwrap_or_default();
    Ok(parse_ledger(path, &bytes)?.map)
}

/// Reads the ledger file at `path` afresh and readies it for appends: a torn tail is cut off
/// (and kept in `<file>.torn`), a file in the old format or a missing one is (re)written in the
/// current format. Returns its entries.
fn prepare_append(path: &Path) -> StoreResult<LedgerMap> {
    let bytes = read_optional(path)?.unwrap_or_default();
    let parsed = parse_ledger(path, &bytes)?;
    if parsed.valid_len < bytes.len() {
        let mut name = path.as_os_str().to_owned();
        name.push(".torn");
        let torn = PathBuf::from(name);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&torn)
            .map_err(io_err(&torn))?;
        f.write_all(&bytes[parsed.valid_len..])
            .map_err(io_err(&torn))?;
        f.sync_data().map_err(io_err(&torn))?;
    }
    if parsed.checksummed {
        if parsed.valid_len < bytes.len() {
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_err(path))?;
            f.set_len(parsed.valid_len as u64).map_err(io_err(path))?;
            f.sync_data().map_err(io_err(path))?;
        }
    } else {
        let mut buf = LEDGER_MAGIC.to_vec();
        for (k, v) in &parsed.map {
            encode_record(&mut buf, k, Some(v));
        }
        write_atomically(path, &buf)?;
    }
    Ok(parsed.map)
}

impl FileCheckpointStore {
    /// A store rooted at `dir` (created when missing).
    pub fn open(dir: impl Into<PathBuf>) -> StoreResult<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Self {
            dir,
            ledgers: Mutex::new(BTreeMap::new()),
            tokens: HeldTokens::default(),
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
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(dir)
    }

    fn ledger_path(&self, scope: &str, ledger: &str) -> StoreResult<PathBuf> {
        Ok(self.scope_dir(scope)?.join(format!("{ledger}.ledger")))
    }

    /// Refuses a write to `scope` (in `dir`) when this store holds a lease on it whose token a
    /// newer acquisition has passed.
    fn check_fence(&self, scope: &str, dir: &Path) -> StoreResult<()> {
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

    /// Runs `f` on the in-memory copy of a ledger, loading it from its file first.
    fn with_ledger<T>(&self, path: &Path, f: impl FnOnce(&mut LedgerMap) -> T) -> StoreResult<T> {
        let mut all = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        if !all.contains_key(path) {
            let map = read_ledger(path)?;
            all.insert(
                path.to_path_buf(),
                LoadedLedger {
                    map,
                    appendable: false,
                },
            );
        }
        Ok(f(&mut all.get_mut(path).expect("just inserted").map))
    }

    /// Appends records (a `None` value removes the key) to a ledger file and its in-memory copy.
    fn append(&self, path: &Path, records: &[(&[u8], Option<&[u8]>)]) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut all = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        if !all.get(path).is_some_and(|l| l.appendable) {
            let map = prepare_append(path)?;
            all.insert(
                path.to_path_buf(),
                LoadedLedger {
                    map,
                    appendable: true,
                },
            );
        }
        let mut buf = Vec::new();
        for (key, value) in records {
            encode_record(&mut buf, key, *value);
        }
        let mut file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        file.write_all(&buf).map_err(io_err(path))?;
        file.sync_data().map_err(io_err(path))?;
        let map = &mut all.get_mut(path).expect("loaded above").map;
        for (key, value) in records {
            match value {
                Some(v) => map.insert(key.to_vec(), v.to_vec()),
                None => map.remove(*key),
            };
        }
        Ok(())
    }
}

impl CheckpointStore for FileCheckpointStore {
    async fn load(&self, scope: &str) -> StoreResult<Option<Vec<u8>>> {
        read_optional(&self.scope_dir(scope)?.join("state.json"))
    }

    async fn save(&self, scope: &str, state: &[u8]) -> StoreResult<()> {
        let dir = self.scope_dir(scope)?;
        self.check_fence(scope, &dir)?;
        write_atomically(&dir.join("state.json"), state)
    }

    async fn acquire_lease(&self, scope: &str, owner: &str, ttl: Duration) -> StoreResult<Lease> {
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

    async fn take_over_lease(
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
            _ => self.acquire_lease(scope, owner, ttl).await,
        }
    }

    fn fence(&self, scope: &str) -> Option<u64> {
        self.tokens.get(scope)
    }

    async fn check_lease(&self, scope: &str) -> StoreResult<()> {
        let dir = self.scope_dir(scope)?;
        self.check_fence(scope, &dir)
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> StoreResult<()> {
        let path = self.scope_dir(&lease.scope)?.join("lease");
        match read_lease(&path) {
            Some(l) if l.owner == lease.owner => write_lease(&path, &lease.owner, ttl, l.token),
            _ => Err(StoreError::LeaseLost {
                scope: lease.scope.clone(),
            }),
        }
    }

    async fn release_lease(&self, lease: &Lease) -> StoreResult<()> {
        self.tokens.forget(lease);
        let path = self.scope_dir(&lease.scope)?.join("lease");
        if read_lease(&path).is_some_and(|l| l.owner == lease.owner) {
            fs::remove_file(&path).map_err(io_err(&path))?;
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
        self.check_fence(scope, path.parent().expect("in the scope's directory"))?;
        let records: Vec<_> = entries
            .iter()
            .map(|(k, v)| (k.as_slice(), Some(v.as_slice())))
            .collect();
        self.append(&path, &records)
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
        self.check_fence(scope, path.parent().expect("in the scope's directory"))?;
        let records: Vec<_> = keys.iter().map(|k| (k.as_slice(), None)).collect();
        self.append(&path, &records)
    }

    async fn clear(&self, scope: &str) -> StoreResult<()> {
        let dir = self.scope_dir(scope)?;
        self.check_fence(scope, &dir)?;
        let entries = fs::read_dir(&dir).map_err(io_err(&dir))?;
        let mut all = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // The lease and the fence outlive the state (and their temporary files stay).
            let state = name == "state.json" || name.starts_with("state.json.");
            let ledger = name.ends_with(".ledger") || name.ends_with(".ledger.torn");
            if state || ledger {
                all.remove(&path);
                fs::remove_file(&path).map_err(io_err(&path))?;
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

    fn entry(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
        (k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    fn all_entries(store: &FileCheckpointStore, scope: &str, ledger: &str) -> LedgerMap {
        let (next, page) = block_on(store.ledger_page(scope, ledger, 0, usize::MAX)).unwrap();
        assert_eq!(next, 0);
        page.into_iter().collect()
    }

    #[test]
    fn appends_after_a_torn_record_keep_every_complete_entry() {
        let dir = tempdir("torn-append");
        let store = FileCheckpointStore::open(&dir).unwrap();
        block_on(store.ledger_put("s", "l", &[entry("a", "1"), entry("b", "2")])).unwrap();
        let path = store.ledger_path("s", "l").unwrap();
        // A crash mid-append leaves half a record: a key length, the key, half a value.
        let garbage = [
            9, 0, 0, 0, b'c', b'r', b'a', b's', b'h', b'e', b'd', b'!', b'!', 200, 0,
        ];
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&garbage).unwrap();
        drop(f);

        // The next run appends more, removes one.
        let again = FileCheckpointStore::open(&dir).unwrap();
        block_on(again.ledger_put("s", "l", &[entry("c", "3"), entry("d", "4")])).unwrap();
        block_on(again.ledger_remove("s", "l", &[b"b".to_vec()])).unwrap();

        let reopened = FileCheckpointStore::open(&dir).unwrap();
        let expected: LedgerMap = [entry("a", "1"), entry("c", "3"), entry("d", "4")].into();
        assert_eq!(all_entries(&reopened, "s", "l"), expected);
        // The cut-off bytes are kept for inspection.
        let mut torn = path.clone().into_os_string();
        torn.push(".torn");
        assert_eq!(fs::read(torn).unwrap(), garbage);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_corrupt_record_is_reported_not_misread() {
        let dir = tempdir("corrupt");
        let store = FileCheckpointStore::open(&dir).unwrap();
        block_on(store.ledger_put("s", "l", &[entry("key", "value")])).unwrap();
        block_on(store.ledger_put("s", "l", &[entry("k2", "v2")])).unwrap();
        let path = store.ledger_path("s", "l").unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.windows(5).position(|w| w == b"value").unwrap();
        bytes[at] = b'V';
        fs::write(&path, bytes).unwrap();
        let again = FileCheckpointStore::open(&dir).unwrap();
        let err = block_on(again.ledger_len("s", "l")).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("checksum")),
            "{err}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn ledgers_in_the_format_before_checksums_are_read_and_upgraded() {
        let dir = tempdir("old-format");
        let store = FileCheckpointStore::open(&dir).unwrap();
        let path = store.ledger_path("s", "l").unwrap();
        let mut old = Vec::new();
        for (k, v) in [
            (&b"a"[..], Some(&b"1"[..])),
            (b"b", Some(b"2")),
            (b"a", None),
        ] {
            old.extend_from_slice(&(k.len() as u32).to_le_bytes());
            old.extend_from_slice(k);
            match v {
                Some(v) => {
                    old.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    old.extend_from_slice(v);
                }
                None => old.extend_from_slice(&TOMBSTONE.to_le_bytes()),
            }
        }
        old.extend_from_slice(&[3, 0, 0]); // torn
        fs::write(&path, &old).unwrap();
        assert_eq!(all_entries(&store, "s", "l"), [entry("b", "2")].into());
        block_on(store.ledger_put("s", "l", &[entry("c", "3")])).unwrap();
        assert!(fs::read(&path).unwrap().starts_with(LEDGER_MAGIC));
        let reopened = FileCheckpointStore::open(&dir).unwrap();
        assert_eq!(
            all_entries(&reopened, "s", "l"),
            [entry("b", "2"), entry("c", "3")].into()
        );
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
