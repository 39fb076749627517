//! Benchmarks for docs/benchmarks.md.
//!
//! ```text
//! cargo run --release -p edgeshard-tests --example bench -- kv [ROWS] [SHARDS]
//! cargo run --release -p edgeshard-tests --example bench -- debian DIR [SHARDS]
//! cargo run --release -p edgeshard-tests --example bench -- debian-routed DIR
//! ```
//! `kv`: builds ROWS (default 1,000,000) integer-keyed rows with 100-byte values, then times
//! warm single-key `get`s (each timed alone) and batched `multi_get`.
//! `scan [ROWS] [DIM]` (default 100,000 x 384): the exact-scan kernel on one thread, side by side
//! with sqlite-vec's own `vec0` KNN over the same table (a shard's layout): vectors scanned per
//! second for each metric, median of 7 runs.
//! `debian`: builds DIR/packages.parquet (the debian-minilm set) as a unified sqlite-vec snapshot
//! for cosine, l2 and dot_product, then times warm `search` k=10 for DIR/queries.parquet and
//! reports recall@10 against exact ground truth (the set's `gt_cosine_ids` / `gt_l2_ids`; for
//! dot, which the set has no column for, brute force in f64 here). Then vector-only snapshots of
//! 16 shards with cluster and lsh routing, searched with 1, 2 and 4 probes: recall@10 against
//! `gt_cosine_ids` and the shards each search touched (`debian-routed`: only this part).

use edgeshard_builder::build::{
    build, BuildOptions, DuplicatePolicy, VectorOnlyOptions, VectorRoutingKind,
};
use edgeshard_builder::input::{FieldMapping, InputFormat};
use edgeshard_native::{SearchOptions, Snapshot, VectorId};
use edgeshard_shared::{Key, KeyEncoding, Metric};
use edgeshard_tests::debian::{brute_force_dot, percentiles, read_queries, BoxResult, Query};
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("kv") => {
            let rows = args
                .get(1)
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(1_000_000);
            let shards = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(8);
            bench_kv(rows, shards)
        }
        Some("debian-routed") => {
            let dir = PathBuf::from(
                args.get(1)
                    .ok_or("debian-routed needs the data set folder")?,
            );
            let queries = read_queries(&dir.join("queries.parquet"))?;
            bench_debian_routed(&dir, &queries, 16)
        }
        Some("debian-ivf") => {
            let dir = PathBuf::from(args.get(1).ok_or("debian-ivf needs the data set folder")?);
            let shards = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(8);
            bench_debian_ivf(&dir, shards)
        }
        Some("scan") => {
            let rows = args
                .get(1)
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(100_000);
            let dim = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(384);
            bench_scan(rows, dim)
        }
        Some("synthetic") => {
            let rows = args
                .get(1)
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(1_000_000);
            let shards = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(8);
            bench_synthetic(rows, shards)
        }
        Some("debian") => {
            let dir = PathBuf::from(args.get(1).ok_or("debian needs the data set folder")?);
            let shards = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(8);
            bench_debian(&dir, shards)
        }
        _ => Err(
            "usage: bench kv [ROWS] [SHARDS] | bench debian DIR [SHARDS] | bench debian-ivf DIR \
             [SHARDS] | bench scan [ROWS] [DIM] | bench synthetic [ROWS] [SHARDS]"
                .into(),
        ),
    }
}

fn options(
    input: PathBuf,
    out: &Path,
    fields: FieldMapping,
    shards: u32,
    metric: Metric,
) -> BuildOptions {
    BuildOptions {
        input,
        input_format: None,
        fields,
        shards,
        key_encoding: None,
        metric,
        page_size: 4096,
        out: out.display().to_string(),
        storage_options: Vec::new(),
        on_duplicate: DuplicatePolicy::Error,
        run_id: None,
        threads: None,
        progress: false,
        sidecar: true,
        vector_only: None,
        vector_backend: Default::default(),
        vector_index: Default::default(),
        quantization: Default::default(),
    }
}

/// Each query searched once (k = 10, `options`), timed: the latencies in ms and recall@10 against
/// the ground truth of `metric`.
fn timed_searches(
    snap: &Snapshot,
    queries: &[Query],
    metric: Metric,
    options: &SearchOptions,
) -> BoxResult<(Vec<f64>, f64)> {
    let mut timings = Vec::new();
    let mut hits = 0usize;
    for q in queries {
        let t = Instant::now();
        let response = snap.search_with(&q.vector, options)?;
        timings.push(t.elapsed().as_secs_f64() * 1e3);
        let truth = match metric {
            Metric::Cosine => &q.gt_cosine,
            Metric::L2 => &q.gt_l2,
            Metric::DotProduct => &q.gt_dot,
        };
        hits += response
            .results
            .iter()
            .filter(|h| matches!(&h.id, VectorId::Str(id) if truth[..10].contains(id)))
            .count();
    }
    Ok((timings, hits as f64 / (queries.len() * 10) as f64))
}

