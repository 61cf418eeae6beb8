//! A missing redis-server is a failure that names the setup command, never a silent skip.
//!
//! The test runs itself again as a child process with `FERRY_REDIS_SERVER=/nonexistent`
//! (changing the environment of a running test process would need `unsafe`, which the workspace
//! forbids, and could disturb other tests); in the child, starting a server must panic with a
//! message that names `make test-setup`.

use std::env;
use std::panic;
use std::process::Command;

const TEST: &str = "a_missing_redis_server_names_make_test_setup";
const MISSING: &str = "/nonexistent";

#[test]
fn a_missing_redis_server_names_make_test_setup() {
    if env::var_os("FERRY_REDIS_SERVER").is_some_and(|v| v == MISSING) {
        let err = panic::catch_unwind(ferry_testkit::RedisServer::start)
            .expect_err("starting without a redis-server binary panics");
        let msg = err
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(msg.contains("redis-server not found"), "{msg}");
        assert!(msg.contains("make test-setup"), "{msg}");
        assert!(msg.contains(MISSING), "{msg}");
        return;
    }
    let out = Command::new(env::current_exe().expect("the test binary"))
        .args(["--exact", TEST, "--test-threads=1", "--nocapture"])
        .env("FERRY_REDIS_SERVER", MISSING)
        .output()
        .expect("run the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child run failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran the test:\n{stdout}"
    );
    assert!(
        stderr.contains("make test-setup"),
        "the panic message:\n{stderr}"
    );
}
