//! The vectors job as a [`Migration`]: preflight is its analyze, `migrate --dry-run` its plan,
//! migrate its apply, validate its verify; and what each step's report shares with every job's.

use chrono::{DateTime, Utc};
use ferry_core::report::ErrorLog;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::migrate::{MigrateOutcome, MigrateRun};
use super::preflight::PreflightOutcome;
use super::rollback::RollbackOutcome;
use super::status::StatusOutcome;
use super::validate::{ValidateOutcome, ValidateRun};
use super::{VectorsContext, VectorsError};
use crate::lifecycle::{Migration, StepOutcome};

/// `migrate --dry-run`: what a migration would copy.
#[derive(Debug, Clone)]
pub struct PlanOutcome(pub MigrateOutcome);

impl Migration for VectorsContext {
    const JOB: &'static str = "vectors";
    type Error = VectorsError;
    type Analysis = PreflightOutcome;
    type Plan = PlanOutcome;
    type Applied = MigrateOutcome;
    type Verified = ValidateOutcome;
    type RolledBack = RollbackOutcome;
    type Status = StatusOutcome;

    async fn analyze(&self) -> Result<PreflightOutcome, VectorsError> {
        super::preflight::preflight(self).await
    }

    async fn plan(&self) -> Result<PlanOutcome, VectorsError> {
        let run = MigrateRun {
            dry_run: true,
            restart: false,
        };
        super::migrate::migrate(self, run, CancellationToken::new())
            .await
            .map(PlanOutcome)
    }

    async fn apply(&self, stop: CancellationToken) -> Result<MigrateOutcome, VectorsError> {
        super::migrate::migrate(self, MigrateRun::default(), stop).await
    }

    async fn verify(&self) -> Result<ValidateOutcome, VectorsError> {
        let run = ValidateRun {
            sample: None,
            fix: false,
        };
        super::validate::validate(self, run).await
    }

    async fn rollback(
        &self,
        dry_run: bool,
        _stop: CancellationToken,
    ) -> Result<RollbackOutcome, VectorsError> {
        let target = Some(self.target.as_ref());
        super::rollback::rollback(&self.checkpoints, &self.options, target, false, dry_run).await
    }

    async fn status(&self) -> Result<StatusOutcome, VectorsError> {
        super::status::status(&self.checkpoints, &self.options).await
    }
}

impl StepOutcome for PreflightOutcome {
    const STEP: &'static str = "preflight";
    fn dry_run(&self) -> bool {
        true
    }
    fn started(&self) -> Option<DateTime<Utc>> {
        Some(self.started)
    }
    fn stats(&self) -> serde_json::Value {
        json!({
            "ready": self.ready,
            "items": self.source.items,
            "with_embedding": self.source.with_embedding,
            "dimensions": self.source.dimensions,
            "target_items": self.target.items,
        })
    }
}

impl StepOutcome for MigrateOutcome {
    const STEP: &'static str = "migrate";
    fn dry_run(&self) -> bool {
        self.dry_run
    }
    fn started(&self) -> Option<DateTime<Utc>> {
        Some(self.started)
    }
    fn stats(&self) -> serde_json::Value {
        serde_json::to_value(&self.stats).unwrap_or_default()
    }
    fn errors(&self) -> ErrorLog {
        self.errors.clone()
    }
    fn failures(&self) -> u64 {
        self.stats.failed
    }
}

impl StepOutcome for PlanOutcome {
    const STEP: &'static str = "plan";
    fn dry_run(&self) -> bool {
        true
    }
    fn started(&self) -> Option<DateTime<Utc>> {
        Some(self.0.started)
    }
    fn stats(&self) -> serde_json::Value {
        self.0.stats()
    }
    fn errors(&self) -> ErrorLog {
        self.0.errors.clone()
    }
}

impl StepOutcome for ValidateOutcome {
    const STEP: &'static str = "validate";
    fn dry_run(&self) -> bool {
        self.stats.recopied + self.stats.deleted == 0
    }
    fn started(&self) -> Option<DateTime<Utc>> {
        Some(self.started)
    }
    fn stats(&self) -> serde_json::Value {
        serde_json::to_value(&self.stats).unwrap_or_default()
    }
    fn failures(&self) -> u64 {
        u64::from(!self.stats.passed)
    }
}

impl StepOutcome for RollbackOutcome {
    const STEP: &'static str = "rollback";
    fn dry_run(&self) -> bool {
        self.dry_run
    }
    fn started(&self) -> Option<DateTime<Utc>> {
        Some(self.started)
    }
    fn stats(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
