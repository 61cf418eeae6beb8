//! The keys job inside `ferry serve` (when `[keys] source` and `rules` are set): its runs read
//! from the checkpoint store, a verify started from the API, the plan of the configured rules,
//! and its dashboard card (`/api/v1/keys/*`). `ferry serve` never applies or rolls back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use ferry_core::checkpoint::CheckpointStore;
use ferry_core::error::Classify;
use serde::Serialize;
use serde_json::json;
use tokio::sync::OnceCell;

use super::{KeysContext, KeysError, KeysOptions, KeysState, PlanOutcome, VerifyOutcome};
use crate::server::card::{JobCard, JobState, Progress, StoreHealth};
use crate::server::error::{ApiError, class_status};
use crate::server::{AppState, Endpoint};

/// The job's id on the dashboard.
pub const JOB: &str = "keys";

/// The keys job as `ferry serve` watches it.
#[derive(Debug)]
pub struct ServedKeys {
    options: KeysOptions,
    context: OnceCell<KeysContext>,
    verifies: Mutex<BTreeMap<String, VerifyRecord>>,
    plan: tokio::sync::Mutex<Option<PlanRecord>>,
}

/// The last verify of a run started from the API.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyRecord {
    /// `running`, `done` or `failed`.
    pub state: &'static str,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its counts, once done.
    pub outcome: Option<VerifyOutcome>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The plan of the configured rules, as last computed.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRecord {
    /// When it was computed.
    pub computed_at: DateTime<Utc>,
    /// What apply would do.
    pub plan: PlanOutcome,
}

/// One run in the list: its saved state and what follows from it.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    /// The run name.
    pub run_name: String,
    /// What the run is doing: its saved state, except that a `running` run whose lease nobody
    /// holds has died (killed, crashed) and is `interrupted`: `keys apply` resumes it.
    pub status: String,
    /// The process holding the run's lease, while one does.
    pub holder: Option<String>,
    /// The saved state (`None` when it cannot be read).
    pub state: Option<KeysState>,
    /// Keys scanned per second over the run so far.
    pub rate_per_s: Option<f64>,
    /// Seconds left at that rate (while running).
    pub eta_s: Option<f64>,
    /// Each source master: `done`, or `scanning` with its SCAN cursor, or `waiting`.
    pub masters: Vec<MasterView>,
    /// The last verify started from the API.
    pub verify: Option<VerifyRecord>,
}

/// One source master of a run.
#[derive(Debug, Clone, Serialize)]
pub struct MasterView {
    /// `host:port`.
    pub node: String,
    /// `done`, `scanning` or `waiting`.
    pub state: &'static str,
    /// The SCAN cursor saved last.
    pub cursor: Option<u64>,
}

impl ServedKeys {
    /// Watches the runs of the job `options` describe (connected on first use).
    pub fn new(options: KeysOptions) -> Self {
        ServedKeys {
            options,
            context: OnceCell::new(),
            verifies: Mutex::new(BTreeMap::new()),
            plan: tokio::sync::Mutex::new(None),
        }
    }

    /// The connected job (source, target, rules, checkpoint store), connecting on first use.
    async fn context(&self) -> Result<&KeysContext, KeysError> {
        self.context
            .get_or_try_init(|| KeysContext::connect(self.options.clone()))
            .await
    }

    fn verify_of(&self, run: &str) -> Option<VerifyRecord> {
        let all = self.verifies.lock().unwrap_or_else(|e| e.into_inner());
        all.get(run).cloned()
    }

    /// Every run the checkpoint store holds, newest first.
    pub async fn runs(&self) -> Result<Vec<RunView>, KeysError> {
        let ctx = self.context().await?;
        let mut out = Vec::new();
        for scope in ctx.store.scopes("keys/").await? {
            let run = scope.trim_start_matches("keys/").to_string();
            if run.contains('/') {
                continue;
            }
            let state: Option<KeysState> = ctx
                .store
                .load(&scope)
                .await?
                .and_then(|b| serde_json::from_slice(&b).ok());
            let holder = ctx.store.lease_holder(&scope).await?;
            out.push(run_view(run.clone(), state, holder, self.verify_of(&run)));
        }
        out.sort_by_key(|r| std::cmp::Reverse(updated(r)));
        Ok(out)
    }
}

fn updated(run: &RunView) -> String {
    run.state
        .as_ref()
        .map(|s| s.updated_at.clone())
        .unwrap_or_default()
}

