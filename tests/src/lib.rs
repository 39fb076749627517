//! Shared helpers for the workspace integration tests in `tests/tests/*.rs`: temporary roots,
//! seeded data generators, input-file writers (JSONL, CSV, Parquet), brute-force nearest
//! neighbours, the in-process CLI, and snapshot-root state for "publishes nothing" checks.
//!
//! Nothing here calls into the code under test to compute an expected value: expectations come
//! from the generated data, `Metric::score` (exact f64 arithmetic) and the spec's golden values.

pub mod debian;
pub mod fault_server;
pub mod http_server;
pub mod net;
pub mod proxy;
pub mod s3_server;
pub mod synthetic;

use arrow_array::builder::{BinaryBuilder, FixedSizeListBuilder, Float32Builder, StringBuilder};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use clap::Parser;
use edgeshard_builder::build::{BuildOptions, DuplicatePolicy};
use edgeshard_builder::cli::{self, Cli};
use edgeshard_builder::input::FieldMapping;
use edgeshard_native::VectorId;
use edgeshard_shared::Metric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use tempfile::TempDir;

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("edgeshard-test-")
        .tempdir()
        .expect("create temp dir")
}

/// The shardyfusion fixtures (copied from the team folder: files shardyfusion itself wrote).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/shardyfusion")
}

/// A deterministic RNG.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A vector with components uniform in [-1, 1), never all zero.
pub fn random_vector(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    loop {
        let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        if v.iter().any(|x| *x != 0.0) {
            return v;
        }
    }
}

/// Random bytes, length uniform in `min_len..=max_len`.
pub fn random_bytes(rng: &mut StdRng, min_len: usize, max_len: usize) -> Vec<u8> {
    let len = rng.random_range(min_len..=max_len);
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes[..]);
    bytes
}

/// JSON array of a vector's components, written as f64 so that parsing gives back the exact f32.
pub fn vector_json(v: &[f32]) -> Value {
    Value::from(v.iter().map(|x| *x as f64).collect::<Vec<f64>>())
}

/// Writes one JSON object per line.
pub fn write_jsonl(path: &Path, rows: impl IntoIterator<Item = Value>) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create jsonl"));
    for row in rows {
        serde_json::to_writer(&mut out, &row).expect("write jsonl");
        out.write_all(b"\n").expect("write jsonl");
    }
    out.flush().expect("flush jsonl");
}

/// Writes text as is (CSV, hand-made JSONL).
pub fn write_text(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write text file");
}

/// One Parquet row set: `id` Int64, `value` Binary, optional `emb` `FixedSizeList<Float32>[dim]`,
/// optional `tag` Utf8.
pub struct ParquetColumns<'a> {
    pub ids: &'a [i64],
    pub values: &'a [Vec<u8>],
    pub vectors: Option<&'a [Vec<f32>]>,
    pub tags: Option<&'a [String]>,
}

/// Writes a Parquet file (several row groups when large, to exercise the batch reader).
pub fn write_parquet(path: &Path, cols: &ParquetColumns<'_>) {
    let n = cols.ids.len();
    let mut fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new("value", DataType::Binary, false),
    ];
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(cols.ids.to_vec())),
        Arc::new({
            let mut b = BinaryBuilder::new();
            for v in cols.values {
                b.append_value(v);
            }
            b.finish()
        }),
    ];
    if let Some(vectors) = cols.vectors {
        let dim = vectors.first().map_or(1, Vec::len) as i32;
        let mut b = FixedSizeListBuilder::new(Float32Builder::new(), dim);
        for v in vectors {
            assert_eq!(v.len() as i32, dim, "parquet helper needs one dimension");
            b.values().append_slice(v);
            b.append(true);
        }
        let list = b.finish();
        fields.push(Field::new("emb", list.data_type().clone(), false));
        arrays.push(Arc::new(list));
    }
    if let Some(tags) = cols.tags {
        let mut b = StringBuilder::new();
        for t in tags {
            b.append_value(t);
        }
        fields.push(Field::new("tag", DataType::Utf8, false));
        arrays.push(Arc::new(b.finish()));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).expect("record batch");
    assert_eq!(batch.num_rows(), n);
    let file = std::fs::File::create(path).expect("create parquet");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(16_384))
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).expect("parquet writer");
    writer.write(&batch).expect("write parquet");
    writer.close().expect("close parquet");
}

