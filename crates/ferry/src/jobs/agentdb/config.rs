//! `[agentdb]` of the config file: the agentdb job's settings (every key is listed with its
//! default in `config/reference.toml`).

use serde::Deserialize;

use super::{AgentDbOptions, ListPush};
use ferry_core::secret::SecretUrl;

/// `[agentdb]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDbSection {
    /// The Redis holding the agents' state.
    pub redis: Option<SecretUrl>,
    /// The PostgreSQL receiving it.
    pub postgres: Option<SecretUrl>,
    /// Key of an agent's experiences (a list or a Stream); `{agent}` marks the agent id.
    pub experiences_pattern: Option<String>,
    /// Key of an agent's Q-values (a hash of `state|action` → value).
    pub q_values_pattern: Option<String>,
    /// Key of an agent's policy (a string of JSON).
    pub policy_pattern: Option<String>,
    /// How experience lists grow: `rpush` (oldest first) or `lpush` (newest first).
    pub list_push: Option<ListPush>,
    /// Rows per transaction, and items per Redis read.
    pub batch: Option<usize>,
    /// Leave the experience histories out.
    pub skip_history: Option<bool>,
}

impl AgentDbSection {
    /// The agentdb job's options: this section over the defaults.
    pub fn options(&self) -> AgentDbOptions {
        let d = AgentDbOptions::default();
        let url =
            |v: &Option<SecretUrl>, d: SecretUrl| v.clone().filter(|u| !u.is_empty()).unwrap_or(d);
        AgentDbOptions {
            redis: url(&self.redis, d.redis),
            postgres: url(&self.postgres, d.postgres),
            experiences_pattern: self
                .experiences_pattern
                .clone()
                .unwrap_or(d.experiences_pattern),
            q_values_pattern: self.q_values_pattern.clone().unwrap_or(d.q_values_pattern),
            policy_pattern: self.policy_pattern.clone().unwrap_or(d.policy_pattern),
            list_push: self.list_push.unwrap_or(d.list_push),
            batch: self.batch.unwrap_or(d.batch),
            skip_history: self.skip_history.unwrap_or(d.skip_history),
            dry_run: false,
        }
    }

    /// Checks the patterns and the batch size.
    pub fn check(&self) -> Result<(), String> {
        self.options()
            .check()
            .map(|_| ())
            .map_err(|e| format!("[agentdb] {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;

    #[test]
    fn the_reference_lists_every_option_with_its_default() {
        let text = include_str!("../../../../../config/reference.toml");
        let cfg = FileConfig::parse(text).expect("reference.toml parses");
        let a = &cfg.agentdb;
        assert!(a.redis.is_some() && a.postgres.is_some() && a.batch.is_some());
        assert!(a.experiences_pattern.is_some() && a.q_values_pattern.is_some());
        assert!(a.policy_pattern.is_some() && a.list_push.is_some() && a.skip_history.is_some());
        let (o, d) = (a.options(), AgentDbOptions::default());
        assert_eq!(o.experiences_pattern, d.experiences_pattern);
        assert_eq!(o.q_values_pattern, d.q_values_pattern);
        assert_eq!(o.policy_pattern, d.policy_pattern);
        assert_eq!(
            (o.batch, o.list_push, o.skip_history),
            (d.batch, d.list_push, d.skip_history)
        );
        assert_eq!(o.redis.expose(), d.redis.expose());
        assert_eq!(o.postgres.expose(), d.postgres.expose());
    }

    #[test]
    fn bad_patterns_and_batches_are_refused_naming_the_option() {
        let e = FileConfig::parse("[agentdb]\npolicy_pattern = \"policy\"\n").unwrap_err();
        assert!(
            e.contains("[agentdb] policy_pattern") && e.contains("{agent}"),
            "{e}"
        );
        let e = FileConfig::parse("[agentdb]\nbatch = 0\n").unwrap_err();
        assert!(e.contains("batch") && e.contains("1 to 100000"), "{e}");
        let e = FileConfig::parse("[agentdb]\nq_values_pattern = \"agent:{agent}:policy\"\n")
            .unwrap_err();
        assert!(e.contains("different patterns"), "{e}");
        let e = FileConfig::parse("[agentdb]\nlist_push = \"middle\"\n").unwrap_err();
        assert!(e.contains("list_push") || e.contains("middle"), "{e}");
        let e = FileConfig::parse("[agentdb]\nbatchsize = 5\n").unwrap_err();
        assert!(e.contains("batchsize"), "{e}");
    }
}
