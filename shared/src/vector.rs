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

/// How vectors are compared; every score is a distance, lower is better (table above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Cosine distance, `1 - cos(q, v)`.
    Cosine,
    /// Euclidean distance.
    L2,
    /// `1 - q·v` (inner product; not normalised).
    DotProduct,
}

impl Metric {
    /// The name recorded in `custom.vector.metric` and taken by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cosine => "cosine",
            Self::L2 => "l2",
            Self::DotProduct => "dot_product",
        }
    }

    /// The metric named `name` (`dot` is accepted for `dot_product`).
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
    // Backends compute distances in f32: a squared norm (cosine) or squared distance past
    // f32's range is infinite, one below it is zero, and the score comes back as null or 1.0.
    let norm = norm2(vector).sqrt();
    if norm > MAX_NORM {
        return Err(Error::InvalidVector(format!(
            "its norm is {norm:e}, above {MAX_NORM:e}: distances in float32 would overflow \
             (scale the vectors down)"
        )));
    }
    if metric == Metric::Cosine && norm < MIN_COSINE_NORM {
        return Err(Error::InvalidVector(format!(
            "its norm is {norm:e}, below {MIN_COSINE_NORM:e}: cosine in float32 would divide \
             by an underflowed norm (scale the vectors up)"
        )));
    }
    Ok(())
}

/// Largest vector norm accepted (build and query, every metric): squared norms and distances up
/// to `(2 * MAX_NORM)^2 = 4e30` stay finite in f32 (max 3.4e38) with room for the sums.
pub const MAX_NORM: f64 = 1e15;

/// Smallest norm of a cosine vector: its squared norm (1e-30) and the products it sums stay
/// normal f32 numbers (min 1.2e-38), so the division cosine makes is by a true norm.
pub const MIN_COSINE_NORM: f64 = 1e-15;

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

/// Inner product in f64.
pub fn dot(q: &[f32], v: &[f32]) -> f64 {
    q.iter().zip(v).map(|(a, b)| *a as f64 * *b as f64).sum()
}

/// Squared Euclidean norm in f64.
pub fn norm2(v: &[f32]) -> f64 {
    dot(v, v)
}

/// Query-time parameters of an approximate (indexed) vector shard: LanceDB's IVF / HNSW, and
/// the IVF cells of sqlite-vec shards (`nprobes`, `exact`; see [`crate::ivf`]). The builder
/// records its defaults in `custom.vector.index_params`; a query may override each. Exact
/// shards (flat sqlite-vec or LanceDB) ignore them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AnnParams {
    /// IVF partitions to probe.
    pub nprobes: Option<usize>,
    /// Re-rank `refine_factor x k` candidates by their exact distance.
    pub refine_factor: Option<u32>,
    /// HNSW search breadth.
    pub ef: Option<usize>,
    /// Ignore every index: search each shard exactly (brute force).
    pub exact: bool,
}

impl AnnParams {
    /// Reads `nprobes`, `refine_factor` and `ef` from an `index_params` object; other keys
    /// (build parameters) are ignored, and so is a value that is not a positive integer.
    pub fn from_index_params(params: &serde_json::Value) -> Self {
        let positive = |key: &str| {
            params
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .filter(|v| *v > 0)
        };
        Self {
            nprobes: positive("nprobes").map(|v| v as usize),
            refine_factor: positive("refine_factor").and_then(|v| u32::try_from(v).ok()),
            ef: positive("ef").map(|v| v as usize),
            exact: false,
        }
    }
}