/// What a saved state says about rate, ETA and each master.
fn run_view(
    run_name: String,
    state: Option<KeysState>,
    holder: Option<String>,
    verify: Option<VerifyRecord>,
) -> RunView {
    let (mut rate, mut eta, mut masters) = (None, None, Vec::new());
    let status = match &state {
        Some(s) if s.state == "running" && holder.is_none() => "interrupted".to_string(),
        Some(s) => s.state.clone(),
        None => "unreadable".to_string(),
    };
    if let Some(s) = &state {
        let parse = |t: &str| DateTime::parse_from_rfc3339(t).ok();
        if let (Some(a), Some(b)) = (parse(&s.started_at), parse(&s.updated_at)) {
            let secs = (b - a).num_milliseconds() as f64 / 1000.0;
            if secs > 0.0 {
                rate = Some(s.stats.scanned as f64 / secs);
            }
        }
        if status == "running" {
            eta = rate
                .filter(|r| *r > 0.0)
                .map(|r| s.estimated_total.saturating_sub(s.stats.scanned) as f64 / r);
        }
        for (node, cursor) in &s.cursors {
            let done = s.finished_nodes.contains(node) || s.state == "completed";
            masters.push(MasterView {
                node: node.clone(),
                state: if done { "done" } else { "scanning" },
                cursor: Some(*cursor),
            });
        }
        for node in &s.finished_nodes {
            if !s.cursors.contains_key(node) {
                masters.push(MasterView {
                    node: node.clone(),
                    state: "done",
                    cursor: None,
                });
            }
        }
    }
    RunView {
        run_name,
        status,
        holder,
        state,
        rate_per_s: rate,
        eta_s: eta,
        masters,
        verify,
    }
}

/// Whether two shown Redis URLs name the same server and database (`localhost` is
/// `127.0.0.1`, no database is database 0, the scheme's case and a trailing `/` do not matter).
fn same_redis(a: &str, b: &str) -> bool {
    fn norm(u: &str) -> String {
        let u = u.trim().trim_end_matches('/').to_ascii_lowercase();
        let u = u
            .replace("@localhost:", "@127.0.0.1:")
            .replace("//localhost:", "//127.0.0.1:");
        match u.rsplit_once('/') {
            // `scheme://host:port/0`: database 0 is the default.
            Some((head, "0")) if head.matches('/').count() == 2 => head.to_string(),
            _ => u,
        }
    }
    norm(a) == norm(b)
}

/// The job's endpoints.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        (Method::GET, "/api/v1/keys/runs", get(list)),
        (Method::GET, "/api/v1/keys/runs/{run}", get(one)),
        (Method::POST, "/api/v1/keys/runs/{run}/verify", post(verify)),
        (Method::GET, "/api/v1/keys/plan", get(plan)),
        (Method::POST, "/api/v1/keys/plan", post(replan)),
    ]
}

impl From<KeysError> for ApiError {
    fn from(e: KeysError) -> Self {
        ApiError {
            status: class_status(e.class(), StatusCode::BAD_REQUEST),
            message: e.to_string(),
            field: None,
        }
    }
}

fn served(state: &AppState) -> Result<&Arc<ServedKeys>, ApiError> {
    state.jobs.keys.as_ref().ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        message: "the keys job is not configured on this server: set [keys] source and rules \
                  (and [checkpoint] url if its runs keep their checkpoints elsewhere) and restart it"
            .into(),
        field: None,
    })
}

/// The runs the checkpoint store holds, newest first.
#[utoipa::path(get, path = "/api/v1/keys/runs", tag = "keys",
    responses((status = 200, description = "`{\"runs\": [run, …]}`: state, rate, ETA, masters, last verify", body = Object),
        (status = 404, description = "the keys job is not configured")))]
pub(crate) async fn list(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let runs = served(&state)?.runs().await?;
    Ok(Json(json!({ "runs": runs })).into_response())
}

/// One run: its saved state (counts by outcome and by rule), ledgers and last verify.
#[utoipa::path(get, path = "/api/v1/keys/runs/{run}", tag = "keys",
    params(("run" = String, Path, description = "the run name")),
    responses((status = 200, description = "the run", body = Object),
        (status = 400, description = "not a run name (letters, digits, `-`, `_`, `.`)"),
        (status = 404, description = "no such run, or the keys job is not configured")))]
pub(crate) async fn one(
    State(state): State<Arc<AppState>>,
    Path(run): Path<String>,
) -> Result<Response, ApiError> {
    let keys = served(&state)?;
    let ctx = keys.context().await?.for_run(&run)?;
    let status = super::status(&ctx).await?;
    let Some(saved) = status.state.clone() else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("no run `{run}` in the checkpoint store"),
            field: Some("run".into()),
        });
    };
    let holder = ctx
        .store
        .lease_holder(&ctx.scope)
        .await
        .map_err(KeysError::from)?;
    let view = run_view(run.clone(), Some(saved), holder, keys.verify_of(&run));
    Ok(Json(json!({
        "run": view,
        "percent": status.percent,
        "ledger_entries": status.ledger_entries,
        "backups": status.backups,
    }))
    .into_response())
}

