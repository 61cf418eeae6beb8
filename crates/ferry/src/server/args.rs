//! `ferry serve`'s options on the command line.

use clap::Args;
use ferry_core::secret::Secret;

use crate::cli::secret;

/// Options of `ferry serve` (over `[serve]` of the config file).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTP API.
    #[arg(long, env = "FERRY_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// Admin bearer token: may call every endpoint. With a token set, every endpoint but
    /// /healthz needs one.
    #[arg(long, env = "FERRY_SERVE_TOKEN", hide_env_values = true, value_parser = secret)]
    pub token: Option<Secret>,
    /// Read-only bearer token: GET and HEAD endpoints only (needs an admin token too).
    #[arg(long, env = "FERRY_SERVE_READ_TOKEN", hide_env_values = true, value_parser = secret)]
    pub read_token: Option<Secret>,
    /// Serve the API without any token on an address other than loopback (refused otherwise).
    #[arg(long)]
    pub insecure: bool,
    /// Seconds between tier passes.
    #[arg(long, value_name = "SECONDS", value_parser = interval_seconds, allow_hyphen_values = true)]
    pub interval: Option<f64>,
    /// Answer GET requests (the dashboard, status endpoints) without a token; changes still
    /// need the admin token.
    #[arg(long)]
    pub public_read: bool,
}

impl ServeArgs {
    /// Overrides `o` with the flags and `FERRY_*` variables given; an empty token, from a flag
    /// or a variable, is an error naming it.
    pub fn apply_to(&self, o: &mut super::ServeOptions) -> Result<(), String> {
        use ferry_core::secret::ExposeSecret;
        for (flag, var, given) in [
            ("--token", "FERRY_SERVE_TOKEN", &self.token),
            ("--read-token", "FERRY_SERVE_READ_TOKEN", &self.read_token),
        ] {
            let empty_var = std::env::var_os(var).is_some_and(|v| v.is_empty());
            if empty_var || given.as_ref().is_some_and(|t| t.expose_secret().is_empty()) {
                return Err(format!(
                    "{flag} (or {var}) is empty: an empty token is refused rather than taken as \
                     \"no authentication\"; set a token or unset it"
                ));
            }
        }
        if let Some(l) = self.listen {
            o.listen = l;
        }
        if let Some(t) = &self.token {
            o.token = Some(t.clone());
        }
        if let Some(t) = &self.read_token {
            o.read_token = Some(t.clone());
        }
        o.insecure |= self.insecure;
        o.public_read |= self.public_read;
        if let Some(i) = self.interval {
            o.interval = std::time::Duration::from_secs_f64(i);
        }
        Ok(())
    }
}

/// `--interval`: as [`seconds`], and not 0 (the pass loop would spin).
fn interval_seconds(value: &str) -> Result<f64, String> {
    crate::cli::parse_seconds(
        "--interval",
        value,
        Some("the tier pass loop of `ferry serve` would run without pause"),
    )
}
