//! The checkpoint store in a directory (`file://DIR`), for offline runs: the store and its
//! [`CheckpointStore`] implementation here, the lease and fencing files in [`lease`], the
//! ledger files (CRC'd records, append, repair) in [`ledger`], shared file helpers in [`disk`].

use super::*;

mod disk;
mod lease;
mod ledger;
#[cfg(test)]
mod test_support;

use disk::{io_err, read_optional, write_atomically};
use ledger::LoadedLedger;

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

    /// The directory of `scope`: its name with every byte other than ASCII letters, digits,
    /// `-` and `_` written `%XX`, so that two scopes never share one (`keys/a.b` and
    /// `keys/a_b` did before, when both became `keys_a_b`). A directory of that older naming
    /// is taken over by the first scope that asks for it, unless it names another scope.
    fn scope_dir(&self, scope: &str) -> StoreResult<PathBuf> {
        let dir = self.dir.join(dir_name(scope));
        let legacy = self.dir.join(legacy_dir_name(scope));
        if legacy != dir && !dir.exists() && legacy.is_dir() {
            let owner = read_optional(&legacy.join(SCOPE_FILE))?;
            if owner.is_none_or(|o| o == scope.as_bytes()) {
                fs::rename(&legacy, &dir).map_err(io_err(&legacy))?;
            }
        }
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        // The scope's own name is kept beside its state, for `scopes`.
        let name = dir.join(SCOPE_FILE);
        if !name.exists() {
            write_atomically(&name, scope.as_bytes())?;
        }
        Ok(dir)
    }

    fn ledger_path(&self, scope: &str, ledger: &str) -> StoreResult<PathBuf> {
        Ok(self.scope_dir(scope)?.join(format!("{ledger}.ledger")))
    }
}

/// A scope's directory name: ASCII letters, digits, `-` and `_` as they are, every other byte
/// as `%XX` (so the mapping is one to one).
fn dir_name(scope: &str) -> String {
    let mut out = String::with_capacity(scope.len());
    for b in scope.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The directory name earlier versions used: every other character as `_`.
fn legacy_dir_name(scope: &str) -> String {
    scope
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The file in a scope's directory holding the scope's name.
const SCOPE_FILE: &str = "scope.name";

impl CheckpointStore for FileCheckpointStore {
    async fn load(&self, scope: &str) -> StoreResult<Option<Vec<u8>>> {
        read_optional(&self.scope_dir(scope)?.join("state.json"))
    }

    async fn save(&self, scope: &str, state: &[u8]) -> StoreResult<()> {
        let dir = self.scope_dir(scope)?;
        self.check_fence(scope, &dir)?;
        write_atomically(&dir.join("state.json"), state)
    }

    async fn scopes(&self, prefix: &str) -> StoreResult<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let dir = entry.path();
            let Some(name) = read_optional(&dir.join(SCOPE_FILE))? else {
                continue;
            };
            let name = String::from_utf8_lossy(&name).into_owned();
            if name.starts_with(prefix) && dir.join("state.json").exists() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    async fn lease_holder(&self, scope: &str) -> StoreResult<Option<String>> {
        self.holder(scope)
    }

    async fn acquire_lease(&self, scope: &str, owner: &str, ttl: Duration) -> StoreResult<Lease> {
        self.acquire(scope, owner, ttl)
    }

    async fn take_over_lease(
        &self,
        scope: &str,
        expected_holder: &str,
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<Lease> {
        self.take_over(scope, expected_holder, owner, ttl)
    }

    fn fence(&self, scope: &str) -> Option<u64> {
        self.tokens.get(scope)
    }

    async fn check_lease(&self, scope: &str) -> StoreResult<()> {
        let dir = self.scope_dir(scope)?;
        self.check_fence(scope, &dir)
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> StoreResult<()> {
        self.renew(lease, ttl)
    }

    async fn release_lease(&self, lease: &Lease) -> StoreResult<()> {
        self.release(lease)
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
    use super::test_support::{block_on, tempdir};
    use super::*;

    #[test]
    fn scopes_that_differ_only_in_punctuation_keep_their_own_state() {
        let dir = tempdir("distinct");
        let store = FileCheckpointStore::open(&dir).unwrap();
        block_on(store.save("keys/a.b", b"one")).unwrap();
        block_on(store.save("keys/a_b", b"two")).unwrap();
        assert_eq!(
            block_on(store.load("keys/a.b")).unwrap().as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(
            block_on(store.load("keys/a_b")).unwrap().as_deref(),
            Some(&b"two"[..])
        );
    }

    #[test]
    fn a_directory_of_the_older_naming_is_taken_over_by_its_scope() {
        let dir = tempdir("legacy");
        // As an earlier version left it: `keys/run.1` in `keys_run_1`, no name file.
        let old = dir.join("keys_run_1");
        fs::create_dir_all(&old).unwrap();
        fs::write(old.join("state.json"), b"{\"cursor\":7}").unwrap();
        let store = FileCheckpointStore::open(&dir).unwrap();
        assert_eq!(
            block_on(store.load("keys/run.1")).unwrap().as_deref(),
            Some(&b"{\"cursor\":7}"[..])
        );
        assert!(!old.exists());
        // Another scope of the same older name finds its own, empty directory.
        assert_eq!(block_on(store.load("keys/run_1")).unwrap(), None);
    }

    #[test]
    fn scopes_lists_the_scopes_with_a_state_under_a_prefix_by_their_own_names() {
        let dir = tempdir("scopes");
        let store = FileCheckpointStore::open(&dir).unwrap();
        assert!(block_on(store.scopes("keys/")).unwrap().is_empty());
        // `keys/a_b` and `keys/a/b` share a directory name; each keeps its own.
        for scope in ["keys/a.b", "keys/a/b", "tier/x", "keys/z"] {
            block_on(store.save(scope, b"{}")).unwrap();
        }
        // A ledger alone (no state) is no run.
        block_on(store.ledger_put(
            "keys/ledger-only",
            "created",
            &[(b"k".to_vec(), b"v".to_vec())],
        ))
        .unwrap();
        let again = FileCheckpointStore::open(&dir).unwrap();
        assert_eq!(
            block_on(again.scopes("keys/")).unwrap(),
            ["keys/a.b", "keys/a/b", "keys/z"]
        );
        block_on(again.clear("keys/z")).unwrap();
        assert_eq!(
            block_on(again.scopes("keys/")).unwrap(),
            ["keys/a.b", "keys/a/b"]
        );
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
}
