//! Vector routing of vector-only snapshots (format spec section 7): which shard a vector is
//! written to and which shards a query probes. Pure arithmetic, shared by the builder and every
//! reader so that writer and reader can never disagree.
//!
//! - **cluster**: shard = nearest centroid, with the spec's distance per metric (squared L2 for
//!   l2, `1 - cos` for cosine, `-dot` for dot_product), ties to the lowest index; a query probes
//!   the `num_probes` nearest centroids (stable order). Centroids are trained by k-means
//!   ([`train_kmeans`]: k-means++ seeding on a seeded sample, then Lloyd iterations).
//! - **lsh**: `code = sum_i [h_i . v > 0] << i`, shard = `code % num_dbs`; extra probes flip bit
//!   0, 1, ... (shards already listed are skipped), then pairs of bits, then any shard not yet
//!   listed in ascending order, so `probes = num_dbs` always covers every shard.
//! - **explicit**: the writer is told each record's shard; a reader must be given shard ids.

use crate::error::{Error, Result};
use crate::npy::Matrix;
use crate::vector::Metric;

/// How a vector-only snapshot assigned vectors to shards (`custom.vector.sharding_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorStrategy {
    /// Nearest centroid (`centroids.npy`); queries probe the nearest `num_probes` centroids.
    Cluster,
    /// LSH code from random hyperplanes (`hyperplanes.npy`); queries probe nearby codes.
    Lsh,
    /// The writer was told each record's shard; queries must name the shards.
    Explicit,
    /// A CEL expression chose the shard (shardyfusion); queries must name the shards too,
    /// since readers take no routing context yet.
    Cel,
}

impl VectorStrategy {
    /// The name recorded in `custom.vector.sharding_strategy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cluster => "cluster",
            Self::Lsh => "lsh",
            Self::Explicit => "explicit",
            Self::Cel => "cel",
        }
    }

    /// The strategy named `name` (as [`VectorStrategy::as_str`] writes it).
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "cluster" => Ok(Self::Cluster),
            "lsh" => Ok(Self::Lsh),
            "explicit" => Ok(Self::Explicit),
            "cel" => Ok(Self::Cel),
            other => Err(Error::InvalidArgument(format!(
                "unknown vector sharding strategy {other:?} (expected cluster, lsh, explicit or cel)"
            ))),
        }
    }
}

/// Largest `num_hash_bits` an LSH code can use (codes are u64).
pub const MAX_HASH_BITS: u32 = 64;

/// The seed edgeshard trains centroids and draws hyperplanes with (fixed: builds are
/// reproducible).
pub const DEFAULT_SEED: u64 = 42;

/// Distance from `v` to a centroid `c` used by cluster routing (lower is nearer).
pub fn centroid_distance(metric: Metric, v: &[f32], c: &[f32]) -> f64 {
    match metric {
        Metric::L2 => v
            .iter()
            .zip(c)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum(),
        Metric::Cosine => {
            let (mut dot, mut nv, mut nc) = (0f64, 0f64, 0f64);
            for (a, b) in v.iter().zip(c) {
                let (a, b) = (*a as f64, *b as f64);
                dot += a * b;
                nv += a * a;
                nc += b * b;
            }
            let norms = nv.sqrt() * nc.sqrt();
            // A zero vector or centroid is equally far from everything.
            if norms == 0.0 {
                1.0
            } else {
                1.0 - dot / norms
            }
        }
        Metric::DotProduct => -v
            .iter()
            .zip(c)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum::<f64>(),
    }
}

/// The shard (centroid index) a vector is written to: the nearest centroid, ties to the lowest
/// index.
pub fn cluster_assign(v: &[f32], centroids: &Matrix, metric: Metric) -> u32 {
    let mut best = (0u32, f64::INFINITY);
    for i in 0..centroids.rows {
        let d = centroid_distance(metric, v, centroids.row(i));
        if d < best.1 {
            best = (i as u32, d);
        }
    }
    best.0
}

