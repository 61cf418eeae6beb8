//! What the file store's tests share: a runner for its futures (which never wait), fresh
//! directories, and ledger helpers.

use super::ledger::LedgerMap;
use super::*;

/// Runs a future of the file store to completion.
pub(super) fn block_on<F: Future>(f: F) -> F::Output {
    // The file store never awaits anything, so a single poll completes it.
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("file store future was pending"),
    }
}

/// A fresh, not yet created directory for the test `name`.
pub(super) fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ferry-core-{name}-{}-{}",
        std::process::id(),
        now_ms()
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// A ledger entry from strings.
pub(super) fn entry(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

/// Every entry of a ledger, read in one page.
pub(super) fn all_entries(store: &FileCheckpointStore, scope: &str, ledger: &str) -> LedgerMap {
    let (next, page) = block_on(store.ledger_page(scope, ledger, 0, usize::MAX)).unwrap();
    assert_eq!(next, 0);
    page.into_iter().collect()
}
