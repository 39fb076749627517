//! LanceDB-backend benchmarks for docs/benchmarks.md (needs `--features lancedb`).
//!
//! ```text
//! cargo run -p edgeshard-tests --features lancedb --example lance_bench -- debian DIR [SHARDS]
//! cargo run -p edgeshard-tests --features lancedb --example lance_bench -- s3 DIR [DELAY_MS]
//! cargo run -p edgeshard-tests --features lancedb --example lance_bench -- synthetic ROWS [SHARDS]
//! ```
//! `debian`: the debian-minilm set as composite snapshots (SQLite KV + LanceDB, SHARDS default
//! 2, so each shard is large enough to be indexed) for cosine, l2 and dot_product; recall@10
//! against exact ground truth and warm latency, at the manifest's default ANN parameters and
//! a sweep of `nprobes` / `ef` / `refine`. Also the flat/indexed crossover on one shard.
//! `s3`: the cosine snapshot on a local S3 server (edgeshard-s3-server on 127.0.0.1, built by
//! scripts/setup-bench.sh) behind a proxy adding
//! DELAY_MS (default 0 and 20) to every request: open, cold and warm search and get latency,
//! requests and bytes per query, for LanceDB and for sqlite-vec (range reads).
//! `synthetic`: ROWS (default 1,000,000) x 384-d clustered vectors, built as LanceDB and as
//! sqlite-vec; build and index time, recall@10 against brute force, warm search latency.

use edgeshard_builder::build::{build, BuildOptions, VectorBackendKind};
use edgeshard_builder::input::{FieldMapping, InputFormat};
use edgeshard_builder::vector_index::IndexKind;
use edgeshard_native::{AccessMode, OpenOptions, SearchOptions, Snapshot, VectorId};
use edgeshard_shared::vector::AnnParams;
use edgeshard_shared::{Key, KeyEncoding, Metric};
use edgeshard_tests::build_options;
use edgeshard_tests::debian::{brute_force_dot, percentiles, read_queries, BoxResult, Query};
use edgeshard_tests::proxy::DelayProxy;
use edgeshard_tests::s3_server::S3Server;
use edgeshard_tests::synthetic::{prepare, recall_hits, SyntheticSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match arg(0) {
        Some("debian") => {
            let dir = PathBuf::from(arg(1).ok_or("debian needs the data set folder")?);
            let shards = arg(2).map(str::parse).transpose()?.unwrap_or(2);
            bench_debian(&dir, shards)
        }
        Some("s3") => {
            let dir = PathBuf::from(arg(1).ok_or("s3 needs the data set folder")?);
            let delays: Vec<u64> = match arg(2) {
                Some(d) => vec![d.parse()?],
                None => vec![0, 20],
            };
            bench_s3(&dir, &delays)
        }
        Some("synthetic") => {
            let rows = arg(1).map(str::parse).transpose()?.unwrap_or(1_000_000);
            let shards = arg(2).map(str::parse).transpose()?.unwrap_or(8);
            bench_synthetic(rows, shards)
        }
        _ => Err("usage: lance_bench debian DIR [SHARDS] | s3 DIR [DELAY_MS] | synthetic [ROWS] [SHARDS]".into()),
    }
}

fn debian_options(dir: &Path, out: &str, shards: u32, metric: Metric) -> BuildOptions {
    let mut opts = build_options(&dir.join("packages.parquet"), Path::new(out));
    opts.input_format = Some(InputFormat::Parquet);
    opts.fields = FieldMapping {
        key_field: "id".into(),
        value_field: Some("text".into()),
        vector_field: Some("embedding".into()),
        payload_fields: vec!["section".into()],
    };
    opts.shards = shards;
    opts.key_encoding = Some(KeyEncoding::Utf8);
    opts.metric = metric;
    opts.out = out.to_string();
    opts.vector_backend = VectorBackendKind::Lancedb;
    opts
}

fn truth(q: &Query, metric: Metric) -> &[String] {
    match metric {
        Metric::Cosine => &q.gt_cosine[..10],
        Metric::L2 => &q.gt_l2[..10],
        Metric::DotProduct => &q.gt_dot[..10],
    }
}

