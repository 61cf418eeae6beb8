//! A Redis 8 vector set as a vector migration's target: `VADD` with binary `FP32` blobs (never
//! `VALUES`, 10-20x dearer for the server to parse), pipelined; element names are the ids'
//! text. Quantisation (`NOQUANT`, `Q8`, `BIN`) and the HNSW build options (`EF`, `M`) are fixed
//! when the set is created; a set that exists with other ones is refused, as Redis itself would.

use ferry_core::jobs::vectors::{
    IdKind, ItemFailure, Quantization, TargetInfo, VectorError, VectorId, VectorResult,
    VectorTarget,
};
use std::sync::{Arc, RwLock};

use redis::{Cmd, RedisResult, Value};

use super::{ConnError, RedisEndpoint};

/// How the vector set stores and links its vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorSetOptions {
    /// `NOQUANT`, `Q8` (Redis' default) or `BIN`.
    pub quantization: Quantization,
    /// `EF`: candidates explored when inserting (Redis' default 200): higher is slower to build
    /// and finds better neighbours.
    pub ef: Option<u32>,
    /// `M`: links per node (Redis' default 16): more memory, slower inserts, better recall.
    pub m: Option<u32>,
    /// `CAS`: let a background thread find each new vector's neighbours, the main thread only
    /// links them (faster on several cores).
    pub cas: bool,
}

impl Default for VectorSetOptions {
    fn default() -> Self {
        VectorSetOptions {
            quantization: Quantization::Q8,
            ef: None,
            m: None,
            cas: false,
        }
    }
}

/// One vector set on a Redis 8 server (or Cluster: the set is one key).
pub struct VectorSetTarget {
    url: String,
    endpoint: RwLock<Arc<RedisEndpoint>>,
    key: String,
    options: VectorSetOptions,
}

impl std::fmt::Debug for VectorSetTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it may hold a password.
        f.debug_struct("VectorSetTarget")
            .field("server", &self.endpoint().display())
            .field("key", &self.key)
            .field("options", &self.options)
            .finish()
    }
}

fn backend(endpoint: &RedisEndpoint, e: impl std::fmt::Display) -> VectorError {
    VectorError::Backend {
        store: format!("Redis at {}", endpoint.display()),
        message: e.to_string(),
    }
}

fn conn_error(e: ConnError) -> VectorError {
    match e {
        ConnError::Url { .. } | ConnError::Auth { .. } => VectorError::Config(e.to_string()),
        ConnError::Connect { endpoint, source } => VectorError::Unreachable {
            store: format!("Redis at {endpoint}"),
            message: format!(
                "{source}; check that the server runs and the host and port are right"
            ),
        },
        other => VectorError::Backend {
            store: "Redis".into(),
            message: other.to_string(),
        },
    }
}

