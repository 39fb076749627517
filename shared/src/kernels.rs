//! The distance loops of every exact scan: one stored vector after another (little-endian f32
//! bytes, as sqlite-vec keeps them in its chunks) against one query, at memory speed.
//!
//! The loops are written once, over `LANES` (16) independent sums the compiler turns into SIMD,
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
    #[cfg(target_arch = "wasm32")]
    {
        // wasm has no run-time feature detection: a module either uses simd128 or not, and
        // every engine the reader targets has it (Chrome 91, Firefox 89, Safari 16.4, Node 16.4,
        // workerd). Explicit intrinsics, because the package is built at opt-level "z", where
        // LLVM does not vectorise the portable loop.
        simd128::distances(query, cosine, vectors, out);
    }
    #[cfg(not(target_arch = "wasm32"))]
    distances_portable(query, cosine, vectors, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn distances_avx2(query: &[f32], cosine: bool, vectors: &[u8], out: &mut Vec<f32>) {
    distances_portable(query, cosine, vectors, out);
}

/// The loop itself, inlined into each compiled variant (on wasm32 only the tests call it: the
/// module has its own SIMD version).
#[inline(always)]
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
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

/// The portable loop written with wasm's 128-bit SIMD: four `f32x4` sums are the [`LANES`]
/// lanes, added in the same order, so the distances equal the portable loop's bit for bit.
#[cfg(target_arch = "wasm32")]
mod simd128 {
    use super::LANES;
    use core::arch::wasm32::{
        f32x4_add, f32x4_extract_lane, f32x4_mul, f32x4_splat, f32x4_sub, v128, v128_load,
    };

    #[target_feature(enable = "simd128")]
    pub(super) fn distances(query: &[f32], cosine: bool, vectors: &[u8], out: &mut Vec<f32>) {
        let width = query.len() * 4;
        if width == 0 {
            return;
        }
        let query_norm = super::sum_lanes(query, &[], |q, _| q * q).sqrt();
        let (query_blocks, query_tail) = query.as_chunks::<LANES>();
        let query_blocks: Vec<[v128; 4]> = query_blocks.iter().map(load).collect();
        let whole = query_blocks.len() * LANES * 4;
        out.reserve(vectors.len() / width);
        for stored in vectors.chunks_exact(width) {
            let (blocks, tail) = stored.split_at(whole);
            let (blocks, _) = blocks.as_chunks::<{ LANES * 4 }>();
            let distance = match cosine {
                true => {
                    let (dot, norm) = dot_and_norm(&query_blocks, blocks, query_tail, tail);
                    1.0 - dot / (query_norm * norm.sqrt())
                }
                false => sum(&query_blocks, blocks, query_tail, tail, |q, v| {
                    let d = f32x4_sub(q, v);
                    f32x4_mul(d, d)
                })
                .sqrt(),
            };
            out.push(distance);
        }
    }

    /// `super::sum_lanes` over pre-loaded query blocks; `term` applied lane-wise (the tail,
    /// shorter than a block, through the same closure on one lane at a time).
    #[inline(always)]
    fn sum(
        query_blocks: &[[v128; 4]],
        stored_blocks: &[[u8; LANES * 4]],
        query_tail: &[f32],
        stored_tail: &[u8],
        term: impl Fn(v128, v128) -> v128,
    ) -> f32 {
        let mut sums = [f32x4_splat(0.0); 4];
        for (q, v) in query_blocks.iter().zip(stored_blocks) {
            let v = load_bytes(v);
            for quarter in 0..4 {
                sums[quarter] = f32x4_add(sums[quarter], term(q[quarter], v[quarter]));
            }
        }
        let total = lane_total(sums);
        let tail: f32 = query_tail
            .iter()
            .zip(stored_tail.chunks_exact(4))
            .map(|(q, v)| {
                let v = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                f32x4_extract_lane::<0>(term(f32x4_splat(*q), f32x4_splat(v)))
            })
            .sum();
        total + tail
    }

    /// The dot product and the stored vector's squared norm in one pass (8 of V8's 16 vector
    /// registers hold the sums; natively on x86-64 the fused loop was slower, see
    /// `distances_portable`), each summed lane by lane as `sum` does.
    #[inline(always)]
    fn dot_and_norm(
        query_blocks: &[[v128; 4]],
        stored_blocks: &[[u8; LANES * 4]],
        query_tail: &[f32],
        stored_tail: &[u8],
    ) -> (f32, f32) {
        let mut dots = [f32x4_splat(0.0); 4];
        let mut norms = [f32x4_splat(0.0); 4];
        for (q, v) in query_blocks.iter().zip(stored_blocks) {
            let v = load_bytes(v);
            for quarter in 0..4 {
                dots[quarter] = f32x4_add(dots[quarter], f32x4_mul(q[quarter], v[quarter]));
                norms[quarter] = f32x4_add(norms[quarter], f32x4_mul(v[quarter], v[quarter]));
            }
        }
        let tail_terms = || {
            query_tail
                .iter()
                .zip(stored_tail.chunks_exact(4))
                .map(|(q, v)| (*q, f32::from_le_bytes([v[0], v[1], v[2], v[3]])))
        };
        let dot_tail: f32 = tail_terms().map(|(q, v)| q * v).sum();
        let norm_tail: f32 = tail_terms().map(|(_, v)| v * v).sum();
        (lane_total(dots) + dot_tail, lane_total(norms) + norm_tail)
    }

    /// The 16 lanes of four sums added in lane order (as the portable loop adds its array).
    #[inline(always)]
    fn lane_total(sums: [v128; 4]) -> f32 {
        let mut total = 0f32;
        for quarter in sums {
            total += f32x4_extract_lane::<0>(quarter);
            total += f32x4_extract_lane::<1>(quarter);
            total += f32x4_extract_lane::<2>(quarter);
            total += f32x4_extract_lane::<3>(quarter);
        }
        total
    }

    #[inline(always)]
    fn load(block: &[f32; LANES]) -> [v128; 4] {
        let bytes: &[u8; LANES * 4] = bytemuck_free_cast(block);
        load_bytes(bytes)
    }

    /// A block of f32 seen as its little-endian bytes (wasm32 is little-endian).
    #[inline(always)]
    fn bytemuck_free_cast(block: &[f32; LANES]) -> &[u8; LANES * 4] {
        // SAFETY: [f32; 16] and [u8; 64] have the same size, u8 has no alignment requirement,
        // and every byte of an f32 is initialised.
        unsafe { &*(block as *const [f32; LANES]).cast::<[u8; LANES * 4]>() }
    }

    #[inline(always)]
    fn load_bytes(block: &[u8; LANES * 4]) -> [v128; 4] {
        // SAFETY: each load reads 16 bytes at offsets 0, 16, 32, 48 of a 64-byte array; wasm's
        // v128.load has no alignment requirement.
        unsafe {
            let at = block.as_ptr();
            [
                v128_load(at.cast::<v128>()),
                v128_load(at.add(16).cast::<v128>()),
                v128_load(at.add(32).cast::<v128>()),
                v128_load(at.add(48).cast::<v128>()),
            ]
        }
    }
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