/// The Debian set as a unified snapshot: key `id`, value `text`, vectors `embedding`, payload
/// `section`.
fn debian_unified(dir: &Path, out: &Path, shards: u32, metric: Metric) -> BuildOptions {
    let fields = FieldMapping {
        key_field: "id".into(),
        value_field: Some("text".into()),
        vector_field: Some("embedding".into()),
        payload_fields: vec!["section".into()],
    };
    let mut opts = options(dir.join("packages.parquet"), out, fields, shards, metric);
    opts.input_format = Some(InputFormat::Parquet);
    opts.key_encoding = Some(KeyEncoding::Utf8);
    opts
}

fn bench_kv(rows: u64, shards: u32) -> BoxResult<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("kv.jsonl");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&input)?);
        for key in 0..rows {
            let value: String = (0..100)
                .map(|_| rng.random_range(b'a'..=b'z') as char)
                .collect();
            writeln!(w, "{{\"id\":{key},\"value\":\"{value}\"}}")?;
        }
    }
    let fields = FieldMapping {
        key_field: "id".into(),
        value_field: Some("value".into()),
        vector_field: None,
        payload_fields: vec![],
    };
    let out = dir.path().join("snap");
    let summary = build(&options(input, &out, fields, shards, Metric::Cosine))?;
    println!(
        "| build KV | {} rows, 100-byte values, {shards} shards | {:.2} s | {:.0} rows/s | {:.1} MB |",
        summary.rows,
        summary.seconds,
        summary.rows_per_s,
        summary.bytes as f64 / 1e6
    );

    let snap = Snapshot::open(&out.display().to_string())?;
    let keys: Vec<Key> = (0..20_000)
        .map(|_| Key::Int(rng.random_range(0..rows as i64)))
        .collect();
    for key in &keys {
        snap.get(key)?.ok_or("a written key is missing")?; // warm-up: opens shards, fills caches
    }
    let mut timings = Vec::with_capacity(keys.len());
    for key in &keys {
        let t = Instant::now();
        let v = snap.get(key)?;
        timings.push(t.elapsed().as_secs_f64() * 1e6);
        assert!(v.is_some());
    }
    let (p50, p99, mean) = percentiles(&mut timings);
    println!("| get (warm, one key) | {} random keys | p50 {p50:.1} µs | p99 {p99:.1} µs | mean {mean:.1} µs |", keys.len());

    let t = Instant::now();
    let mut found = 0;
    for batch in keys.chunks(1000) {
        found += snap.multi_get(batch)?.iter().flatten().count();
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(found, keys.len());
    println!(
        "| multi_get (warm, batches of 1,000) | {} keys | {:.0} keys/s | {:.2} µs/key | |",
        keys.len(),
        keys.len() as f64 / secs,
        secs * 1e6 / keys.len() as f64
    );
    Ok(())
}

fn bench_debian(dir: &Path, shards: u32) -> BoxResult<()> {
    let mut queries = read_queries(&dir.join("queries.parquet"))?;
    let t = Instant::now();
    let dot_truth = brute_force_dot(&dir.join("packages.parquet"), &queries)?;
    eprintln!(
        "dot ground truth by brute force: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    for (q, truth) in queries.iter_mut().zip(dot_truth) {
        q.gt_dot = truth;
    }
    for (metric, gt_column) in [
        (Metric::Cosine, "gt_cosine_ids"),
        (Metric::L2, "gt_l2_ids"),
        (Metric::DotProduct, "brute-force dot"),
    ] {
        let work = tempfile::tempdir()?;
        let opts = debian_unified(dir, work.path(), shards, metric);
        let summary = build(&opts)?;
        println!(
            "| build unified sqlite-vec ({}) | {} x 384-d, {shards} shards | {:.2} s | {:.0} rows/s | {:.1} MB |",
            metric.as_str(),
            summary.rows,
            summary.seconds,
            summary.rows_per_s,
            summary.bytes as f64 / 1e6
        );
        let snap = Snapshot::open(&work.path().display().to_string())?;
        for q in &queries {
            snap.search(&q.vector, 10, None)?; // warm-up
        }
        let (mut timings, recall) =
            timed_searches(&snap, &queries, metric, &SearchOptions::default())?;
        let (p50, p99, mean) = percentiles(&mut timings);
        println!(
            "| search k=10 (warm, {}) | {} queries, {gt_column} | p50 {p50:.2} ms | p99 {p99:.2} ms | mean {mean:.2} ms, recall@10 {:.4} |",
            metric.as_str(),
            queries.len(),
            recall
        );
    }
    bench_debian_routed(dir, &queries, 16)
}