/// Little-endian `FP32` blob of a vector.
pub fn fp32_blob(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl VectorSetTarget {
    /// Connects to the Redis 8 server named by `url` (`redis://`, `rediss://`); `key` names
    /// the vector set.
    pub async fn open(url: &str, key: &str, options: VectorSetOptions) -> VectorResult<Self> {
        if key.is_empty() {
            return Err(VectorError::Config(
                "the vector set name is empty: pass --vector-set NAME".into(),
            ));
        }
        for (name, value) in [("EF", options.ef), ("M", options.m)] {
            if value == Some(0) {
                return Err(VectorError::Config(format!(
                    "the vector set's {name} must be at least 1"
                )));
            }
        }
        let endpoint = RedisEndpoint::connect(url, None)
            .await
            .map_err(conn_error)?;
        if endpoint.version() < (8, 0) {
            let (major, minor) = endpoint.version();
            return Err(VectorError::Config(format!(
                "Redis at {} is version {major}.{minor}; vector sets (VADD) need Redis 8 or later",
                endpoint.display()
            )));
        }
        Ok(VectorSetTarget {
            url: url.to_string(),
            endpoint: RwLock::new(Arc::new(endpoint)),
            key: key.to_string(),
            options,
        })
    }

    /// The vector set's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The server this set lives on (its current connection).
    pub fn endpoint(&self) -> Arc<RedisEndpoint> {
        self.endpoint
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Bytes the set takes in the server's memory (`MEMORY USAGE … SAMPLES 0`), if it exists.
    pub async fn memory_usage(&self) -> VectorResult<Option<u64>> {
        let mut c = redis::cmd("MEMORY");
        c.arg("USAGE").arg(&self.key).arg("SAMPLES").arg(0);
        Ok(match self.one(c).await? {
            Value::Int(n) => Some(n.max(0) as u64),
            _ => None,
        })
    }

    /// Runs the commands; when the connection broke (a restarted server), connects again
    /// once and runs them again — every command sent here (VADD, VREM, reads) is idempotent.
    async fn run(&self, cmds: Vec<Cmd>) -> VectorResult<Vec<RedisResult<Value>>> {
        let key = self.key.as_bytes().to_vec();
        let routed: Vec<(Vec<u8>, Cmd)> = cmds.into_iter().map(|c| (key.clone(), c)).collect();
        match self.endpoint().run(routed.clone()).await {
            Ok(replies) => Ok(replies),
            Err(broken @ (ConnError::Command { .. } | ConnError::Connect { .. })) => {
                let Ok(fresh) = RedisEndpoint::connect(&self.url, None).await else {
                    return Err(conn_error(broken));
                };
                let fresh = Arc::new(fresh);
                *self.endpoint.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
                tracing::info!(
                    server = fresh.display(),
                    "reconnected to the vector set's server"
                );
                fresh.run(routed).await.map_err(conn_error)
            }
            Err(e) => Err(conn_error(e)),
        }
    }

    async fn one(&self, cmd: Cmd) -> VectorResult<Value> {
        let reply = self.run(vec![cmd]).await?.pop();
        reply
            .unwrap_or(Ok(Value::Nil))
            .map_err(|e| backend(&self.endpoint(), e))
    }

    fn cmd(&self, name: &str) -> Cmd {
        let mut c = redis::cmd(name);
        c.arg(&self.key);
        c
    }

    fn vadd(&self, id: &VectorId, vector: &[f32]) -> Cmd {
        let mut c = self.cmd("VADD");
        c.arg("FP32").arg(fp32_blob(vector)).arg(id.to_text());
        if self.options.cas {
            c.arg("CAS");
        }
        c.arg(match self.options.quantization {
            Quantization::NoQuant => "NOQUANT",
            Quantization::Q8 => "Q8",
            Quantization::Bin => "BIN",
        });
        if let Some(ef) = self.options.ef {
            c.arg("EF").arg(ef);
        }
        if let Some(m) = self.options.m {
            c.arg("M").arg(m);
        }
        c
    }

    /// `VINFO` as name → value pairs (`None` when the set does not exist).
    async fn info(&self) -> VectorResult<Option<Vec<(String, Value)>>> {
        let kind = self.one(self.cmd("TYPE")).await?;
        match text(&kind).as_deref() {
            Some("none") => return Ok(None),
            Some("vectorset") => {}
            other => {
                return Err(VectorError::Mismatch(format!(
                    "key `{}` on {} holds a {}, not a vector set: choose another --vector-set name",
                    self.key,
                    self.endpoint().display(),
                    other.unwrap_or("value of unknown type")
                )));
            }
        }
        let reply = self.one(self.cmd("VINFO")).await?;
        Ok(Some(pairs(reply)))
    }
}

/// A reply as text, where it is one.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::SimpleString(s) => Some(s.clone()),
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Double(d) => Some(*d),
        other => text(other)?.parse().ok(),
    }
}

