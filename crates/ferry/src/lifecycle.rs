//! The migration life cycle: the steps every job that moves a data set from one store to
//! another offers, in this order — analyze (a survey, writing nothing), plan (a dry run), apply
//! (checkpointed and resumable), verify, rollback (from the ledgers apply kept) — and status at
//! any time. The keys job implements it ([`crate::jobs::keys`]); a job that moves vectors will
//! too. Each step's outcome knows what its report shares with every other job's
//! ([`StepOutcome::report`]), so the command line glue only adds the job's own fields.

use std::future::Future;

use chrono::{DateTime, Utc};
use ferry_core::error::{Classify, ExitStatus};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use ferry_core::report::{ErrorLog, Report};

/// One migration of a data set, opened with its options and connected clients.
pub trait Migration {
    /// The job's name in reports and logs (`keys`, ...).
    const JOB: &'static str;
    /// What a step can fail with (its class gives the exit code).
    type Error: Classify + std::fmt::Display;
    /// What [`Migration::analyze`] finds.
    type Analysis: StepOutcome;
    /// What [`Migration::plan`] would do.
    type Plan: StepOutcome;
    /// What [`Migration::apply`] did.
    type Applied: StepOutcome;
    /// What [`Migration::verify`] found.
    type Verified: StepOutcome;
    /// What [`Migration::rollback`] undid (or would undo).
    type RolledBack: StepOutcome;
    /// Where the last apply stands.
    type Status: Serialize;

    /// Surveys the source: what there is and what the migration would touch; writes nothing.
    fn analyze(&self) -> impl Future<Output = Result<Self::Analysis, Self::Error>>;
    /// Everything apply would do, writing nothing.
    fn plan(&self) -> impl Future<Output = Result<Self::Plan, Self::Error>>;
    /// Moves the data, checkpointing as it goes; resumes an interrupted run; stops early and
    /// consistently when `stop` is cancelled.
    fn apply(
        &self,
        stop: CancellationToken,
    ) -> impl Future<Output = Result<Self::Applied, Self::Error>>;
    /// Checks what apply wrote against the source.
    fn verify(&self) -> impl Future<Output = Result<Self::Verified, Self::Error>>;
    /// Undoes apply from its ledgers; with `dry_run` only counts what it would undo.
    fn rollback(
        &self,
        dry_run: bool,
        stop: CancellationToken,
    ) -> impl Future<Output = Result<Self::RolledBack, Self::Error>>;
    /// Progress of the current or last apply.
    fn status(&self) -> impl Future<Output = Result<Self::Status, Self::Error>>;
}

/// The outcome of one step of a [`Migration`]: what its report shares with every job's.
pub trait StepOutcome {
    /// The step's name in reports (`analyze`, `plan`, `apply`, `verify`, `rollback`).
    const STEP: &'static str;
    /// Whether the step wrote nothing.
    fn dry_run(&self) -> bool;
    /// When the step started.
    fn started(&self) -> Option<DateTime<Utc>>;
    /// The counts the report shows under `stats`.
    fn stats(&self) -> serde_json::Value;
    /// The failed items.
    fn errors(&self) -> ErrorLog {
        ErrorLog::default()
    }
    /// How many items failed (the exit code is 1 when any did).
    fn failures(&self) -> u64 {
        0
    }

    /// The exit status: [`ExitStatus::Done`] unless items failed.
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::from_failures(self.failures())
    }

    /// The report with the shared fields; the job adds its own with [`Report::with`].
    fn report(&self, job: &str) -> Report {
        Report::new(
            job,
            Self::STEP,
            self.dry_run(),
            self.started().unwrap_or_else(Utc::now),
            self.stats(),
            self.errors(),
        )
    }
}