/// Build options with the tests' defaults: fields `id`/`value`, no vector, 8 shards, cosine,
/// 2 threads, no progress output.
pub fn build_options(input: &Path, out: &Path) -> BuildOptions {
    BuildOptions {
        input: input.to_path_buf(),
        input_format: None,
        fields: FieldMapping {
            key_field: "id".into(),
            value_field: Some("value".into()),
            vector_field: None,
            payload_fields: Vec::new(),
        },
        shards: 8,
        key_encoding: None,
        metric: Metric::Cosine,
        page_size: 4096,
        out: out.to_str().expect("utf-8 temp path").to_string(),
        storage_options: Vec::new(),
        on_duplicate: DuplicatePolicy::Error,
        run_id: None,
        threads: Some(2),
        progress: false,
        sidecar: true,
        vector_only: None,
        vector_backend: Default::default(),
        vector_index: Default::default(),
        quantization: Default::default(),
    }
}

/// Brute-force k nearest neighbours with exact f64 scores (lower is better), ties by input order.
pub fn brute_force_knn(
    metric: Metric,
    query: &[f32],
    items: &[(VectorId, Vec<f32>)],
    k: usize,
) -> Vec<(VectorId, f64)> {
    let mut scored: Vec<(usize, f64)> = items
        .iter()
        .enumerate()
        .map(|(i, (_, v))| (i, metric.score(query, v)))
        .collect();
    scored.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    scored
        .into_iter()
        .take(k)
        .map(|(i, s)| (items[i].0.clone(), s))
        .collect()
}

/// How close search results must be to brute force (see [`assert_matches_brute_force`]).
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Exact scores closer than this may come in either order.
    pub tie_eps: f64,
    /// Reported scores may differ from exact ones by this much.
    pub score_tol: f64,
}

/// Checks a search result against brute force over `items`:
/// - as many hits as brute force returns, no id twice;
/// - at rank `i` the same id as brute force, except that ids may trade places where their exact
///   scores differ by less than `tie_eps` (relative to the score when it exceeds 1);
/// - each reported score within `score_tol` (relative when the score exceeds 1) of the exact score
///   of the id reported.
pub fn assert_matches_brute_force(
    context: &str,
    metric: Metric,
    query: &[f32],
    items: &[(VectorId, Vec<f32>)],
    got: &[(VectorId, f64)],
    k: usize,
    tol: Tolerance,
) {
    let Tolerance { tie_eps, score_tol } = tol;
    let want = brute_force_knn(metric, query, items, k);
    let exact: HashMap<&VectorId, f64> = items
        .iter()
        .map(|(id, v)| (id, metric.score(query, v)))
        .collect();
    assert_eq!(
        got.len(),
        want.len(),
        "{context}: {} hits, brute force has {}",
        got.len(),
        want.len()
    );
    let distinct: BTreeSet<String> = got.iter().map(|(id, _)| format!("{id:?}")).collect();
    assert_eq!(distinct.len(), got.len(), "{context}: an id appears twice");
    for (rank, ((got_id, got_score), (want_id, want_score))) in got.iter().zip(&want).enumerate() {
        let exact_got = *exact
            .get(got_id)
            .unwrap_or_else(|| panic!("{context}: rank {rank}: id {got_id:?} is not in the data"));
        if got_id != want_id {
            let eps = tie_eps * want_score.abs().max(1.0);
            assert!(
                (exact_got - want_score).abs() < eps,
                "{context}: rank {rank}: got {got_id:?} (exact score {exact_got}), brute force \
                 has {want_id:?} (score {want_score}); not a tie"
            );
        }
        let tol = score_tol * exact_got.abs().max(1.0);
        assert!(
            (got_score - exact_got).abs() <= tol,
            "{context}: rank {rank}: id {got_id:?} reported score {got_score}, exact {exact_got}"
        );
    }
}

/// Opens the snapshot at `url` with `access`, downloads cached under `cache` and the given S3
/// settings (`S3Server::storage_options`, or none).
pub fn open_snapshot(
    url: &str,
    access: edgeshard_native::AccessMode,
    cache: &Path,
    storage_options: Vec<(String, String)>,
) -> edgeshard_native::Result<edgeshard_native::Snapshot> {
    edgeshard_native::Snapshot::open_with(
        url,
        edgeshard_native::OpenOptions {
            access,
            cache_dir: Some(cache.to_path_buf()),
            cache_pages: 1024,
            storage_options,
        },
    )
}

/// [`open_snapshot`] that must succeed (the panic names the URL and the mode).
pub fn open_snapshot_ok(
    url: &str,
    access: edgeshard_native::AccessMode,
    cache: &Path,
    storage_options: Vec<(String, String)>,
) -> edgeshard_native::Snapshot {
    open_snapshot(url, access, cache, storage_options)
        .unwrap_or_else(|e| panic!("open {url} ({access:?}): {e}"))
}

