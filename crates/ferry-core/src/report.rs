//! Machine-readable run reports (`--report FILE`).

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

/// How many item errors a report lists; the total is always given.
pub const MAX_REPORTED_ERRORS: usize = 1000;

/// One failed item.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ItemError {
    /// The item (a key name, escaped for display).
    pub item: String,
    /// What went wrong.
    pub error: String,
}

/// The report of one action of a job: the fields every job shares, plus job-specific ones.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `keys`, `tier`, ...
    pub job: String,
    /// `apply`, `plan`, ...
    pub action: String,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    /// Wall time.
    pub duration_ms: u64,
    /// Counts.
    pub stats: Value,
    /// Failed items, capped at [`MAX_REPORTED_ERRORS`].
    pub errors: Vec<ItemError>,
    /// Number of failed items in all.
    pub errors_total: u64,
    /// Job-specific fields, flattened into the top level.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Collects item errors up to the cap and counts all of them.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize)]
pub struct ErrorLog {
    /// The first errors.
    pub items: Vec<ItemError>,
    /// All errors.
    pub total: u64,
}

impl ErrorLog {
    /// Records one failed item.
    pub fn push(&mut self, item: impl Into<String>, error: impl Into<String>) {
        self.total += 1;
        if self.items.len() < MAX_REPORTED_ERRORS {
            self.items.push(ItemError {
                item: item.into(),
                error: error.into(),
            });
        }
    }

    /// Adds another log's errors.
    pub fn extend(&mut self, other: ErrorLog) {
        self.total += other.total;
        let room = MAX_REPORTED_ERRORS.saturating_sub(self.items.len());
        self.items.extend(other.items.into_iter().take(room));
    }
}

/// RFC 3339 with milliseconds.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Report {
    /// A report for `job`/`action` that started at `started`; finished now.
    pub fn new(
        job: &str,
        action: &str,
        dry_run: bool,
        started: DateTime<Utc>,
        stats: Value,
        errors: ErrorLog,
    ) -> Self {
        let finished = Utc::now();
        Self {
            job: job.to_string(),
            action: action.to_string(),
            dry_run,
            started_at: rfc3339(started),
            finished_at: rfc3339(finished),
            duration_ms: (finished - started).num_milliseconds().max(0) as u64,
            stats,
            errors: errors.items,
            errors_total: errors.total,
            extra: Map::new(),
        }
    }

    /// Adds a job-specific top-level field.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.extra.insert(
            key.to_string(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }

    /// Writes the report as JSON, YAML or Markdown.
    pub fn write(&self, path: &Path, format: ReportFormat) -> std::io::Result<()> {
        let body = match format {
            ReportFormat::Json => {
                let mut s = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
                s.push('\n');
                s
            }
            ReportFormat::Yaml => serde_yaml_ng::to_string(self).map_err(std::io::Error::other)?,
            ReportFormat::Markdown => self.to_markdown(),
        };
        std::fs::write(path, body)
    }

    /// A Markdown rendering for people.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "# ferry {} {}{}\n\n- started: {}\n- finished: {}\n- duration: {} ms\n\n## Stats\n\n| stat | value |\n|---|---|\n",
            self.job,
            self.action,
            if self.dry_run { " (dry run)" } else { "" },
            self.started_at,
            self.finished_at,
            self.duration_ms
        );
        if let Value::Object(stats) = &self.stats {
            for (k, v) in stats {
                out.push_str(&format!("| {k} | {v} |\n"));
            }
        }
        for (k, v) in &self.extra {
            out.push_str(&format!(
                "\n## {k}\n\n```json\n{}\n```\n",
                serde_json::to_string_pretty(v).unwrap_or_default()
            ));
        }
        out.push_str(&format!("\n## Errors ({})\n\n", self.errors_total));
        for e in &self.errors {
            out.push_str(&format!("- `{}`: {}\n", e.item, e.error));
        }
        out
    }
}

/// Report file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// JSON (default), for machines.
    #[default]
    Json,
    /// YAML: the JSON report's fields, for people and config tooling.
    Yaml,
    /// Markdown, for people.
    Markdown,
}

/// A key shown to people: UTF-8 as is, other bytes as `\xNN`.
// Hand-written rather than `bstr`'s `BStr` Debug, which quotes every key and writes `\0`, `\"`,
// `\'` and `\\` where reports, logs and tests show a key's own quotes and backslashes and NUL
// as `\u{0}`.
pub fn display_key(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for chunk in key.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_the_shared_fields_and_caps_errors() {
        let mut errors = ErrorLog::default();
        for i in 0..(MAX_REPORTED_ERRORS + 5) {
            errors.push(format!("k{i}"), "boom");
        }
        let r = Report::new(
            "keys",
            "apply",
            false,
            Utc::now(),
            serde_json::json!({"migrated": 3}),
            errors,
        )
        .with("keys_per_s", 12.5);
        let v = serde_json::to_value(&r).unwrap();
        for field in [
            "job",
            "action",
            "dry_run",
            "started_at",
            "finished_at",
            "duration_ms",
            "stats",
            "errors",
            "keys_per_s",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["errors"].as_array().unwrap().len(), MAX_REPORTED_ERRORS);
        assert_eq!(v["errors_total"], (MAX_REPORTED_ERRORS + 5) as u64);
        assert!(r.to_markdown().contains("| migrated | 3 |"));
    }

    #[test]
    fn yaml_report_carries_the_json_fields() {
        let r = Report::new(
            "keys",
            "apply",
            true,
            Utc::now(),
            serde_json::json!({"migrated": 3, "failed": 1}),
            ErrorLog::default(),
        )
        .with("keys_per_s", 12.5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.yaml");
        r.write(&path, ReportFormat::Yaml).unwrap();
        let back: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, serde_json::to_value(&r).unwrap());
    }

    #[test]
    fn binary_keys_are_escaped_for_display() {
        assert_eq!(display_key(b"a:\xff\x00b"), "a:\\xff\\u{0}b");
        assert_eq!(display_key("é:x".as_bytes()), "é:x");
    }
}
