//! The keys job as a [`Migration`]: analyze, plan, apply, verify, rollback and status of a
//! key-renaming run, and what each step's report shares with every job's.

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{
    AnalyzeOutcome, ApplyOutcome, KeysContext, KeysError, PlanOutcome, RollbackOutcome,
    StatusOutcome, VerifyOutcome,
};
use crate::lifecycle::{Migration, StepOutcome};
use ferry_core::report::ErrorLog;

impl Migration for KeysContext {
    const JOB: &'static str = "keys";
    type Error = KeysError;
    type Analysis = AnalyzeOutcome;
    type Plan = PlanOutcome;
    type Applied = ApplyOutcome;
    type Verified = VerifyOutcome;
    type RolledBack = RollbackOutcome;
    type Status = StatusOutcome;

    async fn analyze(&self) -> Result<AnalyzeOutcome, KeysError> {
        super::analyze(self).await
    }

    async fn plan(&self) -> Result<PlanOutcome, KeysError> {
        super::plan(self).await
    }

    async fn apply(&self, stop: CancellationToken) -> Result<ApplyOutcome, KeysError> {
        super::apply(self, stop).await
    }

    async fn verify(&self) -> Result<VerifyOutcome, KeysError> {
        super::verify(self).await
    }

    async fn rollback(
        &self,
        dry_run: bool,
        stop: CancellationToken,
    ) -> Result<RollbackOutcome, KeysError> {
        super::rollback(self, dry_run, stop).await
    }

    async fn status(&self) -> Result<StatusOutcome, KeysError> {
        super::status(self).await
    }
}

impl StepOutcome for AnalyzeOutcome {
    const STEP: &'static str = "analyze";
    fn dry_run(&self) -> bool {
        true
    }
    fn started(&self) -> Option<DateTime<Utc>> {
        self.started
    }
    fn stats(&self) -> serde_json::Value {
        json!({"scanned": self.scanned, "matched": self.matched, "unmatched": self.unmatched})
    }
}

impl StepOutcome for PlanOutcome {
    const STEP: &'static str = "plan";
    fn dry_run(&self) -> bool {
        true
    }
    fn started(&self) -> Option<DateTime<Utc>> {
        self.started
    }
    fn stats(&self) -> serde_json::Value {
        json!({
            "scanned": self.scanned,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "actions": self.actions,
            "clashes": self.clash_count,
        })
    }
}

impl StepOutcome for ApplyOutcome {
    const STEP: &'static str = "apply";
    fn dry_run(&self) -> bool {
        false
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

impl StepOutcome for VerifyOutcome {
    const STEP: &'static str = "verify";
    fn dry_run(&self) -> bool {
        true
    }
    fn started(&self) -> Option<DateTime<Utc>> {
        self.started
    }
    fn stats(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
    fn errors(&self) -> ErrorLog {
        self.errors.clone()
    }
    fn failures(&self) -> u64 {
        VerifyOutcome::failures(self)
    }
}

impl StepOutcome for RollbackOutcome {
    const STEP: &'static str = "rollback";
    fn dry_run(&self) -> bool {
        self.dry_run
    }
    fn started(&self) -> Option<DateTime<Utc>> {
        self.started
    }
    fn stats(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
    fn errors(&self) -> ErrorLog {
        self.errors.clone()
    }
    fn failures(&self) -> u64 {
        self.failed
    }
}
