//! How a shadow read compares the secondary's answer with the primary's.
//!
//! - get: per id, both stores hold it or neither does, and the two vectors are within the
//!   tolerance of the looser of the two stores' quantisations ([`compare`]);
//! - search: the two top-k id lists overlap by at least `min_overlap` of the longer one
//!   (scores are not compared: two stores may score on different scales).

use std::collections::HashSet;

use ferry_core::jobs::vectors::{Quantization, VectorId, compare};

/// The looser of two quantisations: what a vector read back from either may differ by.
pub fn looser(a: Quantization, b: Quantization) -> Quantization {
    let rank = |q| match q {
        Quantization::NoQuant => 0,
        Quantization::Q8 => 1,
        Quantization::Bin => 2,
    };
    if rank(a) >= rank(b) { a } else { b }
}

/// The ids whose secondary vector differs from the primary's (presence, or a distance beyond
/// what `quantization` allows). A secondary answer of another length differs for every id.
pub fn get_mismatches<'a>(
    ids: &'a [VectorId],
    primary: &[Option<Vec<f32>>],
    secondary: &[Option<Vec<f32>>],
    quantization: Quantization,
) -> Vec<&'a VectorId> {
    if secondary.len() != primary.len() {
        return ids.iter().collect();
    }
    let tolerance = quantization.tolerance();
    ids.iter()
        .zip(primary.iter().zip(secondary))
        .filter(|(_, pair)| match pair {
            (None, None) => false,
            (Some(p), Some(s)) => !compare(p, s, &tolerance).matches,
            _ => true,
        })
        .map(|(id, _)| id)
        .collect()
}

/// Share of the longer of two result lists that both hold (1.0 when both are empty).
pub fn overlap(primary: &[(VectorId, f32)], secondary: &[(VectorId, f32)]) -> f64 {
    let longer = primary.len().max(secondary.len());
    if longer == 0 {
        return 1.0;
    }
    let ours: HashSet<&VectorId> = primary.iter().map(|(id, _)| id).collect();
    let theirs: HashSet<&VectorId> = secondary.iter().map(|(id, _)| id).collect();
    ours.intersection(&theirs).count() as f64 / longer as f64
}

/// Whether two search results agree: their overlap is at least `min_overlap`.
pub fn search_matches(
    primary: &[(VectorId, f32)],
    secondary: &[(VectorId, f32)],
    min_overlap: f64,
) -> bool {
    overlap(primary, secondary) >= min_overlap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(ids: &[i64]) -> Vec<(VectorId, f32)> {
        ids.iter().map(|&i| (VectorId::Int(i), 0.5)).collect()
    }

    #[test]
    fn gets_differ_on_presence_and_distance_only() {
        let ids = [VectorId::Int(1), VectorId::Int(2), VectorId::Int(3)];
        let v = vec![0.5_f32, -1.0, 2.0];
        let primary = vec![Some(v.clone()), None, Some(v.clone())];
        let same = primary.clone();
        assert!(get_mismatches(&ids, &primary, &same, Quantization::NoQuant).is_empty());
        let other = vec![Some(v.clone()), Some(v.clone()), Some(vec![0.5, 1.0, 2.0])];
        let differ = get_mismatches(&ids, &primary, &other, Quantization::Q8);
        assert_eq!(differ, vec![&ids[1], &ids[2]]);
        assert_eq!(
            get_mismatches(&ids, &primary, &other[..1], Quantization::Q8).len(),
            3
        );
    }

    #[test]
    fn quantised_copies_match_under_the_looser_tolerance() {
        let ids = [VectorId::Int(1)];
        let v: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 9.0).collect();
        let max = v.iter().fold(0.0_f32, |m, x| m.max(x.abs()));
        let q8: Vec<f32> = v
            .iter()
            .map(|x| (x / max * 127.0).round() / 127.0 * max)
            .collect();
        let (p, s) = (vec![Some(v)], vec![Some(q8)]);
        let q = looser(Quantization::NoQuant, Quantization::Q8);
        assert_eq!(q, Quantization::Q8);
        assert!(get_mismatches(&ids, &p, &s, q).is_empty());
        assert_eq!(get_mismatches(&ids, &p, &s, Quantization::NoQuant).len(), 1);
        assert_eq!(
            looser(Quantization::Bin, Quantization::Q8),
            Quantization::Bin
        );
    }

    #[test]
    fn searches_agree_by_overlap_of_the_longer_list() {
        assert!(search_matches(&hits(&[1, 2, 3]), &hits(&[3, 1, 2]), 1.0));
        assert!(!search_matches(&hits(&[1, 2, 3]), &hits(&[1, 2]), 1.0));
        assert!((overlap(&hits(&[1, 2, 3, 4]), &hits(&[1, 2, 3, 5])) - 0.75).abs() < 1e-9);
        assert!(search_matches(&hits(&[]), &hits(&[]), 1.0));
        assert!(!search_matches(&hits(&[1]), &hits(&[]), 0.5));
    }
}