/// How dot_product is served by an index that only knows L2 (sqlite-vec): the standard
/// reduction of maximum inner product search to nearest neighbour with one extra dimension.
///
/// With `M` the largest norm over all stored vectors, a stored vector `v` becomes
/// `v' = [v, sqrt(M^2 - |v|^2)]` (so `|v'| = M` for all) and a query `q` becomes `q' = [q, 0]`.
/// Then `|q' - v'|^2 = |q|^2 + M^2 - 2 q.v`: ascending L2 distance is descending `q.v`.
/// Recorded in the manifest as `custom.vector.dot_reduction =
/// {"method": "l2_augmented", "max_norm": M}` (the index then has `dim + 1` dimensions and
/// `distance_metric=l2`; `custom.vector.dim` stays the user's dimension).
///
/// Readers use the L2 pass to find candidates only: the reported score `1 - q.v` is computed
/// exactly (f64) from the first `dim` stored components (the original vector, bit for bit), and
/// candidates are re-ranked by it, so float rounding in `|q|^2 + M^2 - d^2` never reorders
/// results.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DotReduction {
    /// `M`: the largest norm over all stored vectors.
    pub max_norm: f64,
}

impl DotReduction {
    /// The `method` recorded in `custom.vector.dot_reduction`.
    pub const METHOD: &'static str = "l2_augmented";

