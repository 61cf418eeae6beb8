//! A `ferry serve` child process and raw HTTP/1.1 requests to it, for the tests that need a real
//! socket (the rest go through [`super::call`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A started `ferry serve`, killed on drop.
pub struct Serve {
    child: Child,
    /// The address from its `listening on http://ADDR` line.
    pub addr: String,
}

impl Serve {
    /// Spawns `command` (a `ferry serve …` whose environment and stderr the caller has set) with
    /// stdout piped and waits for its `listening on http://ADDR` line; panics with
    /// `no_address` if stdout ends without one.
    pub fn start(command: &mut Command, no_address: &str) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("start ferry serve");
        let stdout = child.stdout.take().unwrap();
        let addr = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("listening on http://").map(str::to_string))
            .unwrap_or_else(|| panic!("{no_address}"));
        Serve { child, addr }
    }

    /// `127.0.0.1:PORT` at the port the server bound (its address may be `0.0.0.0:PORT`).
    pub fn loopback(&self) -> String {
        let port = self.addr.rsplit(':').next().unwrap();
        format!("127.0.0.1:{}", port.parse::<u16>().unwrap())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request on a new connection to `addr` (`Connection: close`), with `Authorization: Bearer
/// TOKEN` when `token` is given and `body` sent as JSON when given; the status and the body.
/// Panics if no answer comes within `timeout`.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    timeout: Duration,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to ferry serve");
    s.set_read_timeout(Some(timeout)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let content = body.map_or(String::new(), |b| {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        )
    });
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{content}Connection: close\r\n\r\n{}",
        body.unwrap_or("")
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .unwrap_or_else(|e| panic!("{method} {path}: no answer within {timeout:?}: {e}"));
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}