/// Cluster assignment with *spill*: every vector goes to the shard of its nearest centroid
/// (as [`cluster_assign`]), and the `fraction` of vectors lying closest to a cell boundary
/// (smallest gap between the distances to their nearest and second-nearest centroid; ties to
/// the lower vector index) is also stored in the second-nearest shard.
///
/// Why: a query probes the cells of the centroids nearest to it, and the neighbours it misses
/// are mostly vectors just across a boundary. Storing those twice is the standard remedy
/// (SPANN's boundary replication); readers report a vector once ([`crate::merge`]). On the
/// Debian set (16 shards, 2 probes) a fraction of 0.2 lifts recall@10 from 0.864 to 0.903 for
/// 1.2x the stored vectors, 0.3 to 0.915 (docs/benchmarks.md). `fraction` 0 is plain [`cluster_assign`].
pub fn cluster_assign_with_spill(
    vectors: &[&[f32]],
    centroids: &Matrix,
    metric: Metric,
    fraction: f64,
) -> Vec<(u32, Option<u32>)> {
    // (index, distance) of the nearest and second-nearest centroid; strict `<` keeps ties on
    // the lower index, as in cluster_assign. u32::MAX: no such centroid.
    let nearest_two = |v: &[f32]| {
        let none = (u32::MAX, f64::INFINITY);
        let (mut first, mut second) = (none, none);
        for i in 0..centroids.rows {
            let d = centroid_distance(metric, v, centroids.row(i));
            if first.0 == u32::MAX || d < first.1 {
                second = first;
                first = (i as u32, d);
            } else if second.0 == u32::MAX || d < second.1 {
                second = (i as u32, d);
            }
        }
        (first, second)
    };
    let cells: Vec<((u32, f64), (u32, f64))> = vectors.iter().map(|v| nearest_two(v)).collect();
    let spilled = ((vectors.len() as f64) * fraction.clamp(0.0, 1.0)).floor() as usize;
    let mut by_gap: Vec<usize> = (0..vectors.len())
        .filter(|&i| cells[i].1 .0 != u32::MAX)
        .collect();
    by_gap.sort_by(|&a, &b| {
        let gap = |i: usize| cells[i].1 .1 - cells[i].0 .1;
        gap(a).total_cmp(&gap(b)).then(a.cmp(&b))
    });
    let mut out: Vec<(u32, Option<u32>)> = cells.iter().map(|c| (c.0 .0, None)).collect();
    for &i in by_gap.iter().take(spilled) {
        out[i].1 = Some(cells[i].1 .0);
    }
    out
}

/// The `probes` nearest centroids to `q`, nearest first (stable: ties keep index order, so the
/// first probe is always the shard [`cluster_assign`] picks).
pub fn cluster_probes(q: &[f32], centroids: &Matrix, metric: Metric, probes: usize) -> Vec<u32> {
    let mut order: Vec<(u32, f64)> = (0..centroids.rows)
        .map(|i| (i as u32, centroid_distance(metric, q, centroids.row(i))))
        .collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    order.into_iter().take(probes).map(|(i, _)| i).collect()
}

/// `sum_i [h_i . v > 0] << i` over the rows `h_i` of `hyperplanes` (at most 64).
pub fn lsh_code(v: &[f32], hyperplanes: &Matrix) -> u64 {
    let mut code = 0u64;
    for i in 0..hyperplanes.rows.min(MAX_HASH_BITS as usize) {
        let projection: f64 = hyperplanes
            .row(i)
            .iter()
            .zip(v)
            .map(|(h, x)| *h as f64 * *x as f64)
            .sum();
        if projection > 0.0 {
            code |= 1 << i;
        }
    }
    code
}

/// The shard an LSH-routed vector is written to: `code % num_dbs`.
pub fn lsh_assign(v: &[f32], hyperplanes: &Matrix, num_dbs: u32) -> u32 {
    (lsh_code(v, hyperplanes) % num_dbs.max(1) as u64) as u32
}

