//! The vectors job inside `ferry serve` (when `[vectors]` names a source or a state Redis): the
//! migration's progress and last validation read from its state Redis, and its dashboard card
//! (`GET /api/v1/vectors`). Migrations run from the command line; the server only watches.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ferry_connectors::redis::RedisCheckpointStore;
use ferry_core::checkpoint::CheckpointStore;
use ferry_core::error::Classify;
use serde::Serialize;
use tokio::sync::OnceCell;

use super::status::StatusOutcome;
use super::validate::{LastValidation, last_validation_scope};
use super::{VectorsError, VectorsOptions};
use crate::server::card::{JobCard, JobState, Progress, StoreHealth};
use crate::server::error::{ApiError, class_status};
use crate::server::{AppState, Endpoint};

/// The vectors migration as `ferry serve` watches it.
#[derive(Debug)]
pub struct ServedVectors {
    options: VectorsOptions,
    store: OnceCell<RedisCheckpointStore>,
}

/// `GET /api/v1/vectors`: the migration's progress and its last validation.
#[derive(Debug, Clone, Serialize)]
pub struct VectorsView {
    /// Progress from the saved state.
    pub status: StatusOutcome,
    /// The last validation, if one ran.
    pub last_validation: Option<LastValidation>,
}

impl ServedVectors {
    /// Watches the migration `options` name (its state Redis connected on first use).
    pub fn new(options: VectorsOptions) -> Self {
        ServedVectors {
            options,
            store: OnceCell::new(),
        }
    }

    /// The card's id: `vectors:NAME`.
    pub fn id(&self) -> String {
        format!("vectors:{}", self.options.name)
    }

    async fn store(&self) -> Result<&RedisCheckpointStore, VectorsError> {
        self.store
            .get_or_try_init(|| async {
                Ok(RedisCheckpointStore::new(
                    super::state::connect(&self.options.state).await?,
                ))
            })
            .await
    }

    /// The progress and the last validation.
    pub async fn view(&self) -> Result<VectorsView, VectorsError> {
        let store = self.store().await?;
        let status = super::status::status(store, &self.options).await?;
        let last_validation = store
            .load(&last_validation_scope(&self.options))
            .await?
            .and_then(|b| serde_json::from_slice(&b).ok());
        Ok(VectorsView {
            status,
            last_validation,
        })
    }
}

/// The job's endpoints.
pub fn endpoints() -> Vec<Endpoint> {
    vec![(Method::GET, "/api/v1/vectors", get(view))]
}

/// The vectors migration's progress (done/total, rate, ETA, errors, storage mode) and its last
/// validation.
#[utoipa::path(get, path = "/api/v1/vectors", tag = "vectors",
    responses((status = 200, description = "`{\"status\", \"last_validation\"}`", body = Object),
        (status = 404, description = "the vectors job is not configured")))]
pub(crate) async fn view(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let Some(vectors) = state.jobs.vectors.as_ref() else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: "the vectors job is not configured on this server: set [vectors] source \
                      (or state) and restart it"
                .into(),
            field: None,
        });
    };
    let view = vectors.view().await.map_err(|e| ApiError {
        status: class_status(e.class(), StatusCode::BAD_GATEWAY),
        message: e.to_string(),
        field: None,
    })?;
    Ok(Json(view).into_response())
}

/// The vectors job's card before its state Redis answered.
pub fn skeleton(vectors: &ServedVectors) -> JobCard {
    let mut card = JobCard::new(
        vectors.id(),
        "vectors",
        format!("Embeddings → {}", vectors.options.target.name()),
    );
    // Migrations run in their own processes: the rate comes from the saved state.
    card.throughput_unit = "vectors read";
    card
}

/// The job's card.
pub async fn card(vectors: &ServedVectors) -> JobCard {
    let mut card = skeleton(vectors);
    match vectors.view().await {
        Ok(v) => {
            card.stores.push(StoreHealth::new("state", "Redis", Ok(())));
            fill(&mut card, &v);
        }
        Err(e) => {
            card.stores
                .push(StoreHealth::new("state", "Redis", Err(e.to_string())));
        }
    }
    card.fail_on_stores();
    card
}

fn fill(card: &mut JobCard, v: &VectorsView) {
    let s = &v.status;
    card.state = match s.state {
        "running" => JobState::Running,
        "stopped" if s.errors_total > 0 => JobState::Failing,
        "stopped" => JobState::Stopped,
        _ => JobState::Idle,
    };
    card.progress = (s.total > 0).then_some(Progress {
        done: s.totals.written,
        total: s.total,
    });
    card.errors = s.errors_total;
    card.fact("state", s.state).fact("storage mode", &s.mode);
    if s.state == "running" {
        card.throughput = Some(s.rate);
    }
    if let Some(eta) = s.eta_seconds {
        card.fact("ETA", format!("{eta:.0} s"));
    }
    if let Some(last) = &v.last_validation {
        card.last_run = Some(last.started.to_rfc3339());
        card.fact(
            "last validation",
            format!(
                "{} {}: {:.2} % ({} missing, {} mismatched, {} orphans)",
                if last.passed { "passed" } else { "FAILED" },
                last.scope,
                last.success_rate * 100.0,
                last.missing,
                last.mismatched,
                last.orphans
            ),
        );
    }
}