/// Starts a verify of a run's migrated keys (type, value and TTL against the source) in the
/// background; its result appears in the run's `verify`. Admin token.
#[utoipa::path(post, path = "/api/v1/keys/runs/{run}/verify", tag = "keys",
    params(("run" = String, Path, description = "the run name")),
    responses((status = 202, description = "started", body = Object),
        (status = 404, description = "no such run"),
        (status = 400, description = "not a run name"),
        (status = 409, description = "a verify of this run is running, or the run copied between other servers than [keys] names")))]
pub(crate) async fn verify(
    State(state): State<Arc<AppState>>,
    Path(run): Path<String>,
) -> Result<Response, ApiError> {
    let keys = served(&state)?.clone();
    let ctx = keys.context().await?.for_run(&run)?;
    let saved: Option<KeysState> = ctx
        .store
        .load(&ctx.scope)
        .await
        .map_err(KeysError::from)?
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(saved) = saved else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("no run `{run}` in the checkpoint store"),
            field: Some("run".into()),
        });
    };
    // Verify compares the run's source with its target: they must be the ones it copied.
    let (source, target) = (ctx.source.display(), ctx.target.display());
    if !same_redis(&saved.source, source) || !same_redis(&saved.target, target) {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!(
                "run `{run}` copied {} → {}, but this server's [keys] names {source} → {target}: \
                 verify it with `ferry keys verify --run-name {run}` and its own source and target",
                saved.source, saved.target
            ),
            field: Some("run".into()),
        });
    }
    let started_at = Utc::now();
    {
        let mut all = keys.verifies.lock().unwrap_or_else(|e| e.into_inner());
        if all.get(&run).is_some_and(|v| v.state == "running") {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                message: format!("a verify of `{run}` is running: wait for its result"),
                field: Some("run".into()),
            });
        }
        all.insert(
            run.clone(),
            VerifyRecord {
                state: "running",
                started_at,
                finished_at: None,
                outcome: None,
                error: None,
            },
        );
    }
    let name = run.clone();
    tokio::spawn(async move {
        let result = super::verify(&ctx).await;
        let record = VerifyRecord {
            state: if result.is_ok() { "done" } else { "failed" },
            started_at,
            finished_at: Some(Utc::now()),
            error: result.as_ref().err().map(ToString::to_string),
            outcome: result.ok(),
        };
        let mut all = keys.verifies.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(name, record);
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "run": run, "verify": "running" })),
    )
        .into_response())
}

/// The plan of the configured rules as last computed (computed now if never): every action
/// apply would take, by rule, with clashes. Writes nothing.
#[utoipa::path(get, path = "/api/v1/keys/plan", tag = "keys",
    responses((status = 200, description = "`{\"computed_at\", \"plan\"}`", body = Object),
        (status = 404, description = "the keys job is not configured")))]
pub(crate) async fn plan(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    plan_record(served(&state)?, false).await
}

/// Computes the plan again (it scans the source). Admin token.
#[utoipa::path(post, path = "/api/v1/keys/plan", tag = "keys",
    responses((status = 200, description = "`{\"computed_at\", \"plan\"}`", body = Object),
        (status = 404, description = "the keys job is not configured")))]
pub(crate) async fn replan(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    plan_record(served(&state)?, true).await
}

async fn plan_record(keys: &ServedKeys, fresh: bool) -> Result<Response, ApiError> {
    let mut cached = keys.plan.lock().await;
    if fresh || cached.is_none() {
        let ctx = keys.context().await?;
        *cached = Some(PlanRecord {
            computed_at: Utc::now(),
            plan: super::plan(ctx).await?,
        });
    }
    Ok(Json(cached.clone()).into_response())
}

/// The keys job's card before its stores answered.
pub fn skeleton() -> JobCard {
    let mut card = JobCard::new(JOB, "keys", "Rename and copy keys");
    // `keys apply` runs in its own process: its metrics are not this server's (its rate comes
    // from the saved state; `ferry keys apply --metrics-listen` serves them for Prometheus).
    card.throughput_unit = "keys scanned";
    card
}

