//! Which shards a vector query probes in a vector-routed snapshot (spec section 7), computed
//! from the routing artifacts (`centroids.npy`, `hyperplanes.npy`, read with [`crate::npy`]).
//! Pure functions: readers fetch the artifacts and pass them in.

use crate::error::{Error, Result};
use crate::npy::Matrix;
use crate::vector::Metric;

/// The `probes` nearest centroids to `query`, nearest first: squared L2 for l2, `1 - cos` for
/// cosine, `-dot` for dot product; ties go to the lower index (a stable order). Centroid `i` is
/// shard `i`.
pub fn cluster_probes(
    query: &[f32],
    centroids: &Matrix,
    metric: Metric,
    probes: usize,
) -> Result<Vec<u32>> {
    if centroids.cols != query.len() {
        return Err(Error::InvalidVector(format!(
            "query has dimension {}, the centroids {}",
            query.len(),
            centroids.cols
        )));
    }
    let mut scored: Vec<(f64, u32)> = (0..centroids.rows)
        .map(|i| {
            let c = centroids.row(i);
            let d = match metric {
                Metric::L2 => query
                    .iter()
                    .zip(c)
                    .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                    .sum::<f64>(),
                Metric::Cosine => Metric::Cosine.score(query, c),
                Metric::DotProduct => -query
                    .iter()
                    .zip(c)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>(),
            };
            // A zero centroid has no cosine: it sorts last instead of poisoning the order.
            (if d.is_nan() { f64::INFINITY } else { d }, i as u32)
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    Ok(scored
        .into_iter()
        .take(probes.max(1))
        .map(|(_, i)| i)
        .collect())
}

/// LSH probes: `code = sum over i of [h_i . query > 0] << i`, the first probe is
/// `code % num_dbs`, extra probes flip bit 0, 1, ... of the code (each `% num_dbs`, repeats
/// skipped). At most 64 hyperplanes.
pub fn lsh_probes(
    query: &[f32],
    hyperplanes: &Matrix,
    num_dbs: u32,
    probes: usize,
) -> Result<Vec<u32>> {
    if num_dbs == 0 {
        return Err(Error::InvalidArgument("num_dbs must be at least 1".into()));
    }
    if hyperplanes.cols != query.len() {
        return Err(Error::InvalidVector(format!(
            "query has dimension {}, the hyperplanes {}",
            query.len(),
            hyperplanes.cols
        )));
    }
    if hyperplanes.rows > 64 {
        return Err(Error::InvalidArgument(format!(
            "{} hyperplanes: LSH codes are at most 64 bits",
            hyperplanes.rows
        )));
    }
    let code: u64 = (0..hyperplanes.rows)
        .filter(|i| {
            let dot: f64 = hyperplanes
                .row(*i)
                .iter()
                .zip(query)
                .map(|(h, v)| *h as f64 * *v as f64)
                .sum();
            dot > 0.0
        })
        .fold(0, |code, i| code | (1u64 << i));
    let mut out = vec![(code % num_dbs as u64) as u32];
    for bit in 0..hyperplanes.rows {
        if out.len() >= probes.max(1) || out.len() >= num_dbs as usize {
            break;
        }
        let shard = ((code ^ (1u64 << bit)) % num_dbs as u64) as u32;
        if !out.contains(&shard) {
            out.push(shard);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: usize, cols: usize, data: &[f32]) -> Matrix {
        Matrix {
            rows,
            cols,
            data: data.to_vec(),
        }
    }

    #[test]
    fn cluster_probes_are_nearest_first_with_ties_to_the_lower_index() {
        let c = matrix(3, 2, &[10.0, 0.0, 0.0, 1.0, 0.0, 1.0]);
        assert_eq!(
            cluster_probes(&[0.0, 0.9], &c, Metric::L2, 3).unwrap(),
            [1, 2, 0]
        );
        assert_eq!(
            cluster_probes(&[1.0, 0.0], &c, Metric::Cosine, 1).unwrap(),
            [0]
        );
        assert_eq!(
            cluster_probes(&[1.0, 0.0], &c, Metric::DotProduct, 2).unwrap(),
            [0, 1]
        );
        assert!(cluster_probes(&[1.0], &c, Metric::L2, 1).is_err());
    }

    #[test]
    fn lsh_code_and_bit_flips() {
        // h0 . v > 0, h1 . v < 0: code 0b01 = 1.
        let h = matrix(2, 2, &[1.0, 0.0, -1.0, 0.0]);
        assert_eq!(lsh_probes(&[1.0, 0.0], &h, 4, 1).unwrap(), [1]);
        // Flip bit 0 -> 0, flip bit 1 -> 3.
        assert_eq!(lsh_probes(&[1.0, 0.0], &h, 4, 3).unwrap(), [1, 0, 3]);
        // Modulo 2: 1, flip bit 0 -> 0; flipping bit 1 gives 3 % 2 = 1, a repeat.
        assert_eq!(lsh_probes(&[1.0, 0.0], &h, 2, 3).unwrap(), [1, 0]);
    }
}
