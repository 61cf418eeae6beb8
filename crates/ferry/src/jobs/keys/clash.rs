//! Old keys that map to one new name: found before anything is written, and what apply does
//! with them (`--on-collision`).
//!
//! Most rule files cannot clash at all: [`RuleSet::collision_risks`] proves it from the rules
//! alone, and then nothing is scanned. Otherwise the source is scanned twice, holding 8 bytes
//! per key of the risky rules: the first pass keeps a hash of each new name, the second
//! collects the names whose hash came up more than once, with their sources.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

use ferry_core::jobs::keys::rules::RuleSet;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::scan::scan_batches;
use super::{KeysContext, KeysError, is_store_key};
use ferry_core::report::display_key;

/// What apply does with old keys that map to one new name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OnCollision {
    /// Apply refuses to start (exit 2) and names the first clashes (the default).
    #[default]
    Refuse,
    /// The key of the first rule in file order (then the smallest old name) is migrated; the
    /// others stay under their old names and are counted `collisions`.
    FirstWins,
    /// None of the clashing keys is migrated; each is counted failed.
    FailKey,
}

/// Old keys that map to one new name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clash {
    /// The new name.
    pub new_key: Vec<u8>,
    /// The old keys with the index of the rule that maps each, by rule order, then name.
    pub sources: Vec<(usize, Vec<u8>)>,
}

impl Clash {
    /// One line naming the new key and its sources with their rules.
    pub fn describe(&self, rules: &RuleSet) -> String {
        let sources: Vec<String> = self
            .sources
            .iter()
            .map(|(r, k)| format!("{} (rule \"{}\")", display_key(k), rules.rules()[*r].name))
            .collect();
        format!("{} ← {}", display_key(&self.new_key), sources.join(", "))
    }
}

/// How apply treats each old key that takes part in a clash: old name → why it is not
/// migrated. Keys not listed are migrated as usual.
#[derive(Debug, Default)]
pub(crate) struct ClashResolution {
    held_back: HashMap<Vec<u8>, HeldBack>,
}

/// Why an old key is not migrated.
#[derive(Debug, Clone)]
pub(crate) enum HeldBack {
    /// `first-wins`: another old key takes the new name.
    Lost {
        /// The old key that takes it.
        winner: Vec<u8>,
    },
    /// `fail-key`: the key fails.
    Failed {
        /// The message for the report.
        message: String,
    },
}

impl ClashResolution {
    /// The resolution of `clashes` under `policy`.
    pub(crate) fn new(clashes: &[Clash], policy: OnCollision) -> Self {
        let mut held_back = HashMap::new();
        for clash in clashes {
            let (_, winner) = &clash.sources[0];
            for (i, (_, src)) in clash.sources.iter().enumerate() {
                let why = match policy {
                    OnCollision::Refuse => continue,
                    OnCollision::FirstWins if i == 0 => continue,
                    OnCollision::FirstWins => HeldBack::Lost {
                        winner: winner.clone(),
                    },
                    OnCollision::FailKey => HeldBack::Failed {
                        message: format!(
                            "{} other old key(s) map to the same new name {} (--on-collision fail-key)",
                            clash.sources.len() - 1,
                            display_key(&clash.new_key)
                        ),
                    },
                };
                held_back.insert(src.clone(), why);
            }
        }
        Self { held_back }
    }

    /// Why `src` is not migrated, if it is not.
    pub(crate) fn held_back(&self, src: &[u8]) -> Option<&HeldBack> {
        if self.held_back.is_empty() {
            return None;
        }
        self.held_back.get(src)
    }
}

/// A hasher that is the same in every process (SipHash with fixed keys).
type Fixed = BuildHasherDefault<DefaultHasher>;

/// Finds every set of old keys (on the source now) that the rules map to one new name, sorted
/// by new name. Scans nothing when the rules cannot clash.
pub async fn find_clashes(ctx: &KeysContext) -> Result<Vec<Clash>, KeysError> {
    let risky: BTreeSet<usize> = ctx
        .rules
        .collision_risks()
        .into_iter()
        .flat_map(|(i, j)| [i, j])
        .collect();
    if risky.is_empty() {
        return Ok(Vec::new());
    }
    tracing::info!(
        rules = risky.len(),
        "some rules can give two old keys one new name: looking for such keys before writing"
    );
    let hasher = Fixed::default();
    let mut hashes = Vec::new();
    scan_mapped(ctx, &risky, |_, _, new| hashes.push(hasher.hash_one(new))).await?;
    hashes.sort_unstable();
    let twice: HashSet<u64> = hashes
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    drop(hashes);
    if twice.is_empty() {
        return Ok(Vec::new());
    }
    let mut by_name: BTreeMap<Vec<u8>, BTreeSet<(usize, Vec<u8>)>> = BTreeMap::new();
    scan_mapped(ctx, &risky, |rule, old, new| {
        if twice.contains(&hasher.hash_one(new)) {
            by_name
                .entry(new.to_vec())
                .or_default()
                .insert((rule, old.to_vec()));
        }
    })
    .await?;
    Ok(by_name
        .into_iter()
        .filter(|(_, sources)| sources.len() > 1)
        .map(|(new_key, sources)| Clash {
            new_key,
            sources: sources.into_iter().collect(),
        })
        .collect())
}

/// Calls `f(rule, old, new)` for every source key one of the `rules` maps.
async fn scan_mapped(
    ctx: &KeysContext,
    rules: &BTreeSet<usize>,
    mut f: impl FnMut(usize, &[u8], &[u8]),
) -> Result<(), KeysError> {
    let mut batches = scan_batches(
        &ctx.source,
        &BTreeMap::new(),
        &[],
        ctx.scan_pattern(),
        ctx.opts.batch_size,
    );
    while let Some(batch) = batches.next().await {
        for key in batch?.keys {
            if is_store_key(ctx.skip_prefix.as_deref(), &key) {
                continue;
            }
            if let Some((rule, new)) = ctx.rules.rename(&key)
                && rules.contains(&rule)
            {
                f(rule, &key, &new);
            }
        }
    }
    Ok(())
}

/// The error apply stops with when clashes exist and no `--on-collision` was given.
pub(crate) fn refuse(clashes: &[Clash], rules: &RuleSet) -> KeysError {
    const SHOWN: usize = 5;
    let mut lines: Vec<String> = clashes
        .iter()
        .take(SHOWN)
        .map(|c| format!("  {}", c.describe(rules)))
        .collect();
    if clashes.len() > SHOWN {
        lines.push(format!("  … and {} more", clashes.len() - SHOWN));
    }
    KeysError::Usage(format!(
        "{} new name(s) would each be written from more than one old key, so one copy would overwrite another:\n{}\nnothing was written; fix the rules, or pass --on-collision first-wins (the first rule in file order wins, the other keys stay under their old names) or --on-collision fail-key (none of the clashing keys is migrated; each is counted failed); `ferry keys plan` lists every clash",
        clashes.len(),
        lines.join("\n")
    ))
}