/// The shards an LSH-routed query probes, in order: its own bucket, then single-bit flips
/// (bit 0, 1, ...), then two-bit flips, then the remaining shards ascending; duplicates skipped.
pub fn lsh_probes(q: &[f32], hyperplanes: &Matrix, num_dbs: u32, probes: usize) -> Vec<u32> {
    let num_dbs = num_dbs.max(1);
    let probes = probes.min(num_dbs as usize);
    let code = lsh_code(q, hyperplanes);
    let bits = hyperplanes.rows.min(MAX_HASH_BITS as usize);
    let mut out: Vec<u32> = Vec::with_capacity(probes);
    let push = |c: u64, out: &mut Vec<u32>| {
        let shard = (c % num_dbs as u64) as u32;
        if out.len() < probes && !out.contains(&shard) {
            out.push(shard);
        }
    };
    push(code, &mut out);
    for i in 0..bits {
        push(code ^ (1 << i), &mut out);
    }
    'pairs: for i in 0..bits {
        for j in i + 1..bits {
            if out.len() >= probes {
                break 'pairs;
            }
            push(code ^ (1 << i) ^ (1 << j), &mut out);
        }
    }
    for shard in 0..num_dbs {
        push(shard as u64, &mut out);
    }
    out
}

/// The default `num_hash_bits` for `num_dbs` shards: enough bits to reach every shard
/// (`ceil(log2(num_dbs))`, at least 1).
pub fn default_hash_bits(num_dbs: u32) -> u32 {
    (u32::BITS - num_dbs.saturating_sub(1).leading_zeros()).max(1)
}

/// A small deterministic generator (SplitMix64): the same seed gives the same centroids and
/// hyperplanes on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next value of the sequence.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// `size` distinct indices of `0..n` (all of them, in order, when `size >= n`), chosen with a
/// seeded partial Fisher-Yates shuffle and returned ascending.
pub fn sample_indices(n: usize, size: usize, seed: u64) -> Vec<usize> {
    if size >= n {
        return (0..n).collect();
    }
    let mut rng = SplitMix64::new(seed);
    let mut all: Vec<usize> = (0..n).collect();
    for i in 0..size {
        let j = i + rng.below(n - i);
        all.swap(i, j);
    }
    let mut chosen = all[..size].to_vec();
    chosen.sort_unstable();
    chosen
}

/// `bits` random hyperplanes through the origin (standard normal components), shape
/// `[bits, dim]`.
pub fn random_hyperplanes(bits: u32, dim: usize, seed: u64) -> Result<Matrix> {
    if !(1..=MAX_HASH_BITS).contains(&bits) {
        return Err(Error::InvalidArgument(format!(
            "num_hash_bits must be between 1 and {MAX_HASH_BITS}, got {bits}"
        )));
    }
    let mut rng = SplitMix64::new(seed);
    let data = (0..bits as usize * dim)
        .map(|_| rng.normal() as f32)
        .collect();
    Ok(Matrix {
        rows: bits as usize,
        cols: dim,
        data,
    })
}