/// sqlite-vec flat vs `--vector-index ivf`, side by side on the Debian set, per metric: build
/// time and size, then warm latency and recall@10 of the 500 queries exact (flat) and over a
/// sweep of `nprobes` (IVF; "default" is the manifest's).
fn bench_debian_ivf(dir: &Path, shards: u32) -> BoxResult<()> {
    use edgeshard_builder::vector_index::IndexKind;
    use edgeshard_shared::vector::AnnParams;
    let mut queries = read_queries(&dir.join("queries.parquet"))?;
    let dot_truth = brute_force_dot(&dir.join("packages.parquet"), &queries)?;
    for (q, truth) in queries.iter_mut().zip(dot_truth) {
        q.gt_dot = truth;
    }
    use edgeshard_builder::build::Quantization;
    println!("| metric | index | build | size | nprobes / refine | p50 | p99 | recall@10 |");
    println!("|---|---|---|---|---|---|---|---|");
    for metric in [Metric::Cosine, Metric::L2, Metric::DotProduct] {
        for (label, index, quantization) in [
            ("flat", IndexKind::Flat, Quantization::None),
            ("ivf", IndexKind::Ivf, Quantization::None),
            ("binary codes", IndexKind::Flat, Quantization::Binary),
        ] {
            let work = tempfile::tempdir()?;
            let mut opts = debian_unified(dir, work.path(), shards, metric);
            opts.vector_index = index;
            opts.quantization = quantization;
            let summary = build(&opts)?;
            let snap = Snapshot::open(&work.path().display().to_string())?;
            // Binary codes sweep the refine factor (candidates per result) instead.
            let codes = quantization == Quantization::Binary;
            let sweep: Vec<Option<usize>> = match index {
                _ if codes => vec![None, Some(2), Some(6), Some(10)],
                IndexKind::Ivf => vec![
                    None,
                    Some(1),
                    Some(2),
                    Some(4),
                    Some(8),
                    Some(12),
                    Some(16),
                    Some(24),
                ],
                _ => vec![None],
            };
            for nprobes in sweep {
                let options = SearchOptions {
                    k: 10,
                    ann: match codes {
                        true => AnnParams {
                            refine_factor: nprobes.map(|r| r as u32),
                            ..AnnParams::default()
                        },
                        false => AnnParams {
                            nprobes,
                            ..AnnParams::default()
                        },
                    },
                    ..SearchOptions::default()
                };
                for q in &queries {
                    snap.search_with(&q.vector, &options)?; // warm-up
                }
                let (mut timings, recall) = timed_searches(&snap, &queries, metric, &options)?;
                let (p50, p99, _) = percentiles(&mut timings);
                println!(
                    "| {} | {label} | {:.2} s | {:.1} MB | {} | {p50:.2} ms | {p99:.2} ms | {:.4} |",
                    metric.as_str(),
                    summary.seconds,
                    summary.bytes as f64 / 1e6,
                    nprobes.map_or("default".to_string(), |n| n.to_string()),
                    recall
                );
            }
        }
    }
    Ok(())
}