/// Recall@10 and warm latency (p50, p99 in ms) of `queries` with `ann`.
fn measure(
    snap: &Snapshot,
    queries: &[Query],
    metric: Metric,
    ann: AnnParams,
) -> BoxResult<(f64, f64, f64)> {
    let options = SearchOptions {
        k: 10,
        ann,
        payload_fields: Some(Vec::new()),
        ..SearchOptions::default()
    };
    for q in queries.iter().take(20) {
        snap.search_with(&q.vector, &options)?; // warm-up: opens shards, loads indexes
    }
    let (mut timings, mut hits) = (Vec::with_capacity(queries.len()), 0usize);
    for q in queries {
        let t = Instant::now();
        let response = snap.search_with(&q.vector, &options)?;
        timings.push(t.elapsed().as_secs_f64() * 1e3);
        let ids: Vec<VectorId> = response.results.into_iter().map(|h| h.id).collect();
        hits += recall_hits(&ids, truth(q, metric));
    }
    let (p50, p99, _) = percentiles(&mut timings);
    Ok((hits as f64 / (queries.len() * 10) as f64, p50, p99))
}

/// `custom.vector.index_type` and `index_params` of the snapshot ("exact" for sqlite-vec).
fn index_of(snap: &Snapshot) -> (String, String) {
    let vector = snap.manifest().meta.custom.get("vector");
    let field = |name: &str| vector.and_then(|v| v.get(name));
    (
        field("index_type")
            .and_then(|t| t.as_str())
            .unwrap_or("exact")
            .to_string(),
        field("index_params").map_or(String::new(), |p| p.to_string()),
    )
}

fn ann_label(ann: &AnnParams) -> String {
    let show = |v: Option<usize>| v.map_or("default".to_string(), |v| v.to_string());
    format!(
        "nprobes {}, ef {}, refine {}",
        show(ann.nprobes),
        show(ann.ef),
        show(ann.refine_factor.map(|r| r as usize))
    )
}

fn bench_debian(dir: &Path, shards: u32) -> BoxResult<()> {
    let mut queries = read_queries(&dir.join("queries.parquet"))?;
    let dot_truth = brute_force_dot(&dir.join("packages.parquet"), &queries)?;
    for (q, t) in queries.iter_mut().zip(dot_truth) {
        q.gt_dot = t;
    }
    println!("| metric | shards, index | ANN parameters | recall@10 | p50 | p99 |");
    println!("|---|---|---|---|---|---|");
    for metric in [Metric::Cosine, Metric::L2, Metric::DotProduct] {
        let work = tempfile::tempdir()?;
        let out = work.path().display().to_string();
        let t = Instant::now();
        let summary = build(&debian_options(dir, &out, shards, metric))?;
        let build_s = t.elapsed().as_secs_f64();
        let snap = Snapshot::open(&out)?;
        let (index_type, index_params) = index_of(&snap);
        eprintln!(
            "built {} ({} rows, {shards} shards) in {build_s:.1} s: index {index_type} {index_params}",
            metric.as_str(),
            summary.rows,
        );
        let sweeps = [
            AnnParams::default(),
            AnnParams {
                nprobes: Some(1),
                ef: Some(50),
                refine_factor: None,
                ..AnnParams::default()
            },
            AnnParams {
                nprobes: None,
                ef: Some(50),
                refine_factor: None,
                ..AnnParams::default()
            },
            AnnParams {
                nprobes: None,
                ef: Some(200),
                refine_factor: Some(2),
                ..AnnParams::default()
            },
        ];
        for ann in sweeps {
            let (recall, p50, p99) = measure(&snap, &queries, metric, ann)?;
            println!(
                "| {} | {shards}, {} (build {build_s:.1} s) | {} | {recall:.4} | {p50:.2} ms | {p99:.2} ms |",
                metric.as_str(),
                index_type,
                ann_label(&ann),
            );
        }
    }
    // The flat / indexed crossover: one shard of n rows, searched flat and with IVF_HNSW_SQ.
    println!();
    println!("| rows in the shard | flat p50 | IVF_HNSW_SQ p50 (recall@10) | index build |");
    println!("|---|---|---|---|");
    for rows in [5_000usize, 10_000, 20_000, 40_000, 62_666] {
        let subset = subset_parquet(dir, rows)?;
        let mut line = format!("| {rows} |");
        for kind in [IndexKind::Flat, IndexKind::IvfHnswSq] {
            let work = tempfile::tempdir()?;
            let out = work.path().display().to_string();
            let mut opts = debian_options(dir, &out, 1, Metric::Cosine);
            opts.input = subset.path().to_path_buf();
            opts.vector_index = kind;
            let t = Instant::now();
            build(&opts)?;
            let build_s = t.elapsed().as_secs_f64();
            let snap = Snapshot::open(&out)?;
            let (recall, p50, _) =
                measure(&snap, &queries[..100], Metric::Cosine, AnnParams::default())?;
            // Recall here is against the full set's truth: only the ratio flat/indexed means anything.
            line += &match kind {
                IndexKind::Flat => format!(" {p50:.2} ms (recall {recall:.3}) |"),
                _ => format!(" {p50:.2} ms ({recall:.3}) | {build_s:.1} s |"),
            };
        }
        println!("{line}");
    }
    Ok(())
}