/// A flat array or a map reply as (name, value) pairs.
fn pairs(reply: Value) -> Vec<(String, Value)> {
    match reply {
        Value::Map(entries) => entries
            .into_iter()
            .filter_map(|(k, v)| Some((text(&k)?, v)))
            .collect(),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if let Some(k) = text(&k) {
                    out.push((k, v));
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

fn field<'a>(info: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    info.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn quantization_of(name: &str) -> Option<Quantization> {
    match name {
        "f32" | "noquant" => Some(Quantization::NoQuant),
        "int8" | "q8" => Some(Quantization::Q8),
        "bin" | "binary" => Some(Quantization::Bin),
        _ => None,
    }
}

fn ids_of(reply: Value, kind: IdKind) -> Vec<VectorId> {
    let items = match reply {
        Value::Array(items) | Value::Set(items) => items,
        Value::Nil => Vec::new(),
        one => vec![one],
    };
    items
        .iter()
        .filter_map(text)
        .map(|t| VectorId::from_text(&t, kind).unwrap_or(VectorId::Str(t)))
        .collect()
}

impl VectorTarget for VectorSetTarget {
    async fn describe(&self) -> VectorResult<TargetInfo> {
        let (major, minor) = self.endpoint().version();
        let mut out = TargetInfo {
            store: "redis-vectorset".into(),
            version: format!("{major}.{minor}"),
            exists: false,
            dimension: None,
            metric: Some("cosine".into()),
            quantization: None,
            id_kind: None,
            items: 0,
        };
        if let Some(info) = self.info().await? {
            out.exists = true;
            out.dimension = field(&info, "vector-dim")
                .and_then(number)
                .map(|d| d as usize);
            out.quantization = field(&info, "quant-type")
                .and_then(text)
                .and_then(|q| quantization_of(&q));
            out.items = field(&info, "size").and_then(number).unwrap_or(0.0) as u64;
        }
        Ok(out)
    }

    fn quantization(&self) -> Quantization {
        self.options.quantization
    }

    async fn prepare(&self, dimension: usize, _kind: IdKind) -> VectorResult<()> {
        let Some(info) = self.info().await? else {
            return Ok(());
        };
        let shown = format!("vector set `{}` on {}", self.key, self.endpoint().display());
        let dim = field(&info, "vector-dim")
            .and_then(number)
            .map(|d| d as usize);
        if dim.is_some_and(|d| d != dimension) {
            return Err(VectorError::Mismatch(format!(
                "{shown} holds {}-dimensional vectors, the source's are {dimension}-dimensional: use another vector set or delete this one",
                dim.unwrap_or(0)
            )));
        }
        let quant = field(&info, "quant-type").and_then(text);
        if let Some(q) = quant.as_deref().and_then(quantization_of)
            && q != self.options.quantization
        {
            return Err(VectorError::Mismatch(format!(
                "{shown} is quantised as {q}, not {}: pass --quant {q} or use another vector set",
                self.options.quantization
            )));
        }
        let m = field(&info, "hnsw-m").and_then(number).map(|m| m as u32);
        if let (Some(want), Some(have)) = (self.options.m, m)
            && want != have
        {
            return Err(VectorError::Mismatch(format!(
                "{shown} was built with M {have}, not {want}: pass --m {have} or use another vector set"
            )));
        }
        Ok(())
    }

    async fn upsert(&self, items: &[(VectorId, Vec<f32>)]) -> VectorResult<Vec<ItemFailure>> {
        let cmds = items.iter().map(|(id, v)| self.vadd(id, v)).collect();
        let replies = self.run(cmds).await?;
        Ok(items
            .iter()
            .zip(replies)
            .filter_map(|((id, _), reply)| {
                reply.err().map(|e| ItemFailure {
                    id: id.clone(),
                    error: format!("VADD failed: {e}"),
                })
            })
            .collect())
    }

    async fn get(&self, ids: &[VectorId]) -> VectorResult<Vec<Option<Vec<f32>>>> {
        let cmds = ids
            .iter()
            .map(|id| {
                let mut c = self.cmd("VEMB");
                c.arg(id.to_text());
                c
            })
            .collect();
        let replies = self.run(cmds).await?;
        replies
            .into_iter()
            .map(|reply| match reply {
                Ok(Value::Array(xs)) => Ok(Some(
                    xs.iter()
                        .map(|x| number(x).unwrap_or(f64::NAN) as f32)
                        .collect(),
                )),
                Ok(_) => Ok(None),
                Err(e) if e.to_string().contains("not found") => Ok(None),
                Err(e) => Err(backend(&self.endpoint(), e)),
            })
            .collect()
    }

    async fn delete(&self, ids: &[VectorId]) -> VectorResult<u64> {
        let cmds = ids
            .iter()
            .map(|id| {
                let mut c = self.cmd("VREM");
                c.arg(id.to_text());
                c
            })
            .collect();
        let mut removed = 0;
        for reply in self.run(cmds).await? {
            if let Value::Int(n) = reply.map_err(|e| backend(&self.endpoint(), e))? {
                removed += n.max(0) as u64;
            }
        }
        Ok(removed)
    }

    async fn ids(&self, kind: IdKind) -> VectorResult<Vec<VectorId>> {
        let card = match self.one(self.cmd("VCARD")).await? {
            Value::Int(n) => n.max(0),
            _ => 0,
        };
        if card == 0 {
            return Ok(Vec::new());
        }
        // A positive count at least the set's size returns every element once.
        let mut c = self.cmd("VRANDMEMBER");
        c.arg(card);
        Ok(ids_of(self.one(c).await?, kind))
    }

    async fn sample(&self, n: usize, kind: IdKind) -> VectorResult<Vec<VectorId>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut c = self.cmd("VRANDMEMBER");
        c.arg(n);
        Ok(ids_of(self.one(c).await?, kind))
    }

    async fn search(
        &self,
        vector: &[f32],
        k: usize,
        kind: IdKind,
    ) -> VectorResult<Vec<(VectorId, f32)>> {
        let mut c = self.cmd("VSIM");
        c.arg("FP32")
            .arg(fp32_blob(vector))
            .arg("WITHSCORES")
            .arg("COUNT")
            .arg(k.max(1));
        let reply = self.one(c).await?;
        Ok(pairs(reply)
            .into_iter()
            .map(|(name, score)| {
                let id = VectorId::from_text(&name, kind).unwrap_or(VectorId::Str(name));
                (id, number(&score).unwrap_or(0.0) as f32)
            })
            .collect())
    }

    async fn drop_all(&self) -> VectorResult<()> {
        self.one(self.cmd("UNLINK")).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_little_endian() {
        assert_eq!(fp32_blob(&[1.0]), 1.0_f32.to_le_bytes().to_vec());
        assert_eq!(fp32_blob(&[]), Vec::<u8>::new());
    }

    #[test]
    fn vinfo_names_map_to_quantisations() {
        assert_eq!(quantization_of("f32"), Some(Quantization::NoQuant));
        assert_eq!(quantization_of("int8"), Some(Quantization::Q8));
        assert_eq!(quantization_of("bin"), Some(Quantization::Bin));
        assert_eq!(quantization_of("q4"), None);
    }
}
