//! Ledger files: the CRC'd record format (see [`FileCheckpointStore`] for the layout), reading
//! a file into memory, appending to it, and repairing it before the first append (a torn tail
//! cut off and kept aside, a file in the format before checksums rewritten).

use super::disk::{io_err, read_optional, write_atomically};
use super::*;

const TOMBSTONE: u32 = u32::MAX;
const LEDGER_MAGIC: &[u8; 8] = b"FLEDGER2";
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// One ledger in memory.
pub(super) type LedgerMap = BTreeMap<Vec<u8>, Vec<u8>>;

/// A ledger loaded from its file; `appendable` once the file was checked (torn tail cut off,
/// format current) for this store's appends.
#[derive(Debug)]
pub(super) struct LoadedLedger {
    map: LedgerMap,
    appendable: bool,
}

impl FileCheckpointStore {
    /// Runs `f` on the in-memory copy of a ledger, loading it from its file first.
    pub(super) fn with_ledger<T>(
        &self,
        path: &Path,
        f: impl FnOnce(&mut LedgerMap) -> T,
    ) -> StoreResult<T> {
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
    pub(super) fn append(
        &self,
        path: &Path,
        records: &[(&[u8], Option<&[u8]>)],
    ) -> StoreResult<()> {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{all_entries, block_on, entry, tempdir};
    use super::*;

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
}