/// Vector-only snapshots with cluster / lsh routing: recall@10 and shards touched per probes.
fn bench_debian_routed(dir: &Path, queries: &[Query], shards: u32) -> BoxResult<()> {
    for (routing, spill) in [
        (VectorRoutingKind::Cluster, 0.0),
        (VectorRoutingKind::Cluster, 0.3),
        (VectorRoutingKind::Lsh, 0.0),
    ] {
        let work = tempfile::tempdir()?;
        let fields = FieldMapping {
            key_field: "id".into(),
            value_field: None,
            vector_field: Some("embedding".into()),
            payload_fields: vec!["section".into()],
        };
        let mut opts = options(
            dir.join("packages.parquet"),
            work.path(),
            fields,
            shards,
            Metric::Cosine,
        );
        opts.input_format = Some(InputFormat::Parquet);
        opts.key_encoding = Some(KeyEncoding::Utf8);
        opts.vector_only = Some(VectorOnlyOptions {
            routing,
            num_probes: 2,
            shard_field: None,
            hash_bits: None,
            spill,
        });
        let summary = build(&opts)?;
        let name = match spill > 0.0 {
            true => format!("{}, spill {spill}", summary.vector_routing.unwrap_or("?")),
            false => summary.vector_routing.unwrap_or("?").to_string(),
        };
        let snap = Snapshot::open(&work.path().display().to_string())?;
        let sizes: Vec<u64> = snap.manifest().shards.iter().map(|s| s.row_count).collect();
        println!(
            "| build vector-only ({name}, cosine) | {} x 384-d, {shards} shards (rows per shard {}..{}) | {:.2} s | {:.0} rows/s | {:.1} MB |",
            summary.rows,
            sizes.iter().min().unwrap_or(&0),
            sizes.iter().max().unwrap_or(&0),
            summary.seconds,
            summary.rows_per_s,
            summary.bytes as f64 / 1e6
        );
        for probes in [1usize, 2, 4] {
            let search = |q: &Query| {
                snap.search_with(
                    &q.vector,
                    &SearchOptions {
                        k: 10,
                        probes: Some(probes),
                        ..SearchOptions::default()
                    },
                )
            };
            for q in queries {
                search(q)?; // warm-up
            }
            let (mut timings, mut hits, mut touched) = (Vec::new(), 0usize, 0usize);
            for q in queries {
                let t = Instant::now();
                let response = search(q)?;
                timings.push(t.elapsed().as_secs_f64() * 1e3);
                touched += response.shards_queried;
                hits += response
                    .results
                    .iter()
                    .filter(
                        |h| matches!(&h.id, VectorId::Str(id) if q.gt_cosine[..10].contains(id)),
                    )
                    .count();
            }
            let (p50, p99, mean) = percentiles(&mut timings);
            println!(
                "| search k=10 ({name}, {probes} probes, warm) | {} queries, gt_cosine_ids | p50 {p50:.2} ms | p99 {p99:.2} ms | mean {mean:.2} ms, recall@10 {:.4}, shards touched {:.2} |",
                queries.len(),
                hits as f64 / (queries.len() * 10) as f64,
                touched as f64 / queries.len() as f64
            );
        }
    }
    Ok(())
}

/// One thread, one in-memory shard table of `rows` random `dim`-d vectors per metric: sqlite-vec's
/// `MATCH` (what shardyfusion's reader runs) vs [`edgeshard_shared::ivf::scan_chunks`] over the
/// same chunks (what edgeshard's readers run), each k = 10, median of 7 runs.
fn bench_scan(rows: usize, dim: usize) -> BoxResult<()> {
    use edgeshard_shared::{ivf, search_plan, shard_schema};
    edgeshard_native::sqlite_vec_ext::register();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let vectors: Vec<Vec<f32>> = (0..rows)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect();
    let query: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let as_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    println!("scan: {rows} x {dim}, one thread, k = 10, median of 7 runs");
    for metric in [Metric::Cosine, Metric::L2] {
        let conn = rusqlite::Connection::open_in_memory()?;
        conn.execute_batch(&shard_schema::vec_index_ddl(dim, metric))?;
        {
            let tx = conn.unchecked_transaction()?;
            let mut insert =
                tx.prepare("INSERT INTO vec_index(rowid, embedding) VALUES (?1, ?2)")?;
            for (i, v) in vectors.iter().enumerate() {
                insert.execute(rusqlite::params![i as i64 + 1, as_bytes(v)])?;
            }
            drop(insert);
            tx.commit()?;
        }
        let query_bytes = as_bytes(&query);
        let median = |mut samples: Vec<f64>| {
            samples.sort_by(f64::total_cmp);
            samples[samples.len() / 2]
        };
        let mut knn = conn.prepare(&search_plan::sql::knn(false, false))?;
        let mut sqlite_vec = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..7 {
            let started = Instant::now();
            expected = knn
                .query_map(rusqlite::params![query_bytes, 10i64], |r| {
                    r.get::<_, i64>(0)
                })?
                .collect::<Result<Vec<i64>, _>>()?;
            sqlite_vec.push(started.elapsed().as_secs_f64());
        }
        let mut chunks_stmt = conn.prepare(
            "SELECT c.rowids, c.validity, v.vectors FROM vec_index_chunks c \
             JOIN vec_index_vector_chunks00 v ON v.oid = c.chunk_id ORDER BY c.chunk_id",
        )?;
        let blobs: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = chunks_stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut ours = Vec::new();
        let mut found = Vec::new();
        for _ in 0..7 {
            let started = Instant::now();
            let chunks = blobs.iter().map(|(rowids, validity, vectors)| ivf::Chunk {
                rowids,
                validity,
                vectors,
            });
            found = ivf::scan_chunks(&query, metric, chunks, 10)?;
            ours.push(started.elapsed().as_secs_f64());
        }
        let ids: Vec<i64> = found.iter().map(|c| c.0).collect();
        let (theirs_s, ours_s) = (median(sqlite_vec), median(ours));
        println!(
            "{:<8} sqlite-vec {:>6.2} M vectors/s ({:>7.2} ms)   edgeshard {:>6.2} M vectors/s \
             ({:>7.2} ms)   {:.1}x   same top 10: {}",
            metric.as_str(),
            rows as f64 / theirs_s / 1e6,
            theirs_s * 1e3,
            rows as f64 / ours_s / 1e6,
            ours_s * 1e3,
            theirs_s / ours_s,
            ids == expected
        );
    }
    Ok(())
}