/// The job's card: the newest run's state and progress, and its stores.
pub async fn card(keys: &ServedKeys) -> JobCard {
    let mut card = skeleton();
    let ctx = match keys.context().await {
        Ok(ctx) => ctx,
        Err(e) => {
            card.state = JobState::Failing;
            card.reason = Some(e.to_string());
            return card;
        }
    };
    // Listing the runs reads the checkpoint store: that is its health check too.
    let runs = keys.runs().await;
    let checkpoint = runs.as_ref().map(drop).map_err(ToString::to_string);
    card.stores = vec![
        redis_health("source", &ctx.source).await,
        redis_health("target", &ctx.target).await,
        StoreHealth::new("checkpoint", "checkpoint store", checkpoint),
    ];
    card.fact("rules", ctx.rules.rules().len());
    if let Ok(runs) = runs {
        card.fact("runs", runs.len());
        if let Some(newest) = runs.first() {
            newest_run(&mut card, newest);
        }
    }
    card.fail_on_stores();
    card
}

fn newest_run(card: &mut JobCard, run: &RunView) {
    let Some(s) = &run.state else {
        return;
    };
    card.fact("newest run", &run.run_name)
        .fact("run state", &run.status);
    card.last_run = Some(s.updated_at.clone());
    card.errors = s.stats.failed;
    // The estimate is DBSIZE at the start: a finished run is all done, whatever it said.
    let total = if s.state == "completed" {
        s.stats.scanned
    } else {
        s.estimated_total.max(s.stats.scanned)
    };
    card.progress = Some(Progress {
        done: s.stats.scanned,
        total,
    });
    card.state = match run.status.as_str() {
        "running" => JobState::Running,
        "failed" | "interrupted" => JobState::Failing,
        _ => JobState::Idle,
    };
    if run.status == "interrupted" {
        card.reason = Some(format!(
            "run `{}` stopped while running (nobody holds its lease): `ferry keys apply --run-name {}` resumes it",
            run.run_name, run.run_name
        ));
    }
    if let Some(rate) = run.rate_per_s.filter(|_| run.status == "running") {
        card.throughput = Some(rate);
    }
    if let Some(v) = run.verify.as_ref().and_then(|v| v.outcome.as_ref()) {
        card.fact("last verify", format!("{} ok of {}", v.ok, v.checked));
    }
    card.action(
        "Verify newest run",
        &format!("/api/v1/keys/runs/{}/verify", run.run_name),
    );
}

async fn redis_health(role: &str, redis: &ferry_connectors::redis::RedisEndpoint) -> StoreHealth {
    StoreHealth::new(role, "Redis", redis.ping().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_naming_one_server_compare_equal() {
        assert!(same_redis(
            "redis://127.0.0.1:6379/0",
            "redis://127.0.0.1:6379"
        ));
        assert!(same_redis(
            "redis://localhost:6379",
            "redis://127.0.0.1:6379/"
        ));
        assert!(same_redis(
            "REDIS://127.0.0.1:6379",
            "redis://127.0.0.1:6379"
        ));
        assert!(!same_redis(
            "redis://127.0.0.1:6379/1",
            "redis://127.0.0.1:6379"
        ));
        assert!(!same_redis(
            "redis://127.0.0.1:6380",
            "redis://127.0.0.1:6379"
        ));
    }

    #[test]
    fn a_run_view_derives_rate_eta_and_masters_from_the_state() {
        let mut s = KeysState {
            state: "running".into(),
            rules_fingerprint: String::new(),
            source: String::new(),
            target: String::new(),
            started_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:10Z".into(),
            cursors: BTreeMap::from([("a:1".to_string(), 42), ("b:2".to_string(), 0)]),
            finished_nodes: vec!["b:2".into(), "c:3".into()],
            run_ids: BTreeMap::new(),
            stats: Default::default(),
            per_rule: Default::default(),
            estimated_total: 1000,
        };
        s.stats.scanned = 200;
        let v = run_view("r".into(), Some(s.clone()), Some("host:1".into()), None);
        let dead = run_view("r".into(), Some(s.clone()), None, None);
        assert_eq!(
            dead.status, "interrupted",
            "running, but nobody holds the lease"
        );
        assert_eq!(dead.eta_s, None);
        assert_eq!(v.status, "running");
        assert_eq!(v.rate_per_s, Some(20.0));
        assert_eq!(v.eta_s, Some(40.0));
        let states: Vec<_> = v
            .masters
            .iter()
            .map(|m| (m.node.as_str(), m.state))
            .collect();
        assert_eq!(
            states,
            [("a:1", "scanning"), ("b:2", "done"), ("c:3", "done")]
        );
        s.state = "completed".into();
        let v = run_view("r".into(), Some(s), None, None);
        assert_eq!(v.eta_s, None, "a finished run has no ETA");
        assert!(v.masters.iter().all(|m| m.state == "done"));
    }
}
