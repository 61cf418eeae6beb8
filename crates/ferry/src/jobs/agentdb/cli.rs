//! `ferry agentdb …`: runs the action from the command line, prints its outcome, writes the
//! report.

use ferry_core::error::{Classify, ExitStatus};
use serde_json::json;

use super::args::{AgentDbAction, MigrateArgs};
use super::{AgentDbError, MigrateOutcome};
use crate::config::FileConfig;
use crate::lifecycle::StepOutcome;

/// The job's name in reports.
const JOB: &str = "agentdb";

/// How many failed items are printed (the report lists up to 1000).
const PRINTED_ERRORS: usize = 10;

/// Runs one agentdb action; an error is printed and gives [`ExitStatus::Fatal`].
pub async fn run(action: AgentDbAction, file: &FileConfig) -> ExitStatus {
    let outcome = match action {
        AgentDbAction::Migrate { args } => migrate(&args, file).await,
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        tracing::debug!(class = %e.class(), "fatal");
        ExitStatus::Fatal
    })
}

/// `ferry agentdb migrate`.
async fn migrate(args: &MigrateArgs, file: &FileConfig) -> Result<ExitStatus, AgentDbError> {
    let options = args.options(file);
    eprintln!(
        "moving agent state from {} to {}{}",
        options.redis.redacted(),
        options.postgres.redacted(),
        if options.dry_run {
            " (dry run: reading Redis only, writing nothing)"
        } else {
            ""
        }
    );
    let outcome = super::migrate(&options, crate::runtime::shutdown_token()).await?;
    println!("{}", outcome.summary());
    print_errors(&outcome);
    if outcome.stopped {
        eprintln!("stopped before the end: run again to go on from the checkpoints");
    }
    if let Some(path) = &args.report {
        let report = outcome
            .report(JOB)
            .with("redis", options.redis.redacted())
            .with("postgres", options.postgres.redacted())
            .with(
                "patterns",
                json!({
                    "experiences": options.experiences_pattern,
                    "q_values": options.q_values_pattern,
                    "policy": options.policy_pattern,
                }),
            );
        report.write(path, args.report_format).map_err(|e| {
            AgentDbError::Usage(format!("cannot write the report {}: {e}", path.display()))
        })?;
        println!("report: {}", path.display());
    }
    Ok(outcome.exit_status())
}

/// The first failed items on stderr.
fn print_errors(outcome: &MigrateOutcome) {
    let errors = &outcome.errors;
    if errors.total == 0 {
        return;
    }
    eprintln!("{} failed items or mismatched keys:", errors.total);
    for e in errors.items.iter().take(PRINTED_ERRORS) {
        eprintln!("  {}: {}", e.item, e.error);
    }
    if errors.total as usize > PRINTED_ERRORS {
        eprintln!("  … (the report lists up to 1000: --report FILE)");
    }
}
