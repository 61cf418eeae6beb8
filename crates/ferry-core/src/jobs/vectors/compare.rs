//! Comparing a copied vector with its source, within what the target's quantisation allows.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a target stores vectors, which bounds how far a faithful copy may differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// 32-bit floats as given (vector sets `NOQUANT`, Milvus `FloatVector`).
    NoQuant,
    /// 8 bits a component, scaled by the vector's largest component (vector sets `Q8`).
    Q8,
    /// One sign bit a component (vector sets `BIN`).
    Bin,
}

impl Quantization {
    /// Its name (`noquant`, `q8`, `bin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::NoQuant => "noquant",
            Quantization::Q8 => "q8",
            Quantization::Bin => "bin",
        }
    }

    /// The tolerance of a copy stored this way.
    pub fn tolerance(self) -> Tolerance {
        Tolerance {
            quantization: self,
            relative_slack: 1e-5,
        }
    }
}

impl fmt::Display for Quantization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Quantization {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "noquant" | "f32" | "fp32" | "none" => Ok(Quantization::NoQuant),
            "q8" | "int8" => Ok(Quantization::Q8),
            "bin" | "binary" => Ok(Quantization::Bin),
            _ => Err(format!(
                "unknown quantisation `{s}`: use noquant, q8 or bin"
            )),
        }
    }
}

/// How far a copy may differ from its source and still match.
///
/// - `noquant`: the copy is the source up to float rounding: `L2 <= slack * |s|`.
/// - `q8`: each component is rounded to 1/254 of the largest one, so
///   `L2 <= sqrt(d) * max|s_i| / 254` (plus the slack).
/// - `bin`: each component keeps its sign only, so the copy matches when every non-zero source
///   component has the copy's sign, and the cosine is then `sum|s_i| / (|s| sqrt(d))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// The target's quantisation.
    pub quantization: Quantization,
    /// Float rounding allowed on top of the quantisation, relative to the source's norm.
    pub relative_slack: f64,
}

/// How a copy compares with its source.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    /// Euclidean distance between them.
    pub l2: f64,
    /// Cosine similarity (1 for two zero vectors; 0 when only one is zero).
    pub cosine: f64,
    /// Whether the copy is within the tolerance.
    pub matches: bool,
}

/// Compares `copy` (read back from the target) with `source`.
pub fn compare(source: &[f32], copy: &[f32], tolerance: &Tolerance) -> Comparison {
    if source.len() != copy.len() {
        return Comparison {
            l2: f64::INFINITY,
            cosine: 0.0,
            matches: false,
        };
    }
    let (mut dot, mut ss, mut cc, mut dd, mut max_abs) = (0.0_f64, 0.0, 0.0, 0.0, 0.0_f64);
    let mut signs_agree = true;
    for (&s, &c) in source.iter().zip(copy) {
        let (s, c) = (f64::from(s), f64::from(c));
        dot += s * c;
        ss += s * s;
        cc += c * c;
        dd += (s - c) * (s - c);
        max_abs = max_abs.max(s.abs());
        if s != 0.0 && (s > 0.0) != (c > 0.0) {
            signs_agree = false;
        }
    }
    let l2 = dd.sqrt();
    let (norm_s, norm_c) = (ss.sqrt(), cc.sqrt());
    let cosine = match (norm_s == 0.0, norm_c == 0.0) {
        (true, true) => 1.0,
        (false, false) => dot / (norm_s * norm_c),
        _ => 0.0,
    };
    let finite = l2.is_finite() && cosine.is_finite();
    let slack = tolerance.relative_slack * norm_s + 1e-12;
    let matches = finite
        && match tolerance.quantization {
            Quantization::NoQuant => l2 <= slack,
            Quantization::Q8 => {
                let dims = source.len() as f64;
                l2 <= dims.sqrt() * max_abs / 254.0 * 1.01 + slack
            }
            Quantization::Bin => signs_agree,
        };
    Comparison {
        l2,
        cosine,
        matches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q8(v: &[f32]) -> Vec<f32> {
        let max = v.iter().fold(0.0_f32, |m, x| m.max(x.abs()));
        let scale = max / 127.0;
        v.iter().map(|x| (x / scale).round() * scale).collect()
    }

    #[test]
    fn exact_copies_match_and_changed_ones_do_not() {
        let s = [0.5_f32, -2.0, 3.0, 0.1];
        let t = Quantization::NoQuant.tolerance();
        assert!(compare(&s, &s, &t).matches);
        let mut changed = s;
        changed[3] = 0.1001;
        assert!(!compare(&s, &changed, &t).matches);
        assert!(!compare(&s, &s[..3], &t).matches, "dimension differs");
    }

    #[test]
    fn q8_copies_match_within_their_rounding_only() {
        let s: Vec<f32> = (0..384)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let t = Quantization::Q8.tolerance();
        let copy = q8(&s);
        let c = compare(&s, &copy, &t);
        assert!(c.matches, "{c:?}");
        assert!(c.cosine > 0.999);
        assert!(!compare(&s, &copy, &Quantization::NoQuant.tolerance()).matches);
        let mut other = copy.clone();
        other.swap(0, 1);
        other[5] += 1.0;
        assert!(!compare(&s, &other, &t).matches);
    }

    #[test]
    fn bin_copies_match_on_signs() {
        let s = [0.5_f32, -2.0, 3.0, 0.0];
        let copy = [1.0_f32, -1.0, 1.0, -1.0];
        let t = Quantization::Bin.tolerance();
        assert!(compare(&s, &copy, &t).matches);
        assert!(!compare(&s, &[1.0, 1.0, 1.0, -1.0], &t).matches);
    }

    #[test]
    fn non_finite_values_never_match() {
        let t = Quantization::NoQuant.tolerance();
        assert!(!compare(&[f32::NAN], &[f32::NAN], &t).matches);
        assert!(compare(&[0.0, 0.0], &[0.0, 0.0], &t).matches);
    }

    #[test]
    fn quantisation_names_parse() {
        assert_eq!("NOQUANT".parse(), Ok(Quantization::NoQuant));
        assert_eq!("q8".parse(), Ok(Quantization::Q8));
        assert_eq!("bin".parse(), Ok(Quantization::Bin));
        assert!("q4".parse::<Quantization>().is_err());
    }
}
