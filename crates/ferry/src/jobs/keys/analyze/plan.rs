//! `ferry keys plan`: the dry run of apply, every action it would take, writing nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::survey::survey;
use crate::jobs::keys::{KeysContext, KeysError, OnCollision, OnConflict, find_clashes};
use ferry_core::report::display_key;

/// Planned actions listed in a plan report at most (counts are always complete).
pub const MAX_PLANNED_ACTIONS: usize = 10_000;

/// One planned action.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedAction {
    /// The source key.
    pub key: String,
    /// Its new name.
    pub new_key: String,
    /// The rule.
    pub rule: String,
    /// `copy`, `skip_existing`, `overwrite`, `fail_existing` or `unchanged`.
    pub action: &'static str,
    /// `server_copy` (COPY on the server) or `dump_restore`.
    pub method: &'static str,
}

/// A new name that more than one old key maps to.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedClash {
    /// The new name.
    pub new_key: String,
    /// The old keys, by rule order then name: `first-wins` migrates the first.
    pub sources: Vec<ClashSource>,
}

/// One old key of a clash.
#[derive(Debug, Clone, Serialize)]
pub struct ClashSource {
    /// The old key.
    pub key: String,
    /// The rule mapping it.
    pub rule: String,
}

/// The result of `ferry keys plan`: what apply would do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlanOutcome {
    /// Keys scanned.
    pub scanned: u64,
    /// Keys matched.
    pub matched: u64,
    /// Keys no rule matched (left alone).
    pub unmatched: u64,
    /// Counts by action.
    pub actions: BTreeMap<&'static str, u64>,
    /// Counts by rule and action.
    pub per_rule: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// The planned actions, capped at [`MAX_PLANNED_ACTIONS`].
    pub planned: Vec<PlannedAction>,
    /// Whether `--delete-source` would delete each copied source key.
    pub delete_source: bool,
    /// New names that more than one old key maps to (capped at [`MAX_PLANNED_ACTIONS`]).
    pub clashes: Vec<PlannedClash>,
    /// How many new names more than one old key maps to.
    pub clash_count: u64,
    /// What apply does with them (`--on-collision`).
    pub on_collision: OnCollision,
    /// Warnings from the rules file.
    pub rule_warnings: Vec<String>,
    /// When the plan started.
    #[serde(skip)]
    pub started: Option<DateTime<Utc>>,
}

/// The dry run: every action apply would take, writing nothing.
pub async fn plan(ctx: &KeysContext) -> Result<PlanOutcome, KeysError> {
    let mut out = PlanOutcome {
        started: Some(Utc::now()),
        delete_source: ctx.opts.delete_source,
        rule_warnings: ctx.rule_warnings.clone(),
        on_collision: ctx.opts.on_collision,
        ..Default::default()
    };
    let names: Vec<String> = ctx.rules.rules().iter().map(|r| r.name.clone()).collect();
    let clashes = find_clashes(ctx).await?;
    out.clash_count = clashes.len() as u64;
    out.clashes = clashes
        .into_iter()
        .take(MAX_PLANNED_ACTIONS)
        .map(|c| PlannedClash {
            new_key: display_key(&c.new_key),
            sources: c
                .sources
                .iter()
                .map(|(r, k)| ClashSource {
                    key: display_key(k),
                    rule: names[*r].clone(),
                })
                .collect(),
        })
        .collect();
    let same_server = ctx.same_server && ctx.source.version() >= (6, 2);
    let cluster = ctx.source.is_cluster();
    let policy = ctx.opts.on_conflict;
    out.scanned = survey(ctx, false, |s| {
        let Some((rule, new)) = s.mapped else {
            out.unmatched += 1;
            return;
        };
        out.matched += 1;
        let action = if same_server && new == s.key {
            "unchanged"
        } else if s.target_exists {
            match policy {
                OnConflict::Skip => "skip_existing",
                OnConflict::Overwrite => "overwrite",
                OnConflict::Fail => "fail_existing",
            }
        } else {
            "copy"
        };
        let method = if same_server
            && (!cluster
                || ferry_connectors::redis::key_slot(&s.key)
                    == ferry_connectors::redis::key_slot(&new))
        {
            "server_copy"
        } else {
            "dump_restore"
        };
        *out.actions.entry(action).or_default() += 1;
        *out.per_rule
            .entry(names[rule].clone())
            .or_default()
            .entry(action)
            .or_default() += 1;
        if out.planned.len() < MAX_PLANNED_ACTIONS {
            out.planned.push(PlannedAction {
                key: display_key(&s.key),
                new_key: display_key(&new),
                rule: names[rule].clone(),
                action,
                method,
            });
        }
    })
    .await?;
    Ok(out)
}
