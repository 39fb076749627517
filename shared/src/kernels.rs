//! The distance loops of every exact scan: one stored vector after another (little-endian f32
//! bytes, as sqlite-vec keeps them in its chunks) against one query, at memory speed.
//!
//! The loops are written once, over [`LANES`] independent sums the compiler turns into SIMD,
//! and compiled twice on x86-64: for the baseline (SSE2) and for AVX2 + FMA, chosen at run time
//! by the CPU's features (`docs/benchmarks.md`, "Exact scan": sqlite-vec's scalar loop scans
//! about 2.6 M 384-d vectors per second on this machine). In wasm32 they compile to simd128
//! where the module enables it.

/// Independent f32 sums per loop: two AVX registers, four SSE2 or simd128 registers, enough to
/// hide the latency of each addition.
const LANES: usize = 16;

/// Cosine distance `1 - q.v / (|q| |v|)` (sqlite-vec's `vec_distance_cosine`) or Euclidean
/// distance `|q - v|` (its `vec_distance_l2`) of each stored vector in `vectors` (consecutive
/// vectors of `query.len()` little-endian f32) to `query`, appended to `out`.
///
/// `vectors.len()` must be a multiple of `4 * query.len()`; a partial vector at the end is
/// ignored (callers check chunk sizes first and name the chunk).
pub fn distances(query: &[f32], cosine: bool, vectors: &[u8], out: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has every feature `distances_avx2` is compiled for (checked above).
        unsafe { distances_avx2(query, cosine, vectors, out) };
        return;
    }
    distances_portable(query, cosine, vectors, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn distances_avx2(query: &[f32], cosine: bool, vectors: &[u8], out: &mut Vec<f32>) {
    distances_portable(query, cosine, vectors, out);
}

/// The loop itself, inlined into each compiled variant.
#[inline(always)]
fn distances_portable(query: &[f32], cosine: bool, vectors: &[u8], out: &mut Vec<f32>) {
    let width = query.len() * 4;
    if width == 0 {
        return;
    }
    let query_norm = sum_lanes(query, &[], |q, _| q * q).sqrt();
    out.reserve(vectors.len() / width);
    for stored in vectors.chunks_exact(width) {
        let distance = match cosine {
            // Two passes over the vector (it is in L1 by the second): one fused loop with two
            // sums per lane measured at half the speed.
            true => {
                let dot = sum_lanes(query, stored, |q, v| q * v);
                let norm = sum_lanes(query, stored, |_, v| v * v);
                1.0 - dot / (query_norm * norm.sqrt())
            }
            false => sum_lanes(query, stored, |q, v| (q - v) * (q - v)).sqrt(),
        };
        out.push(distance);
    }
}

/// `sum term(q_i, v_i)` over a query and a stored vector (`stored` empty: `v_i` = 0, the
/// query's own sums).
#[inline(always)]
fn sum_lanes(query: &[f32], stored: &[u8], term: impl Fn(f32, f32) -> f32) -> f32 {
    let mut sums = [0f32; LANES];
    let (query_blocks, query_tail) = query.as_chunks::<LANES>();
    if stored.is_empty() {
        for q in query_blocks {
            for lane in 0..LANES {
                sums[lane] += term(q[lane], 0.0);
            }
        }
        let tail: f32 = query_tail.iter().map(|q| term(*q, 0.0)).sum();
        return sums.iter().sum::<f32>() + tail;
    }
    let (stored_blocks, stored_tail) = stored.as_chunks::<{ LANES * 4 }>();
    for (q, v) in query_blocks.iter().zip(stored_blocks) {
        for lane in 0..LANES {
            sums[lane] += term(q[lane], f32_at(v, lane));
        }
    }
    let tail: f32 = query_tail
        .iter()
        .zip(stored_tail.chunks_exact(4))
        .map(|(q, v)| term(*q, f32::from_le_bytes([v[0], v[1], v[2], v[3]])))
        .sum();
    sums.iter().sum::<f32>() + tail
}

/// Lane `lane` of a block of [`LANES`] stored little-endian f32.
#[inline(always)]
fn f32_at(block: &[u8; LANES * 4], lane: usize) -> f32 {
    let at = lane * 4;
    f32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn distances_equal_the_definitions_in_f64() {
        // Widths around the lane count: tails, one block, blocks and a tail.
        for dim in [1, 3, 15, 16, 17, 33, 384] {
            let query: Vec<f32> = (0..dim)
                .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
                .collect();
            let stored: Vec<Vec<f32>> = (0..5)
                .map(|r| {
                    (0..dim)
                        .map(|i| ((i + r * 3) % 9) as f32 / 4.0 - 1.0)
                        .collect()
                })
                .collect();
            let blob: Vec<u8> = stored.iter().flat_map(|v| bytes(v)).collect();
            for cosine in [true, false] {
                let mut got = Vec::new();
                distances(&query, cosine, &blob, &mut got);
                let mut portable = Vec::new();
                distances_portable(&query, cosine, &blob, &mut portable);
                assert_eq!(got.len(), 5);
                for (v, (d, p)) in stored.iter().zip(got.iter().zip(&portable)) {
                    let dot: f64 = query
                        .iter()
                        .zip(v)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum();
                    let qq: f64 = query.iter().map(|a| (*a as f64).powi(2)).sum();
                    let vv: f64 = v.iter().map(|a| (*a as f64).powi(2)).sum();
                    let want = match cosine {
                        true => 1.0 - dot / (qq.sqrt() * vv.sqrt()),
                        false => (qq + vv - 2.0 * dot).max(0.0).sqrt(),
                    };
                    assert!((*d as f64 - want).abs() < 1e-4, "dim {dim}: {d} vs {want}");
                    assert!((d - p).abs() < 1e-5, "dim {dim}: the variants differ");
                }
            }
        }
        // A partial vector at the end is ignored.
        let mut got = Vec::new();
        distances(&[1.0, 0.0], false, &bytes(&[1.0, 0.0, 5.0]), &mut got);
        assert_eq!(got, vec![0.0]);
    }
}
