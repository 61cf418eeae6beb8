//! Running `ferry keys` and reading the Redis it worked on, for the keys job's tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use redis::{Commands, Connection};

/// The lease key of the default keys job (`--job default`).
pub const LEASE_KEY: &str = "ferry:{keys/default}:lease";

/// Rules that rename every `old:{id}` to `new:{id}`.
pub const OLD_TO_NEW_RULES: &str =
    "[[rule]]\nname = \"all\"\nfrom = \"old:{id..}\"\nto = \"new:{id}\"\n";

/// The seed's rules (`config/examples/seed-002-rules.toml`): `josancamon:rayban-meta-glasses-api:…`
/// to `meta-glasses:…`.
pub fn seed_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/examples/seed-002-rules.toml")
}

/// The key mapper of [`seed_rules`].
pub fn seed_key_mapper() -> ferry::compat::KeyMapper {
    ferry::compat::KeyMapper::from_file(&seed_rules()).unwrap()
}

/// Writes `body` to `dir/rules.toml`; returns its path.
pub fn write_rules(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("rules.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// Runs `ferry ARGS…` without the password variables of the environment.
pub fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env_remove("FERRY_SOURCE_PASSWORD")
        .env_remove("FERRY_TARGET_PASSWORD")
        .output()
        .expect("run ferry")
}

/// The command `ferry keys ACTION --source SRC --rules RULES EXTRA…`, without the password
/// variables of the environment.
pub fn keys_command(action: &str, src: &str, rules: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.args(["keys", action, "--source", src, "--rules"])
        .arg(rules)
        .args(extra)
        .env_remove("FERRY_SOURCE_PASSWORD")
        .env_remove("FERRY_TARGET_PASSWORD");
    c
}

/// Runs `ferry keys ACTION --source SRC --rules RULES EXTRA…`.
pub fn keys_with_rules(action: &str, src: &str, rules: &Path, extra: &[&str]) -> Output {
    keys_command(action, src, rules, extra)
        .output()
        .expect("run ferry")
}

/// Runs `ferry keys ACTION --source SRC --rules <seed rules> EXTRA…`.
pub fn keys(action: &str, src: &str, extra: &[&str]) -> Output {
    keys_with_rules(action, src, &seed_rules(), extra)
}

/// Starts `ferry keys apply --source SRC --rules <seed rules> -y EXTRA…` in the background
/// with a 2 s lease; `output` gives its stdout and stderr (`Stdio::piped`, `Stdio::null`).
pub fn spawn_apply(src: &str, extra: &[&str], output: fn() -> Stdio) -> Child {
    keys_command("apply", src, &seed_rules(), &[&["-y"][..], extra].concat())
        // A killed run's lease expires after 2 s instead of 30 s.
        .env("FERRY_LEASE_TTL_MS", "2000")
        .stdout(output())
        .stderr(output())
        .spawn()
        .unwrap()
}

/// Sends `sig` (`-TERM`, `-STOP`, …) to `child` with `kill`.
pub fn send_signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig}");
}

/// The JSON report a run wrote to `path` (`--report`).
pub fn read_report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Asserts that stdout or stderr of a run contains `needle`, showing both when not.
pub fn assert_output_has(o: &Output, needle: &str) {
    let all = ferry_testkit::output_text(o);
    assert!(all.contains(needle), "expected {needle:?} in\n{all}");
}

/// Writes the seed's data set of `n` records (`ferry::demo`), pipelined.
pub fn fill_seed(conn: &mut Connection, n: usize) {
    let cmds = ferry::demo::seed_commands(n, 11);
    for chunk in cmds.chunks(1000) {
        let mut p = redis::pipe();
        for c in chunk {
            p.add_command(c.clone()).ignore();
        }
        let () = p.query(conn).unwrap();
    }
}

/// `DEBUG DIGEST` of the whole server: equal exactly when the data is.
pub fn digest(conn: &mut Connection) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(conn).unwrap()
}

/// How many keys SCAN returns for `pattern`.
pub fn count_keys_matching(conn: &mut Connection, pattern: &str) -> usize {
    let keys: redis::RedisResult<Vec<Vec<u8>>> = conn.scan_match(pattern).unwrap().collect();
    keys.unwrap().len()
}

/// The keys matching `pattern`, as text, sorted.
pub fn keys_matching(conn: &mut Connection, pattern: &str) -> Vec<String> {
    let mut out: Vec<String> = conn
        .scan_match::<_, String>(pattern)
        .unwrap()
        .map(|k| k.unwrap())
        .collect();
    out.sort();
    out
}

/// The keys starting with `prefix`, sorted.
pub fn keys_with_prefix(conn: &mut Connection, prefix: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = conn
        .scan_match::<_, Vec<u8>>(format!("{prefix}*"))
        .unwrap()
        .map(|k| k.unwrap())
        .collect();
    out.sort();
    out
}

/// Waits (up to 30 s) until a background apply of the seed rules holds its lease and has
/// written `min_new` new keys, so that tests act mid-run however slow the machine is.
pub fn wait_until_running(conn: &mut Connection, min_new: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lease: bool = conn.exists(LEASE_KEY).unwrap();
        if lease && count_keys_matching(conn, "meta-glasses:*") >= min_new {
            return;
        }
        assert!(Instant::now() < deadline, "the apply did not get going");
        std::thread::sleep(Duration::from_millis(50));
    }
}