/// The first `rows` packages as a Parquet file of their own.
fn subset_parquet(dir: &Path, rows: usize) -> BoxResult<tempfile::NamedTempFile> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(
        dir.join("packages.parquet"),
    )?)?
    .with_limit(rows)
    .build()?;
    let file = tempfile::Builder::new().suffix(".parquet").tempfile()?;
    let mut writer = None;
    for batch in reader {
        let batch = batch?;
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(ArrowWriter::try_new(file.reopen()?, batch.schema(), None)?),
        };
        w.write(&batch)?;
    }
    writer.ok_or("empty data set")?.close()?;
    Ok(file)
}

/// One reader configuration on S3: open, first (cold) search, warm searches, gets.
fn bench_s3(dir: &Path, delays: &[u64]) -> BoxResult<()> {
    let queries = read_queries(&dir.join("queries.parquet"))?;
    let server = S3Server::start_fast();
    server.create_bucket("bench");
    let work = tempfile::tempdir()?;
    // LanceDB is read in place (range mode for the KV half). A sqlite-vec search scans every
    // vector of a shard, so over S3 it is read in download mode: the cold numbers include
    // fetching the shards whole.
    let backends = [
        (
            "lancedb",
            VectorBackendKind::Lancedb,
            2u32,
            AccessMode::Range,
        ),
        (
            "sqlite-vec",
            VectorBackendKind::SqliteVec,
            2u32,
            AccessMode::Download,
        ),
    ];
    for (name, backend, shards, _) in backends {
        let local = work.path().join(name);
        let mut opts = debian_options(dir, &local.display().to_string(), shards, Metric::Cosine);
        opts.vector_backend = backend;
        build(&opts)?;
        server.upload_dir(&local, "bench", name);
    }
    let keys: Vec<Key> = queries
        .iter()
        .take(50)
        .map(|q| Key::Str(q.gt_cosine[0].clone()))
        .collect();
    println!("| backend | delay | open | cold search (requests, bytes) | warm search p50 / p99 (requests, bytes per query) | cold get | warm get p50 |");
    println!("|---|---|---|---|---|---|---|");
    for delay_ms in delays {
        let proxy = DelayProxy::start(server.port(), Duration::from_millis(*delay_ms));
        for (name, _, _, access) in backends {
            let mut storage = server.storage_options();
            for (k, v) in storage.iter_mut() {
                if k == "aws_endpoint" {
                    *v = proxy.endpoint.clone();
                }
            }
            // A fresh cache folder per reader: every "cold" sample downloads again.
            let caches = tempfile::tempdir()?;
            let mut fresh = 0;
            let mut open_options = || {
                fresh += 1;
                OpenOptions {
                    access,
                    cache_dir: Some(caches.path().join(fresh.to_string())),
                    storage_options: storage.clone(),
                    ..OpenOptions::default()
                }
            };
            let options = SearchOptions {
                k: 10,
                payload_fields: Some(Vec::new()),
                ..SearchOptions::default()
            };
            let root = format!("s3://bench/{name}");
            // Cold: a fresh reader per sample (nothing cached), median of 5.
            let (mut opens, mut colds, mut cold_gets) = (Vec::new(), Vec::new(), Vec::new());
            let mut cold_traffic = Vec::new();
            for q in queries.iter().take(5) {
                let t = Instant::now();
                let snap = Snapshot::open_with(&root, open_options())?;
                opens.push(t.elapsed().as_secs_f64() * 1e3);
                let before = proxy.traffic();
                let t = Instant::now();
                snap.search_with(&q.vector, &options)?;
                colds.push(t.elapsed().as_secs_f64() * 1e3);
                cold_traffic.push(proxy.traffic() - before);
                let t = Instant::now();
                snap.get(&Key::Str(q.gt_cosine[1].clone()))?;
                cold_gets.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let snap = Snapshot::open_with(&root, open_options())?;
            let warm_queries = &queries[..50];
            for q in warm_queries {
                snap.search_with(&q.vector, &options)?;
            }
            let before = proxy.traffic();
            let mut warm = Vec::new();
            for q in warm_queries {
                let t = Instant::now();
                snap.search_with(&q.vector, &options)?;
                warm.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let warm_traffic = proxy.traffic() - before;
            for key in &keys {
                snap.get(key)?;
            }
            let mut gets = Vec::new();
            for key in &keys {
                let t = Instant::now();
                snap.get(key)?.ok_or("a package is missing")?;
                gets.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let median = |v: &mut Vec<f64>| percentiles(v).0;
            let cold = cold_traffic[cold_traffic.len() / 2];
            let (wp50, wp99, _) = percentiles(&mut warm);
            let n = warm_queries.len() as f64;
            println!(
                "| {name} ({access:?}) | {delay_ms} ms | {:.1} ms | {:.1} ms ({}, {:.1} KB) | {wp50:.1} / {wp99:.1} ms ({:.1}, {:.1} KB) | {:.1} ms | {:.2} ms |",
                median(&mut opens),
                median(&mut colds),
                cold.requests,
                cold.bytes_down as f64 / 1e3,
                warm_traffic.requests as f64 / n,
                warm_traffic.bytes_down as f64 / n / 1e3,
                median(&mut cold_gets),
                percentiles(&mut gets).0,
            );
        }
    }
    Ok(())
}

fn bench_synthetic(rows: usize, shards: u32) -> BoxResult<()> {
    let work = tempfile::tempdir()?;
    let SyntheticSet {
        input,
        queries,
        truth,
    } = prepare(work.path(), rows)?;
    println!("| backend | rows, shards | build (index) | size | ANN parameters | recall@10 | warm p50 | p99 |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, backend) in [
        ("lancedb", VectorBackendKind::Lancedb),
        ("sqlite-vec", VectorBackendKind::SqliteVec),
    ] {
        let out = work.path().join(name).display().to_string();
        let mut opts = build_options(&input, Path::new(&out));
        opts.input_format = Some(InputFormat::Parquet);
        opts.fields = FieldMapping {
            key_field: "id".into(),
            value_field: None,
            vector_field: Some("embedding".into()),
            payload_fields: vec![],
        };
        opts.shards = shards;
        opts.metric = Metric::L2;
        opts.vector_backend = backend;
        let t = Instant::now();
        let summary = build(&opts)?;
        let build_s = t.elapsed().as_secs_f64();
        let snap = Snapshot::open(&out)?;
        let (index_type, _) = index_of(&snap);
        let sweeps: &[AnnParams] = match backend {
            VectorBackendKind::Lancedb => &[
                AnnParams::default(),
                AnnParams {
                    nprobes: Some(2),
                    ef: Some(50),
                    refine_factor: None,
                    ..AnnParams::default()
                },
            ],
            _ => &[AnnParams::default()],
        };
        for ann in sweeps {
            let options = SearchOptions {
                k: 10,
                ann: *ann,
                payload_fields: Some(Vec::new()),
                ..SearchOptions::default()
            };
            for q in queries.iter().take(10) {
                snap.search_with(q, &options)?;
            }
            let (mut timings, mut hits) = (Vec::new(), 0usize);
            for (q, t10) in queries.iter().zip(&truth) {
                let t = Instant::now();
                let response = snap.search_with(q, &options)?;
                timings.push(t.elapsed().as_secs_f64() * 1e3);
                let ids: Vec<VectorId> = response.results.into_iter().map(|h| h.id).collect();
                hits += recall_hits(&ids, t10);
            }
            let (p50, p99, _) = percentiles(&mut timings);
            println!(
                "| {name} ({}) | {}, {shards} | {build_s:.0} s | {:.0} MB | {} | {:.4} | {p50:.1} ms | {p99:.1} ms |",
                index_type,
                summary.rows,
                summary.bytes as f64 / 1e6,
                ann_label(ann),
                hits as f64 / (queries.len() * 10) as f64,
            );
        }
    }
    Ok(())
}
