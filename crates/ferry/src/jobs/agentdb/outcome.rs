//! What a run did: counts per kind, failed items, validation mismatches; its report.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use ferry_connectors::postgres::agentdb::AgentKind;
use ferry_core::error::ExitStatus;
use ferry_core::report::ErrorLog;
use serde::Serialize;

use super::AgentDbOptions;
use crate::lifecycle::StepOutcome;

/// Counts of one kind.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct KindStats {
    /// Keys found.
    pub keys: u64,
    /// Items read from Redis in this run.
    pub items_read: u64,
    /// Items earlier runs had already moved (skipped by the checkpoint).
    pub already_moved: u64,
    /// Items read that are good rows.
    pub rows: u64,
    /// Rows inserted or changed in PostgreSQL (a row already there unchanged is not counted).
    pub rows_written: u64,
    /// Failed items (bad records, keys of the wrong type or with unusable names).
    pub failed: u64,
    /// Keys whose counts were compared after they were moved.
    pub validated: u64,
    /// Keys whose counts differ.
    pub mismatched: u64,
}

/// The outcome of `ferry agentdb migrate`.
#[derive(Debug)]
pub struct MigrateOutcome {
    /// When the run started.
    pub started: DateTime<Utc>,
    /// Nothing was written.
    pub dry_run: bool,
    /// Experiences were left out.
    pub skip_history: bool,
    /// The agents seen.
    pub agents: HashSet<String>,
    /// Experiences.
    pub experiences: KindStats,
    /// Q-values.
    pub q_values: KindStats,
    /// Policies.
    pub policies: KindStats,
    /// Transactions committed.
    pub batches: u64,
    /// Failed items and validation mismatches, `(item, error)`.
    pub errors: ErrorLog,
    /// The run was stopped (Ctrl-C, SIGTERM) before the end.
    pub stopped: bool,
}

impl MigrateOutcome {
    /// An empty outcome for a run with `options`, starting now.
    pub fn new(options: &AgentDbOptions) -> Self {
        MigrateOutcome {
            started: Utc::now(),
            dry_run: options.dry_run,
            skip_history: options.skip_history,
            agents: HashSet::new(),
            experiences: KindStats::default(),
            q_values: KindStats::default(),
            policies: KindStats::default(),
            batches: 0,
            errors: ErrorLog::default(),
            stopped: false,
        }
    }

    /// The counts of `kind`.
    pub fn kind(&self, kind: AgentKind) -> &KindStats {
        match kind {
            AgentKind::Experiences => &self.experiences,
            AgentKind::QValues => &self.q_values,
            AgentKind::Policy => &self.policies,
        }
    }

    /// The counts of `kind`, to change.
    pub fn kind_mut(&mut self, kind: AgentKind) -> &mut KindStats {
        match kind {
            AgentKind::Experiences => &mut self.experiences,
            AgentKind::QValues => &mut self.q_values,
            AgentKind::Policy => &mut self.policies,
        }
    }

    /// Keys whose counts differ, over every kind.
    pub fn mismatched(&self) -> u64 {
        AgentKind::ALL
            .iter()
            .map(|k| self.kind(*k).mismatched)
            .sum()
    }

    /// One line per kind for people.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{}{} agents, {} batches",
            if self.dry_run { "dry run: " } else { "" },
            self.agents.len(),
            self.batches
        );
        for kind in AgentKind::ALL {
            let s = self.kind(kind);
            if kind == AgentKind::Experiences && self.skip_history {
                out.push_str("\n  experiences: skipped (--skip-history)");
                continue;
            }
            out.push_str(&format!(
                "\n  {:<12} {} keys, {} read, {} already moved, {} written, {} failed",
                kind.as_str(),
                s.keys,
                s.items_read,
                s.already_moved,
                s.rows_written,
                s.failed
            ));
            if !self.dry_run {
                out.push_str(&format!(
                    ", {} keys validated, {} mismatched",
                    s.validated, s.mismatched
                ));
            }
        }
        out
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
        serde_json::json!({
            "agents": self.agents.len(),
            "batches": self.batches,
            "skip_history": self.skip_history,
            "stopped": self.stopped,
            "validated": !self.dry_run && !self.stopped,
            "mismatched": self.mismatched(),
            "experiences": self.experiences,
            "q_values": self.q_values,
            "policies": self.policies,
        })
    }

    fn errors(&self) -> ErrorLog {
        self.errors.clone()
    }

    fn failures(&self) -> u64 {
        self.errors.total
    }

    fn exit_status(&self) -> ExitStatus {
        if self.stopped {
            ExitStatus::ItemFailures
        } else {
            ExitStatus::from_failures(self.failures())
        }
    }
}
