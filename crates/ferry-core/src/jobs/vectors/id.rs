//! Item ids as the source holds them, and ranges of them for keyset pagination.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// An item's id: an integer or a string, kept as the source gives it.
///
/// Ids order integers first (numerically), then strings (by bytes), so that one source may be
/// read in one keyset order whatever its ids are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VectorId {
    /// An integer id.
    Int(i64),
    /// A string id.
    Str(String),
}

/// Which kind of id a store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdKind {
    /// Integer ids (a Milvus `Int64` primary key).
    Int,
    /// String ids (a Milvus `VarChar` primary key).
    Str,
}

impl VectorId {
    /// Its kind.
    pub fn kind(&self) -> IdKind {
        match self {
            VectorId::Int(_) => IdKind::Int,
            VectorId::Str(_) => IdKind::Str,
        }
    }

    /// The id as text: a vector set's element name.
    pub fn to_text(&self) -> String {
        self.to_string()
    }

    /// Reads an id back from its text, given the kind the migration recorded.
    pub fn from_text(text: &str, kind: IdKind) -> Option<VectorId> {
        match kind {
            // Only the canonical text: `007` or `-0` name other elements than 7 and 0.
            IdKind::Int => text
                .parse::<i64>()
                .ok()
                .filter(|i| i.to_string() == text)
                .map(VectorId::Int),
            IdKind::Str => Some(VectorId::Str(text.to_string())),
        }
    }
}

impl Ord for VectorId {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (VectorId::Int(a), VectorId::Int(b)) => a.cmp(b),
            (VectorId::Str(a), VectorId::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            (VectorId::Int(_), VectorId::Str(_)) => Ordering::Less,
            (VectorId::Str(_), VectorId::Int(_)) => Ordering::Greater,
        }
    }
}

impl PartialOrd for VectorId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for VectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VectorId::Int(i) => write!(f, "{i}"),
            VectorId::Str(s) => f.write_str(s),
        }
    }
}

impl From<i64> for VectorId {
    fn from(i: i64) -> Self {
        VectorId::Int(i)
    }
}

impl From<&str> for VectorId {
    fn from(s: &str) -> Self {
        VectorId::Str(s.to_string())
    }
}

/// The ids `after < id <= upto` of one kind (an open end when `None`), read in id order.
///
/// A range never mixes kinds: a source is read as its integer ids, then its string ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// The kind of the ids in the range.
    pub kind: IdKind,
    /// Exclusive lower bound (`None`: from the first id of the kind).
    pub after: Option<VectorId>,
    /// Inclusive upper bound (`None`: to the last id of the kind).
    pub upto: Option<VectorId>,
}

impl IdRange {
    /// Every id of `kind`.
    pub fn all(kind: IdKind) -> Self {
        IdRange {
            kind,
            after: None,
            upto: None,
        }
    }

    /// Whether `id` lies in the range.
    pub fn contains(&self, id: &VectorId) -> bool {
        id.kind() == self.kind
            && self.after.as_ref().is_none_or(|a| id > a)
            && self.upto.as_ref().is_none_or(|u| id <= u)
    }

    /// The rest of the range after `id` (keyset pagination: the next page starts here).
    pub fn after(&self, id: VectorId) -> Self {
        IdRange {
            kind: self.kind,
            after: Some(id),
            upto: self.upto.clone(),
        }
    }

    /// Splits the ids of one kind into consecutive ranges at `cuts` (sorted ids of the kind):
    /// `(.., c1], (c1, c2], ..., (cn, ..)`.
    pub fn split(kind: IdKind, cuts: &[VectorId]) -> Vec<IdRange> {
        let mut ranges = Vec::with_capacity(cuts.len() + 1);
        let mut after = None;
        for cut in cuts {
            ranges.push(IdRange {
                kind,
                after: after.clone(),
                upto: Some(cut.clone()),
            });
            after = Some(cut.clone());
        }
        ranges.push(IdRange {
            kind,
            after,
            upto: None,
        });
        ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_order_before_strings_and_numerically() {
        let mut ids = vec![
            VectorId::from("b"),
            VectorId::Int(10),
            VectorId::from("a"),
            VectorId::Int(-3),
            VectorId::Int(2),
        ];
        ids.sort();
        assert_eq!(
            ids,
            vec![
                VectorId::Int(-3),
                VectorId::Int(2),
                VectorId::Int(10),
                VectorId::from("a"),
                VectorId::from("b")
            ]
        );
    }

    #[test]
    fn ranges_split_cover_every_id_once() {
        let cuts = [VectorId::Int(10), VectorId::Int(20)];
        let ranges = IdRange::split(IdKind::Int, &cuts);
        assert_eq!(ranges.len(), 3);
        for i in [-5_i64, 0, 10, 11, 20, 21, i64::MAX] {
            let id = VectorId::Int(i);
            assert_eq!(ranges.iter().filter(|r| r.contains(&id)).count(), 1, "{i}");
        }
        assert!(!ranges[2].contains(&VectorId::from("10")));
    }

    #[test]
    fn ids_round_trip_through_their_text_and_json() {
        let id = VectorId::Int(-42);
        assert_eq!(
            VectorId::from_text(&id.to_text(), IdKind::Int),
            Some(id.clone())
        );
        assert_eq!(serde_json::to_string(&id).unwrap(), "-42");
        let s = VectorId::from("media:7");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"media:7\"");
        assert_eq!(
            serde_json::from_str::<VectorId>("\"7\"").unwrap(),
            VectorId::from("7")
        );
        assert_eq!(VectorId::from_text("x", IdKind::Int), None);
        assert_eq!(VectorId::from_text("007", IdKind::Int), None);
        assert_eq!(VectorId::from_text("-0", IdKind::Int), None);
        assert_eq!(VectorId::from_text("+7", IdKind::Int), None);
    }
}