/// Runs the CLI in-process (`edgeshard <args>`), feeding `stdin`; returns stdout or the error text
/// (parse errors included).
pub fn run_cli_with_stdin(args: &[&str], stdin: &[u8]) -> Result<String, String> {
    let argv = std::iter::once("edgeshard").chain(args.iter().copied());
    let parsed = Cli::try_parse_from(argv).map_err(|e| format!("usage: {e}"))?;
    let mut out: Vec<u8> = Vec::new();
    let mut input = std::io::Cursor::new(stdin.to_vec());
    cli::run(parsed, &mut out, &mut input).map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| format!("stdout is not UTF-8: {e}"))
}

/// [`run_cli_with_stdin`] with empty stdin.
pub fn run_cli(args: &[&str]) -> Result<String, String> {
    run_cli_with_stdin(args, b"")
}

/// Parses JSON-lines output.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

/// Everything under a snapshot root that a build may create, to prove a failed build published
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootState {
    pub current: Option<Vec<u8>>,
    pub manifests: BTreeSet<String>,
    pub shard_runs: BTreeSet<String>,
    /// Files and folders under `.edgeshard-staging` (relative paths).
    pub staging: BTreeSet<String>,
}

impl RootState {
    pub fn capture(root: &Path) -> Self {
        let list = |dir: PathBuf| -> BTreeSet<String> {
            std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into())
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            current: std::fs::read(root.join("_CURRENT")).ok(),
            manifests: list(root.join("manifests")),
            shard_runs: list(root.join("shards")),
            staging: walk(&root.join(".edgeshard-staging")),
        }
    }
}

/// Binds the sidecars of the local snapshot `root` to the ETags `host` (serving it) reports, as
/// a deployment does (`edgeshard sidecar-bind`); returns the CLI's output.
pub fn sidecar_bind(root: &Path, host: &str) -> String {
    run_cli(&[
        "sidecar-bind",
        "--root",
        root.to_str().expect("utf-8 root"),
        "--host",
        host,
    ])
    .expect("sidecar-bind")
}

/// Relative paths of every file and folder below `dir` (empty when it does not exist).
pub fn walk(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            out.insert(
                path.strip_prefix(dir)
                    .expect("under dir")
                    .to_string_lossy()
                    .into_owned(),
            );
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

/// Reads a `vec_id_map.original_id` text (`{"v": 7, "t": "int"}`) independently of the reader.
pub fn parse_original_id(text: &str) -> VectorId {
    let v: Value = serde_json::from_str(text).expect("original_id JSON");
    match v["t"].as_str() {
        Some("int") => VectorId::Int(v["v"].as_i64().expect("int id")),
        Some("str") => VectorId::Str(v["v"].as_str().expect("str id").to_string()),
        other => panic!("unknown id type {other:?} in {text}"),
    }
}

/// Decodes little-endian f32 bytes (sqlite-vec's storage form).
pub fn f32_from_le(bytes: &[u8]) -> Vec<f32> {
    assert_eq!(bytes.len() % 4, 0, "not a whole number of f32");
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Groups items by a key function (a `BTreeMap` so iteration is ordered).
pub fn group_by<T, K: Ord>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> BTreeMap<K, Vec<T>> {
    let mut map: BTreeMap<K, Vec<T>> = BTreeMap::new();
    for item in items {
        map.entry(key(&item)).or_default().push(item);
    }
    map
}

/// The manifest file `_CURRENT` points at, in a local snapshot root.
pub fn current_manifest_file(root: &Path) -> PathBuf {
    let current: Value =
        serde_json::from_slice(&std::fs::read(root.join("_CURRENT")).expect("read _CURRENT"))
            .expect("_CURRENT is JSON");
    let manifest_ref = current["manifest_ref"].as_str().expect("manifest_ref");
    let start = manifest_ref
        .find("manifests/")
        .expect("manifest_ref names manifests/");
    root.join(&manifest_ref[start..])
}

/// Rewrites the current manifest's `custom` JSON in place (to make snapshots that look like
/// another writer's, e.g. shardyfusion's, which names no vector backend).
pub fn edit_manifest_custom(root: &Path, edit: impl FnOnce(&mut Value)) {
    let conn = rusqlite::Connection::open(current_manifest_file(root)).expect("open manifest");
    let text: String = conn
        .query_row("SELECT custom FROM build_meta", [], |r| r.get(0))
        .expect("read custom");
    let mut custom: Value = serde_json::from_str(&text).expect("custom is JSON");
    edit(&mut custom);
    conn.execute("UPDATE build_meta SET custom = ?1", [custom.to_string()])
        .expect("rewrite custom");
}
