//! A job's card on the dashboard's overview: one shape for every job, so that a new job appears
//! on the page by returning a card from its `routes::card` (registered in `jobs::cards`), never
//! by editing the page.

use serde::Serialize;

/// What a job is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Configured, nothing to do right now.
    Idle,
    /// Working.
    Running,
    /// Its last attempt failed, or a store it needs does not answer.
    Failing,
    /// Paused through the API.
    Paused,
    /// Stopped for good (a failure retrying cannot cure, or a finished run).
    Stopped,
}

/// The health of one store a job uses.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoreHealth {
    /// What it is to the job (`redis`, `store`, `kafka`, `checkpoint`…).
    pub role: String,
    /// Its kind (`Redis`, `PostgreSQL`, `SQLite`, `Kafka`, `FalkorDB`, `Milvus`…).
    pub kind: String,
    /// Whether it answered.
    pub ok: bool,
    /// `ok`, or why not.
    pub detail: String,
}

impl StoreHealth {
    /// A store that answered (`Ok`) or did not (`Err(why)`).
    pub fn new(role: &str, kind: &str, answer: Result<(), String>) -> Self {
        StoreHealth {
            role: role.into(),
            kind: kind.into(),
            ok: answer.is_ok(),
            detail: answer.err().unwrap_or_else(|| "ok".into()),
        }
    }
}

/// Done out of total, for a progress bar.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Progress {
    /// Items done.
    pub done: u64,
    /// Items in all (an estimate for some jobs).
    pub total: u64,
}

/// A line of the card: a label and its value, as text.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Fact {
    /// What it is.
    pub label: String,
    /// Its value.
    pub value: String,
}

/// A chart the card draws from the metric history.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Chart {
    /// Its title.
    pub title: String,
    /// The metric drawn (every series of it).
    pub metric: &'static str,
    /// `rate`: per-second increase of a counter; `value`: the values as they are.
    pub show: &'static str,
}

/// An action the card offers (each needs the admin token).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Action {
    /// The button's label.
    pub label: String,
    /// The endpoint it `POST`s to.
    pub path: String,
}

/// One job on the overview.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobCard {
    /// The job's id (`tier`, `events`, `bridge:NAME`, `keys`, `vectors:NAME`).
    pub id: String,
    /// The job (`tier`, `events`, `bridge`, `keys`, `vectors`).
    pub kind: &'static str,
    /// A one-line title.
    pub title: String,
    /// What it is doing.
    pub state: JobState,
    /// Why it is in that state, when that needs saying (the last error, say).
    pub reason: Option<String>,
    /// When it last ran or last did something (RFC 3339).
    pub last_run: Option<String>,
    /// When it runs next, for scheduled jobs (RFC 3339).
    pub next_run: Option<String>,
    /// Items per second over the last minute, from the metric history.
    pub throughput: Option<f64>,
    /// What the throughput counts.
    pub throughput_unit: &'static str,
    /// Errors counted (failures, dead letters, refused items).
    pub errors: u64,
    /// Done out of total, when the job has an end.
    pub progress: Option<Progress>,
    /// The stores it uses and whether they answer.
    pub stores: Vec<StoreHealth>,
    /// Other figures worth a glance.
    pub facts: Vec<Fact>,
    /// Charts from the metric history.
    pub charts: Vec<Chart>,
    /// What a person may do (admin token).
    pub actions: Vec<Action>,
    /// Whether it can be paused and resumed (`POST /api/v1/jobs/{id}/pause|resume`).
    pub pausable: bool,
}

impl JobCard {
    /// A card with only its identity set (idle, no figures).
    pub fn new(id: impl Into<String>, kind: &'static str, title: impl Into<String>) -> Self {
        JobCard {
            id: id.into(),
            kind,
            title: title.into(),
            state: JobState::Idle,
            reason: None,
            last_run: None,
            next_run: None,
            throughput: None,
            throughput_unit: "items",
            errors: 0,
            progress: None,
            stores: Vec::new(),
            facts: Vec::new(),
            charts: Vec::new(),
            actions: Vec::new(),
            pausable: false,
        }
    }

    /// Adds a fact.
    pub fn fact(&mut self, label: &str, value: impl ToString) -> &mut Self {
        self.facts.push(Fact {
            label: label.into(),
            value: value.to_string(),
        });
        self
    }

    /// Adds a chart of `metric`.
    pub fn chart(&mut self, title: &str, metric: &'static str, show: &'static str) -> &mut Self {
        self.charts.push(Chart {
            title: title.into(),
            metric,
            show,
        });
        self
    }

    /// Adds an action posting to `path`.
    pub fn action(&mut self, label: &str, path: &str) -> &mut Self {
        self.actions.push(Action {
            label: label.into(),
            path: path.into(),
        });
        self
    }

    /// Marks the card failing with `reason` when a store does not answer (a paused job stays
    /// paused).
    pub fn fail_on_stores(&mut self) {
        if let Some(bad) = self.stores.iter().find(|s| !s.ok)
            && self.state != JobState::Paused
        {
            self.state = JobState::Failing;
            self.reason
                .get_or_insert_with(|| format!("{} ({}): {}", bad.role, bad.kind, bad.detail));
        }
    }
}
