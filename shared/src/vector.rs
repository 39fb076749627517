//! Vector metrics, input checks and the score convention edgeshard reports.
//!
//! Scores are distances: **lower is better** for every metric, and every backend's raw distance is
//! converted to this one convention before results leave a reader:
//!
//! | metric      | score                      |
//! |-------------|----------------------------|
//! | cosine      | `1 - cos(q, v)`            |
//! | l2          | Euclidean distance (not squared) |
//! | dot_product | `1 - q·v`                  |

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Cosine,
    L2,
    DotProduct,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cosine => "cosine",
            Self::L2 => "l2",
            Self::DotProduct => "dot_product",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "cosine" => Ok(Self::Cosine),
            "l2" => Ok(Self::L2),
            "dot_product" | "dot" => Ok(Self::DotProduct),
            other => Err(Error::InvalidArgument(format!(
                "unknown metric {other:?} (expected cosine, l2 or dot_product)"
            ))),
        }
    }

    /// The reported score of `v` for query `q`, computed exactly (f64), for brute-force checks
    /// and routing.
    pub fn score(self, q: &[f32], v: &[f32]) -> f64 {
        match self {
            Self::Cosine => {
                let (mut dot, mut nq, mut nv) = (0f64, 0f64, 0f64);
                for (a, b) in q.iter().zip(v) {
                    let (a, b) = (*a as f64, *b as f64);
                    dot += a * b;
                    nq += a * a;
                    nv += b * b;
                }
                1.0 - dot / (nq.sqrt() * nv.sqrt())
            }
            Self::L2 => q
                .iter()
                .zip(v)
                .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                .sum::<f64>()
                .sqrt(),
            Self::DotProduct => {
                1.0 - q
                    .iter()
                    .zip(v)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
            }
        }
    }
}

/// Checks a vector before it is stored or searched: the expected dimension, only finite values,
/// and (for cosine, which divides by the norm) not all zeros.
pub fn check_vector(vector: &[f32], dim: usize, metric: Metric) -> Result<()> {
    if vector.len() != dim {
        return Err(Error::InvalidVector(format!(
            "dimension {} does not match the expected {dim}",
            vector.len()
        )));
    }
    if let Some((i, v)) = vector.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::InvalidVector(format!(
            "component {i} is {v} (only finite numbers are allowed)"
        )));
    }
    if metric == Metric::Cosine && vector.iter().all(|v| *v == 0.0) {
        return Err(Error::InvalidVector(
            "all components are zero, so it has no cosine similarity to anything".into(),
        ));
    }
    Ok(())
}

/// Little-endian f32 bytes, the form sqlite-vec and NPY store.
pub fn to_le_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Inverse of [`to_le_bytes`].
pub fn from_le_bytes(bytes: &[u8]) -> Result<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return Err(Error::InvalidVector(format!(
            "{} bytes is not a whole number of float32 values",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_the_convention() {
        let q = [1.0, 0.0];
        assert!((Metric::Cosine.score(&q, &[0.0, 2.0]) - 1.0).abs() < 1e-12);
        assert!(Metric::Cosine.score(&q, &[3.0, 0.0]).abs() < 1e-12);
        assert!((Metric::L2.score(&q, &[4.0, 4.0]) - 5.0).abs() < 1e-12);
        assert!((Metric::DotProduct.score(&q, &[0.5, 9.0]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn bad_vectors_are_refused_with_reason() {
        assert!(check_vector(&[1.0, 2.0], 2, Metric::L2).is_ok());
        let e = check_vector(&[1.0], 2, Metric::L2).unwrap_err();
        assert!(e.to_string().contains("dimension 1"), "{e}");
        let e = check_vector(&[1.0, f32::NAN], 2, Metric::L2).unwrap_err();
        assert!(e.to_string().contains("component 1 is NaN"), "{e}");
        assert!(check_vector(&[f32::INFINITY, 0.0], 2, Metric::L2).is_err());
        assert!(check_vector(&[0.0, 0.0], 2, Metric::Cosine).is_err());
        assert!(check_vector(&[0.0, 0.0], 2, Metric::L2).is_ok());
    }

    #[test]
    fn le_bytes_round_trip() {
        let v = [1.5f32, -2.0, 0.25];
        assert_eq!(from_le_bytes(&to_le_bytes(&v)).unwrap(), v);
        assert!(from_le_bytes(&[0, 0, 0]).is_err());
    }

    #[test]
    fn metric_names() {
        for m in [Metric::Cosine, Metric::L2, Metric::DotProduct] {
            assert_eq!(Metric::parse(m.as_str()).unwrap(), m);
        }
        assert!(Metric::parse("hamming").is_err());
    }
}