    /// The reduction for a set of vectors; refused when every vector is zero (no inner product
    /// ranks anything).
    pub fn for_vectors<'a>(vectors: impl IntoIterator<Item = &'a [f32]>) -> Result<Self> {
        let max2 = vectors.into_iter().map(norm2).fold(0f64, f64::max);
        if max2 <= 0.0 || !max2.is_finite() {
            return Err(Error::InvalidVector(
                "every vector is all zeros, so dot_product cannot rank them".into(),
            ));
        }
        Ok(Self {
            max_norm: max2.sqrt(),
        })
    }

    /// `[v, sqrt(M^2 - |v|^2)]` (the square root clamped at 0 against rounding).
    pub fn augment(&self, v: &[f32]) -> Vec<f32> {
        let extra = (self.max_norm * self.max_norm - norm2(v)).max(0.0).sqrt();
        let mut out = Vec::with_capacity(v.len() + 1);
        out.extend_from_slice(v);
        out.push(extra as f32);
        out
    }

    /// `[q, 0]`.
    pub fn augment_query(q: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(q.len() + 1);
        out.extend_from_slice(q);
        out.push(0.0);
        out
    }

    /// An upper bound on `q.v` over every stored vector whose L2 distance to `[q, 0]`, as the
    /// index reports it, is at least `distance`: what lets a reader stop fetching candidates
    /// and still be exact whatever the norms.
    ///
    /// The index computes in f32: each of the `dim + 1` squared differences and their sum
    /// round with relative error `eps` (2^-23) of at most `(|q| + M)^2` (no augmented vector is
    /// further than that from the query), and the stored extra component
    /// `sqrt(M^2 - |v|^2)` was rounded to f32 once (relative error `3 eps` of `M^2` in its
    /// square). So the true squared distance is at least
    /// `distance^2 - ((dim + 3) eps (|q| + M)^2 + 3 eps M^2)`, and `q.v = (|q|^2 + M^2 - d^2) / 2`
    /// is at most what this returns. The error terms are doubled for margin. When one norm
    /// dwarfs the rest the bound is loose and readers end up scanning every vector: exact,
    /// at the cost of a full scan.
    pub fn max_dot_beyond(&self, q: &[f32], distance: f64) -> f64 {
        let eps = f32::EPSILON as f64;
        let q2 = norm2(q);
        let m2 = self.max_norm * self.max_norm;
        let reach = q2.sqrt() + self.max_norm;
        let error = 2.0 * ((q.len() as f64 + 4.0) * eps * reach * reach + 3.0 * eps * m2);
        (q2 + m2 - (distance * distance - error)) / 2.0
    }

    /// `q.v` recovered from the augmented L2 distance `d`: `(|q|^2 + M^2 - d^2) / 2`. Only as
    /// exact as `d` (readers re-rank with [`dot`] on the stored vector instead).
    pub fn dot_from_distance(&self, q: &[f32], d: f64) -> f64 {
        (norm2(q) + self.max_norm * self.max_norm - d * d) / 2.0
    }
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
        // Norms whose f32 squares under- or overflow (accepted before, scored null or 1.0).
        for tiny in [1e-30f32, 1e-44] {
            let e = check_vector(&[tiny, 0.0], 2, Metric::Cosine).unwrap_err();
            assert!(e.to_string().contains("below"), "{e}");
            assert!(check_vector(&[tiny, 0.0], 2, Metric::L2).is_ok());
        }
        for metric in [Metric::Cosine, Metric::L2, Metric::DotProduct] {
            let e = check_vector(&[1e30, 1.0], 2, metric).unwrap_err();
            assert!(e.to_string().contains("above"), "{e}");
            assert!(check_vector(&[1e-3, 1e3], 2, metric).is_ok());
        }
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

    #[test]
    fn dot_reduction_turns_l2_order_into_dot_order() {
        let vs: Vec<Vec<f32>> = vec![
            vec![3.0, 0.0],
            vec![0.5, 0.5],
            vec![-1.0, 2.0],
            vec![0.0, 0.0],
        ];
        let r = DotReduction::for_vectors(vs.iter().map(Vec::as_slice)).unwrap();
        assert!((r.max_norm - 3.0).abs() < 1e-12);
        let q = [0.7f32, -0.2];
        let l2 = |a: &[f32], b: &[f32]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let qa = DotReduction::augment_query(&q);
        assert_eq!(qa, [0.7, -0.2, 0.0]);
        for v in &vs {
            let va = r.augment(v);
            assert_eq!(va.len(), 3);
            assert_eq!(
                &va[..2],
                &v[..],
                "the original components are kept bit for bit"
            );
            assert!((norm2(&va) - 9.0).abs() < 1e-5, "every augmented norm is M");
            let recovered = r.dot_from_distance(&q, l2(&qa, &va));
            assert!(
                (recovered - dot(&q, v)).abs() < 1e-5,
                "{recovered} vs {}",
                dot(&q, v)
            );
        }
        // Ascending augmented distance = descending dot.
        let mut by_l2: Vec<usize> = (0..vs.len()).collect();
        by_l2.sort_by(|a, b| l2(&qa, &r.augment(&vs[*a])).total_cmp(&l2(&qa, &r.augment(&vs[*b]))));
        let mut by_dot: Vec<usize> = (0..vs.len()).collect();
        by_dot.sort_by(|a, b| dot(&q, &vs[*b]).total_cmp(&dot(&q, &vs[*a])));
        assert_eq!(by_l2, by_dot);
        assert!(DotReduction::for_vectors([&[0.0f32, 0.0][..]]).is_err());
    }

    /// The L2 distance as an f32 index computes it: f32 differences, squares and a running sum.
    fn l2_f32(a: &[f32], b: &[f32]) -> f64 {
        let sum: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
        sum.sqrt() as f64
    }

    #[test]
    fn the_dot_bound_holds_for_any_norms() {
        // A deterministic spread of vectors, one with a norm that dwarfs the rest (the case
        // that lost 46 of 60 top-10 ids before): for every stored vector, its true dot is at
        // most the bound computed from its f32 distance.
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for (dim, giant) in [(4usize, 1e4f32), (64, 3e3), (384, 1.0)] {
            let mut vs: Vec<Vec<f32>> = (0..300)
                .map(|_| (0..dim).map(|_| next()).collect())
                .collect();
            vs[17] = vs[17].iter().map(|x| x * giant).collect();
            let r = DotReduction::for_vectors(vs.iter().map(Vec::as_slice)).unwrap();
            for _ in 0..20 {
                let q: Vec<f32> = (0..dim).map(|_| next()).collect();
                let qa = DotReduction::augment_query(&q);
                for v in &vs {
                    let d = l2_f32(&qa, &r.augment(v));
                    let bound = r.max_dot_beyond(&q, d);
                    assert!(
                        dot(&q, v) <= bound,
                        "dim {dim}: dot {} above the bound {bound}",
                        dot(&q, v)
                    );
                }
            }
        }
    }
}