/// sqlite-vec at scale: ROWS x 384 clustered synthetic vectors (`edgeshard_tests::synthetic`,
/// the generator of lance_bench's run), l2, built flat (exact), IVF and flat with binary codes
/// in one run; warm latency and recall@10 of 100 fresh queries against brute force.
fn bench_synthetic(rows: usize, shards: u32) -> BoxResult<()> {
    use edgeshard_builder::build::Quantization;
    use edgeshard_builder::vector_index::IndexKind;
    use edgeshard_shared::vector::AnnParams;
    use edgeshard_tests::synthetic::{prepare, recall_hits, SyntheticSet};
    let work = tempfile::tempdir()?;
    let SyntheticSet {
        input,
        queries,
        truth,
    } = prepare(work.path(), rows)?;
    println!("| index | build | size | nprobes / refine | recall@10 | warm p50 | p99 |");
    println!("|---|---|---|---|---|---|---|");
    for (label, index, quantization) in [
        ("flat (exact)", IndexKind::Flat, Quantization::None),
        ("ivf", IndexKind::Ivf, Quantization::None),
        ("flat + binary codes", IndexKind::Flat, Quantization::Binary),
    ] {
        let out = work.path().join(label.replace([' ', '(', ')', '+'], ""));
        let fields = FieldMapping {
            key_field: "id".into(),
            value_field: None,
            vector_field: Some("embedding".into()),
            payload_fields: vec![],
        };
        let mut opts = options(input.clone(), &out, fields, shards, Metric::L2);
        opts.input_format = Some(InputFormat::Parquet);
        opts.vector_index = index;
        opts.quantization = quantization;
        let t = Instant::now();
        let summary = build(&opts)?;
        let build_s = t.elapsed().as_secs_f64();
        let snap = Snapshot::open(&out.display().to_string())?;
        let sweep: Vec<AnnParams> = match (index, quantization) {
            (IndexKind::Ivf, _) => [None, Some(2), Some(4), Some(8), Some(16)]
                .into_iter()
                .map(|nprobes| AnnParams {
                    nprobes,
                    ..AnnParams::default()
                })
                .collect(),
            (_, Quantization::Binary) => [None, Some(10), Some(50)]
                .into_iter()
                .map(|refine_factor| AnnParams {
                    refine_factor,
                    ..AnnParams::default()
                })
                .collect(),
            _ => vec![AnnParams::default()],
        };
        for ann in sweep {
            let options = SearchOptions {
                k: 10,
                ann,
                payload_fields: Some(Vec::new()),
                ..SearchOptions::default()
            };
            for q in queries.iter().take(10) {
                snap.search_with(q, &options)?; // warm-up
            }
            let (mut timings, mut hits) = (Vec::new(), 0usize);
            for (q, top10) in queries.iter().zip(&truth) {
                let t = Instant::now();
                let response = snap.search_with(q, &options)?;
                timings.push(t.elapsed().as_secs_f64() * 1e3);
                let ids: Vec<VectorId> = response.results.into_iter().map(|h| h.id).collect();
                hits += recall_hits(&ids, top10);
            }
            let (p50, p99, _) = percentiles(&mut timings);
            let knob = match (ann.nprobes, ann.refine_factor) {
                (Some(n), _) => format!("nprobes {n}"),
                (_, Some(r)) => format!("refine {r}"),
                _ => "default".into(),
            };
            println!(
                "| {label} | {build_s:.0} s | {:.0} MB | {knob} | {:.4} | {p50:.1} ms | {p99:.1} ms |",
                summary.bytes as f64 / 1e6,
                hits as f64 / (queries.len() * 10) as f64,
            );
        }
    }
    Ok(())
}
