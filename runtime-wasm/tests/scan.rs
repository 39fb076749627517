//! The exact-scan loops as compiled for wasm32 (`shared::kernels`' simd128 version): their
//! distances against the definitions, and their speed for docs/benchmarks.md ("Exact scan"), a
//! benchmark ignored by the test command. Run it (Node) with the package's size settings:
//!
//! ```text
//! CARGO_PROFILE_RELEASE_OPT_LEVEL=z cargo test -p edgeshard-wasm \
//!     --target wasm32-unknown-unknown --release --test scan -- --include-ignored --nocapture
//! ```
//! and compare with `cargo run --release -p edgeshard-tests --example bench -- scan 100000 384`
//! (the same `scan_chunks` over the same kind of chunks, natively).
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edgeshard_shared::ivf::{scan_chunks, Chunk};
use edgeshard_shared::{kernels, Metric};
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

#[wasm_bindgen_test]
fn simd_distances_equal_the_definitions_in_f64() {
    // Widths around the 16 lanes: a tail alone, one block, blocks and a tail.
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
        let blob: Vec<u8> = stored
            .iter()
            .flatten()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        for cosine in [true, false] {
            let mut got = Vec::new();
            kernels::distances(&query, cosine, &blob, &mut got);
            assert_eq!(got.len(), 5, "dim {dim}");
            for (v, d) in stored.iter().zip(&got) {
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
            }
        }
    }
}

#[wasm_bindgen_test]
#[ignore]
fn exact_scan_speed() {
    const ROWS: usize = 40_960;
    const DIM: usize = 384;
    const CHUNK: usize = 1024;
    const SCANS_PER_SAMPLE: usize = 8;
    // A fixed pseudo-random sequence (no RNG crate in wasm tests): values in [-1, 1).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    let query: Vec<f32> = (0..DIM).map(|_| next()).collect();
    let chunks: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = (0..ROWS / CHUNK)
        .map(|c| {
            let rowids = (0..CHUNK)
                .flat_map(|i| ((c * CHUNK + i + 1) as i64).to_le_bytes())
                .collect();
            let vectors = (0..CHUNK * DIM)
                .flat_map(|_| next().to_le_bytes())
                .collect();
            (rowids, vec![0xff; CHUNK / 8], vectors)
        })
        .collect();
    let now = || js_sys::Date::now();
    for metric in [Metric::Cosine, Metric::L2] {
        let mut samples = Vec::new();
        for _ in 0..7 {
            let started = now();
            // Several scans per sample: Date.now() counts whole milliseconds.
            for _ in 0..SCANS_PER_SAMPLE {
                let found = scan_chunks(
                    &query,
                    metric,
                    chunks.iter().map(|(rowids, validity, vectors)| Chunk {
                        rowids,
                        validity,
                        vectors,
                    }),
                    10,
                )
                .unwrap();
                assert_eq!(found.len(), 10);
            }
            samples.push((now() - started) / SCANS_PER_SAMPLE as f64);
        }
        samples.sort_by(f64::total_cmp);
        let ms = samples[samples.len() / 2];
        console_log!(
            "wasm scan {}: {ROWS} x {DIM} in {ms:.1} ms, {:.2} M vectors/s",
            metric.as_str(),
            ROWS as f64 / ms / 1e3
        );
    }
}
