//! FalkorDB URLs (`falkordb://[user:password@]host:port[/graph]`) and connections, shared by
//! the event store and the vector source.

use redis::aio::MultiplexedConnection;
use std::time::Duration;

/// How long a query's reply is awaited.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);

use crate::schema;

/// A parsed FalkorDB URL.
#[derive(Debug, Clone)]
pub(crate) struct FalkorUrl {
    /// The same server as a `redis://` URL (no graph).
    redis: String,
    /// The graph named by the path, percent-decoded (`None` when the path is empty).
    pub graph: Option<String>,
    /// The URL without its password, for messages.
    pub shown: String,
}

impl FalkorUrl {
    /// Parses `url`; the error says what a FalkorDB URL looks like.
    pub fn parse(url: &str) -> Result<Self, String> {
        let shape = "a FalkorDB URL is falkordb://[user:password@]host:port[/graph]";
        let parsed = url::Url::parse(url)
            .ok()
            .filter(|u| u.scheme() == "falkordb" && u.host_str().is_some())
            .ok_or_else(|| shape.to_string())?;
        let graph = percent_decode(parsed.path().trim_start_matches('/'))
            .ok_or_else(|| format!("{shape}; the graph name is not UTF-8 once decoded"))?;
        let mut redis_url = parsed;
        redis_url
            .set_scheme("redis")
            .map_err(|_| shape.to_string())?;
        redis_url.set_path("");
        Ok(FalkorUrl {
            redis: redis_url.into(),
            graph: (!graph.is_empty()).then_some(graph),
            shown: schema::redact_url(url),
        })
    }

    /// Opens a multiplexed connection to the server. Queries may take long on a big graph
    /// (a page sorted by id, a count over every node): replies are awaited up to
    /// [`RESPONSE_TIMEOUT`], not the client library's default half second.
    pub async fn connect(&self) -> Result<MultiplexedConnection, String> {
        let failed = |e: redis::RedisError| {
            format!(
                "cannot connect to FalkorDB at {}: {e}; is it running with the falkordb module loaded?",
                self.shown
            )
        };
        redis::Client::open(self.redis.as_str())
            .map_err(failed)?
            .get_multiplexed_async_connection_with_config(
                &redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(5)))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT)),
            )
            .await
            .map_err(failed)
    }
}

/// Decodes `%XX` escapes; `None` when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = s.get(i + 1..i + 3).filter(|_| b[i] == b'%');
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_graph_and_hide_the_password() {
        let u = FalkorUrl::parse("falkordb://u:hunter2@127.0.0.1:6380/my%20graph%C3%A9").unwrap();
        assert_eq!(u.graph.as_deref(), Some("my graphé"));
        assert_eq!(u.redis, "redis://u:hunter2@127.0.0.1:6380");
        assert!(!u.shown.contains("hunter2"), "{}", u.shown);
        assert_eq!(FalkorUrl::parse("falkordb://h:1").unwrap().graph, None);
        assert_eq!(FalkorUrl::parse("falkordb://h:1/").unwrap().graph, None);
        for bad in ["redis://h:1/g", "falkordb:///g", "falkordb://h:1/%FF"] {
            assert!(FalkorUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