/// Trains `k` centroids on `sample` (rows of equal length) with k-means: k-means++ seeding
/// (squared L2, seeded), then up to `iterations` Lloyd steps (ties to the lowest index; an
/// empty cluster keeps its centroid), stopping early when no assignment changes. Sums are
/// accumulated in f64.
///
/// Training partitions the way routing will: for cosine it is spherical k-means (assignment by
/// `1 - cos`, centroids renormalised to unit length), so the cells k-means optimises are the
/// cells [`cluster_assign`] routes by; l2 and dot_product train with squared L2 (as
/// shardyfusion does).
pub fn train_kmeans(
    sample: &[&[f32]],
    k: usize,
    iterations: usize,
    seed: u64,
    metric: Metric,
) -> Result<Matrix> {
    let n = sample.len();
    if k == 0 {
        return Err(Error::InvalidArgument("k-means needs k >= 1".into()));
    }
    if n < k {
        return Err(Error::InvalidArgument(format!(
            "{k} centroids need at least {k} vectors to train on, got {n}"
        )));
    }
    let dim = sample[0].len();
    let sq = |a: &[f32], b: &[f32]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum()
    };
    let mut rng = SplitMix64::new(seed);
    let mut centroids: Vec<Vec<f32>> = Vec::with_capacity(k);
    centroids.push(sample[rng.below(n)].to_vec());
    let mut nearest: Vec<f64> = sample.iter().map(|v| sq(v, &centroids[0])).collect();
    while centroids.len() < k {
        let total: f64 = nearest.iter().sum();
        let pick = if total > 0.0 {
            let target = rng.next_f64() * total;
            let mut acc = 0.0;
            let mut chosen = n - 1;
            for (i, d) in nearest.iter().enumerate() {
                acc += d;
                if acc > target && *d > 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        } else {
            rng.below(n)
        };
        let c = sample[pick].to_vec();
        for (d, v) in nearest.iter_mut().zip(sample) {
            *d = d.min(sq(v, &c));
        }
        centroids.push(c);
    }
    let dot =
        |a: &[f32], b: &[f32]| -> f64 { a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum() };
    let norms: Vec<f64> = sample.iter().map(|v| dot(v, v).sqrt()).collect();
    let mut assignment = vec![usize::MAX; n];
    for _ in 0..iterations {
        let mut changed = false;
        let centroid_norms: Vec<f64> = centroids.iter().map(|c| dot(c, c).sqrt()).collect();
        for ((slot, v), vn) in assignment.iter_mut().zip(sample).zip(&norms) {
            let mut best = (0usize, f64::INFINITY);
            for (j, c) in centroids.iter().enumerate() {
                let d = match metric {
                    // 1 - cos with the norms computed once (a zero norm is equally far from all).
                    Metric::Cosine => match vn * centroid_norms[j] {
                        0.0 => 1.0,
                        norms => 1.0 - dot(v, c) / norms,
                    },
                    Metric::L2 | Metric::DotProduct => sq(v, c),
                };
                if d < best.1 {
                    best = (j, d);
                }
            }
            if *slot != best.0 {
                *slot = best.0;
                changed = true;
            }
        }
        if !changed {
            break;
        }
        let mut sums = vec![vec![0f64; dim]; k];
        let mut counts = vec![0usize; k];
        for (j, v) in assignment.iter().zip(sample) {
            counts[*j] += 1;
            for (s, x) in sums[*j].iter_mut().zip(v.iter()) {
                *s += *x as f64;
            }
        }
        for ((c, s), count) in centroids.iter_mut().zip(&sums).zip(&counts) {
            if *count > 0 {
                let scale = match metric {
                    // Spherical: the mean direction (length does not matter to cosine).
                    Metric::Cosine => s.iter().map(|x| x * x).sum::<f64>().sqrt(),
                    Metric::L2 | Metric::DotProduct => *count as f64,
                };
                if scale > 0.0 {
                    for (ci, si) in c.iter_mut().zip(s) {
                        *ci = (si / scale) as f32;
                    }
                }
            }
        }
    }
    Ok(Matrix {
        rows: k,
        cols: dim,
        data: centroids.into_iter().flatten().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rows: usize, cols: usize, data: &[f32]) -> Matrix {
        Matrix {
            rows,
            cols,
            data: data.to_vec(),
        }
    }

    #[test]
    fn cluster_assignment_per_metric() {
        // Centroids: (1,0), (0,2), (-3,0).
        let c = m(3, 2, &[1.0, 0.0, 0.0, 2.0, -3.0, 0.0]);
        // l2: (0.4, 1.5) is nearest (0,2) (dist^2 0.41) vs (1,0) (2.61).
        assert_eq!(cluster_assign(&[0.4, 1.5], &c, Metric::L2), 1);
        // cosine ignores length: (-0.1, 0) points at (-3,0).
        assert_eq!(cluster_assign(&[-0.1, 0.0], &c, Metric::Cosine), 2);
        assert_eq!(cluster_assign(&[-0.1, 0.0], &c, Metric::L2), 0);
        // dot prefers length: (1, 0.9) . (0,2) = 1.8 > (1,0) . = 1.
        assert_eq!(cluster_assign(&[1.0, 0.9], &c, Metric::DotProduct), 1);
        assert_eq!(cluster_assign(&[1.0, 0.9], &c, Metric::Cosine), 0);
    }

    #[test]
    fn spill_stores_the_boundary_vectors_twice() {
        // Centroids 0 and 10 on a line; the vectors nearest the midpoint 5 spill.
        let c = m(2, 1, &[0.0, 10.0]);
        let data: Vec<[f32; 1]> = [1.0, 4.9, 5.2, 9.0, 6.0].map(|x| [x]).to_vec();
        let refs: Vec<&[f32]> = data.iter().map(|v| v.as_slice()).collect();
        let none = cluster_assign_with_spill(&refs, &c, Metric::L2, 0.0);
        assert_eq!(
            none,
            [(0, None), (0, None), (1, None), (1, None), (1, None)]
        );
        for (v, (primary, _)) in refs.iter().zip(&none) {
            assert_eq!(*primary, cluster_assign(v, &c, Metric::L2));
        }
        let two = cluster_assign_with_spill(&refs, &c, Metric::L2, 0.4);
        assert_eq!(
            two,
            [(0, None), (0, Some(1)), (1, Some(0)), (1, None), (1, None)]
        );
        // One centroid: nowhere to spill to.
        let one = cluster_assign_with_spill(&refs, &m(1, 1, &[0.0]), Metric::L2, 1.0);
        assert!(one.iter().all(|(p, s)| *p == 0 && s.is_none()));
    }

    #[test]
    fn ties_go_to_the_lowest_index_and_probes_are_stable() {
        let c = m(4, 1, &[1.0, -1.0, 1.0, 5.0]);
        // 0 is equally far from 1 and -1 (and from the second 1).
        assert_eq!(cluster_assign(&[0.0], &c, Metric::L2), 0);
        assert_eq!(cluster_probes(&[0.0], &c, Metric::L2, 3), [0, 1, 2]);
        assert_eq!(cluster_probes(&[4.0], &c, Metric::L2, 2), [3, 0]);
        assert_eq!(cluster_probes(&[4.0], &c, Metric::L2, 9), [3, 0, 2, 1]);
        // The first probe is always the assigned shard.
        for x in [-2.0f32, -0.5, 0.0, 0.9, 2.9, 3.1, 7.0] {
            for metric in [Metric::L2, Metric::DotProduct] {
                assert_eq!(
                    cluster_probes(&[x], &c, metric, 1)[0],
                    cluster_assign(&[x], &c, metric)
                );
            }
        }
    }

    #[test]
    fn lsh_code_follows_the_spec_formula() {
        // h0 = (1, 0), h1 = (0, 1), h2 = (1, 1), h3 = (-1, 0)
        let h = m(4, 2, &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0, -1.0, 0.0]);
        // v = (2, -1): h0.v = 2 > 0 (bit 0), h1.v = -1, h2.v = 1 > 0 (bit 2), h3.v = -2.
        assert_eq!(lsh_code(&[2.0, -1.0], &h), 0b0101);
        // v = (-1, 3): h0 -1, h1 3 (bit 1), h2 2 (bit 2), h3 1 (bit 3).
        assert_eq!(lsh_code(&[-1.0, 3.0], &h), 0b1110);
        // Exactly zero is not > 0.
        assert_eq!(lsh_code(&[0.0, 0.0], &h), 0);
        assert_eq!(lsh_assign(&[-1.0, 3.0], &h, 5), 14 % 5);
    }

    #[test]
    fn lsh_probes_flip_bits_then_cover_everything() {
        let h = m(4, 2, &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0, -1.0, 0.0]);
        let q = [2.0, -1.0]; // code 5
                             // 16 shards: 5, 5^1=4, 5^2=7, 5^4=1, 5^8=13.
        assert_eq!(lsh_probes(&q, &h, 16, 5), [5, 4, 7, 1, 13]);
        // 4 shards: 5%4=1, 4%4=0, 7%4=3, 1 (dup), 13%4=1 (dup); pairs: 5^3=6 -> 2.
        assert_eq!(lsh_probes(&q, &h, 4, 4), [1, 0, 3, 2]);
        for n in 1..20u32 {
            let mut all = lsh_probes(&q, &h, n, n as usize);
            all.sort_unstable();
            assert_eq!(all, (0..n).collect::<Vec<_>>(), "probes = num_dbs = {n}");
        }
        assert_eq!(lsh_probes(&q, &h, 16, 1), [lsh_assign(&q, &h, 16)]);
    }

    #[test]
    fn default_hash_bits_reach_every_shard() {
        assert_eq!(default_hash_bits(1), 1);
        assert_eq!(default_hash_bits(2), 1);
        assert_eq!(default_hash_bits(3), 2);
        assert_eq!(default_hash_bits(16), 4);
        assert_eq!(default_hash_bits(17), 5);
    }

    #[test]
    fn kmeans_finds_separated_clusters() {
        // Three tight groups around (0,0), (10,0), (0,10); 30 points each.
        let mut rng = SplitMix64::new(7);
        let centres = [(0.0f32, 0.0f32), (10.0, 0.0), (0.0, 10.0)];
        let points: Vec<Vec<f32>> = (0..90)
            .map(|i| {
                let (x, y) = centres[i % 3];
                vec![
                    x + rng.next_f64() as f32 - 0.5,
                    y + rng.next_f64() as f32 - 0.5,
                ]
            })
            .collect();
        let refs: Vec<&[f32]> = points.iter().map(Vec::as_slice).collect();
        let c = train_kmeans(&refs, 3, 25, DEFAULT_SEED, Metric::L2).unwrap();
        assert_eq!((c.rows, c.cols), (3, 2));
        // Every true centre has a centroid within 0.5, and points of one group share a shard.
        for (x, y) in centres {
            assert!((0..3).any(|i| {
                let r = c.row(i);
                ((r[0] - x).powi(2) + (r[1] - y).powi(2)).sqrt() < 0.5
            }));
        }
        for g in 0..3 {
            let shards: std::collections::BTreeSet<u32> = (0..90)
                .filter(|i| i % 3 == g)
                .map(|i| cluster_assign(&points[i], &c, Metric::L2))
                .collect();
            assert_eq!(shards.len(), 1, "group {g} split over {shards:?}");
        }
        // Same seed, same centroids.
        assert_eq!(
            train_kmeans(&refs, 3, 25, DEFAULT_SEED, Metric::L2).unwrap(),
            c
        );
        assert!(train_kmeans(&refs[..2], 3, 25, 1, Metric::L2).is_err());

        // Spherical (cosine): unit-length centroids pointing at the three directions.
        let dirs = [(1.0f32, 0.0f32), (0.0, 1.0), (-1.0, 0.0)];
        let points: Vec<Vec<f32>> = (0..60)
            .map(|i| {
                let (x, y) = dirs[i % 3];
                let len = 1.0 + (i % 5) as f32; // lengths vary, directions do not
                let jitter = (rng.next_f64() as f32 - 0.5) * 0.1;
                vec![(x + jitter) * len, (y - jitter) * len]
            })
            .collect();
        let refs: Vec<&[f32]> = points.iter().map(Vec::as_slice).collect();
        let c = train_kmeans(&refs, 3, 25, DEFAULT_SEED, Metric::Cosine).unwrap();
        for i in 0..3 {
            let n = (c.row(i)[0].powi(2) + c.row(i)[1].powi(2)).sqrt();
            assert!((n - 1.0).abs() < 1e-5, "unit length: {n}");
        }
        for g in 0..3 {
            let shards: std::collections::BTreeSet<u32> = (0..60)
                .filter(|i| i % 3 == g)
                .map(|i| cluster_assign(&points[i], &c, Metric::Cosine))
                .collect();
            assert_eq!(shards.len(), 1, "direction {g} split over {shards:?}");
        }
    }

    #[test]
    fn samples_are_distinct_and_seeded() {
        let s = sample_indices(1000, 100, 3);
        assert_eq!(s.len(), 100);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(s, sample_indices(1000, 100, 3));
        assert_ne!(s, sample_indices(1000, 100, 4));
        assert_eq!(sample_indices(5, 10, 3), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn hyperplanes_have_the_asked_shape() {
        let h = random_hyperplanes(5, 3, 1).unwrap();
        assert_eq!((h.rows, h.cols, h.data.len()), (5, 3, 15));
        assert!(h.data.iter().all(|x| x.is_finite()));
        assert!(random_hyperplanes(0, 3, 1).is_err());
        assert!(random_hyperplanes(65, 3, 1).is_err());
    }
}
