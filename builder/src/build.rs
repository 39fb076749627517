//! `edgeshard build`: records in, a published snapshot out.
//!
//! 1. read and validate every record, then route each to its shard: by key hash (KV and unified
//!    snapshots) or, for vector-only snapshots, by vector (cluster: k-means centroids trained on
//!    a seeded sample; lsh: seeded random hyperplanes; explicit: a field names the shard).
//!    Nothing is written yet, so bad input publishes nothing;
//! 2. per shard, in parallel: sort by stored key and resolve duplicates;
//! 3. per shard, in parallel: write the SQLite file into staging, then its page-cache sidecar;
//! 4. publish shards, then the routing artifact (`vector_meta/run_id=<RUN>/centroids.npy` or
//!    `hyperplanes.npy`), then the manifest, then `_CURRENT`: on a local root by atomic renames
//!    ([`LocalPublisher`]); on `s3://` by uploads and a conditional `_CURRENT` PUT
//!    ([`RemotePublisher`]).

use crate::error::{Error, Result};
use crate::input::{read_records, FieldMapping, FieldValue, InputFormat, RawRecord, Record};
use crate::publish::LocalPublisher;
use crate::remote_publish::{RemotePublisher, UPLOAD_CONCURRENCY};
use crate::shard_writer::{write_shard, CodesStats, IvfStats, ShardStats, VectorLayout};
use crate::sidecar_writer::{write_local_sidecar, SidecarStats};
use crate::vector_index::{IndexKind, IndexPlan};
use edgeshard_native::remote::RemoteRoot;
use edgeshard_native::Root;
use edgeshard_shared::current::CurrentPointer;
use edgeshard_shared::manifest::{
    BuildMeta, Manifest, ShardEntry, Sharding, VectorBackend, VectorRouting, VectorSpec,
    FORMAT_VERSION, KEY_COL_KV, KEY_COL_VECTOR, SHARD_TOTALS_KEY,
};
use edgeshard_shared::npy::{self, Matrix};
use edgeshard_shared::vector::DotReduction;
use edgeshard_shared::vector_routing::{self as vrouting, VectorStrategy};
use edgeshard_shared::{codes, integrity, ivf, layout, routing, vector, KeyEncoding, Metric};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub const MAX_SHARDS: u32 = 65_536;
/// Vectors k-means trains the cluster centroids on (a seeded sample when there are more).
pub const KMEANS_SAMPLE: usize = 20_000;
/// Lloyd iterations of k-means at most (it stops earlier when no assignment changes).
pub const KMEANS_ITERATIONS: usize = 50;

/// How a vector-only snapshot routes vectors to shards (format spec section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VectorRoutingKind {
    /// Nearest k-means centroid (centroids.npy).
    Cluster,
    /// Random-hyperplane hash, code % shards (hyperplanes.npy).
    Lsh,
    /// Each record names its shard (--shard-field); readers must be given shard ids.
    Explicit,
}

impl VectorRoutingKind {
    pub fn strategy(self) -> VectorStrategy {
        match self {
            Self::Cluster => VectorStrategy::Cluster,
            Self::Lsh => VectorStrategy::Lsh,
            Self::Explicit => VectorStrategy::Explicit,
        }
    }
}

/// A vector-only snapshot: no KV rows (`key_col` `_vector_id`, the key being the vector id),
/// vectors routed by [`VectorRoutingKind`].
#[derive(Debug, Clone)]
pub struct VectorOnlyOptions {
    pub routing: VectorRoutingKind,
    /// `num_probes` recorded in the manifest: the shards a query probes by default (1 for
    /// explicit routing).
    pub num_probes: u32,
    /// Explicit routing: the field holding each record's shard id (an integer below the shard
    /// count).
    pub shard_field: Option<String>,
    /// LSH: hyperplanes (code bits); default `ceil(log2(shards))`.
    pub hash_bits: Option<u32>,
    /// Cluster routing: the fraction (0..=1) of vectors, those nearest a cell boundary, also
    /// stored in their second-nearest shard ([`vrouting::cluster_assign_with_spill`]). 0: none.
    pub spill: f64,
}

/// Where a snapshot's vectors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum VectorBackendKind {
    /// sqlite-vec `vec0` tables inside each shard's SQLite file (exact search).
    #[default]
    SqliteVec,
    /// A LanceDB table per shard (`vector_index.lance`; composite with SQLite KV in unified
    /// snapshots), with an ANN index on large shards. Needs a build with `--features lancedb`.
    Lancedb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DuplicatePolicy {
    /// Refuse the input, naming both records.
    Error,
    /// Keep the record that comes later in the input.
    LastWins,
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub input: PathBuf,
    pub input_format: Option<InputFormat>,
    pub fields: FieldMapping,
    pub shards: u32,
    /// `None`: inferred from the first record.
    pub key_encoding: Option<KeyEncoding>,
    pub metric: Metric,
    pub page_size: u32,
    /// Snapshot root: a directory, `file://` URL or `s3://bucket/prefix`.
    pub out: String,
    /// S3 settings for an `s3://` out (object_store keys: `aws_endpoint`, `aws_region`, ...;
    /// credentials otherwise come from the usual AWS_* environment variables).
    pub storage_options: Vec<(String, String)>,
    pub on_duplicate: DuplicatePolicy,
    pub run_id: Option<String>,
    /// Worker threads for sorting and writing shards (default: all cores).
    pub threads: Option<usize>,
    /// Progress bars and phase lines on stderr.
    pub progress: bool,
    /// Write `shard.sidecar` beside each shard (format spec section 8).
    pub sidecar: bool,
    /// `Some`: a vector-only snapshot with vector routing instead of a KV / unified one.
    pub vector_only: Option<VectorOnlyOptions>,
    pub vector_backend: VectorBackendKind,
    /// LanceDB shards: which index (auto: flat below a size, IVF_HNSW_SQ above).
    pub vector_index: IndexKind,
    /// sqlite-vec shards: compact codes beside each shard for a first search pass.
    pub quantization: Quantization,
}

/// `--quantization`: codes of the vectors written beside each sqlite-vec shard, scanned first by
/// a search, whose candidates are then re-ranked exactly ([`edgeshard_shared::codes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Quantization {
    /// No codes: every search scans the full-precision vectors.
    #[default]
    None,
    /// One bit per dimension and a scale per vector (`shard.codes`, ~1/30 of the vectors).
    Binary,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildSummary {
    pub run_id: String,
    pub root: String,
    pub manifest: String,
    pub rows: u64,
    pub duplicates_dropped: u64,
    pub shards: u32,
    pub non_empty_shards: usize,
    pub bytes: u64,
    pub key_encoding: &'static str,
    pub vector_dim: Option<usize>,
    pub metric: Option<&'static str>,
    /// cluster, lsh or explicit for vector-only snapshots; `null` (key hash) otherwise.
    pub vector_routing: Option<&'static str>,
    pub seconds: f64,
    pub rows_per_s: f64,
}

pub fn build(opts: &BuildOptions) -> Result<BuildSummary> {
    let started = Instant::now();
    check_options(opts)?;
    let root = publish_root(opts)?;
    let run_id = run_id_for(opts)?;
    let log = |msg: String| {
        if opts.progress {
            crate::error::warn(&msg);
        }
    };
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);

    // 1. Read, validate, route.
    let Routed {
        buckets,
        encoding,
        dim,
        count: read_count,
        dot,
        artifact,
        spilled,
    } = read_and_route(opts)?;
    log(format!(
        "read {read_count} records in {:.1}s (key encoding {}{})",
        started.elapsed().as_secs_f64(),
        encoding.as_str(),
        dim.map(|d| format!(", {d}-d vectors, {}", opts.metric.as_str()))
            .unwrap_or_default()
    ));

    // 2. Sort and resolve duplicates per shard.
    let (shards, duplicates_dropped) = sort_shards(opts, buckets, threads)?;
    // Rows written (a spilled vector twice) and distinct rows (what the snapshot holds).
    let stored_rows: u64 = shards.iter().map(|s| s.len() as u64).sum();
    let rows = stored_rows - spilled;
    if spilled > 0 {
        log(format!(
            "spill: {spilled} boundary vectors also stored in their second-nearest shard"
        ));
    }

    // 3. Write shards into staging.
    let publisher = match &root {
        Root::Local(root_dir) => {
            std::fs::create_dir_all(root_dir).map_err(Error::io(root_dir.display()))?;
            Publisher::Local(LocalPublisher::new(root_dir, &run_id)?)
        }
        Root::Remote(remote) => Publisher::Remote(RemotePublisher::new(remote.clone(), &run_id)?),
    };
    // Record (and publish under) the canonical directory, not the spelling given.
    let root = match &publisher {
        Publisher::Local(local) => Root::Local(local.root().to_path_buf()),
        Publisher::Remote(_) => root,
    };
    let lance = opts.vector_backend == VectorBackendKind::Lancedb;
    let mut stats = write_shards(
        opts,
        &publisher,
        &shards,
        ShardVectors { dim, dot, lance },
        &run_id,
        threads,
        stored_rows,
    )?;
    drop(shards);
    log(format!(
        "wrote {} shards in {:.1}s",
        stats.iter().flatten().count(),
        started.elapsed().as_secs_f64()
    ));
    let root_url = root.url();
    // What a failure from here on (before `_CURRENT`) leaves behind.
    let remote_target = matches!(publisher, Publisher::Remote(_));
    let before_current =
        |e: Error| match remote_target {
            false => e,
            true => Error::Publish {
                context: format!(
                "publishing to {root_url} failed before _CURRENT was updated, so readers still \
                 see the previous snapshot; objects already uploaded under {} are unreferenced \
                 and a later cleanup removes them",
                layout::join(&root_url, &format!("{}/run_id={run_id}/", layout::SHARDS_DIR))
            ),
                source: Box::new(e),
            },
        };

    // 3b. Remote: upload every shard (bounded parallelism), each then its sidecar bound to the
    // ETag the upload returned.
    if let Publisher::Remote(remote) = &publisher {
        upload_shards(opts, remote, &mut stats, lance).map_err(before_current)?;
        log(format!(
            "uploaded {} shards in {:.1}s",
            stats.iter().flatten().count(),
            started.elapsed().as_secs_f64()
        ));
    }

    // 4. Publish: shards, routing artifact, manifest, _CURRENT.
    let artifact_ref = artifact
        .as_ref()
        .map(|(file, _)| layout::join(&root_url, &layout::vector_meta_path(&run_id, file)));
    let custom = snapshot_custom(
        opts,
        custom_json(
            dim,
            opts.metric,
            dot,
            opts.vector_only.as_ref(),
            artifact.as_ref().map(|(_, m)| m),
            artifact_ref.as_deref(),
            rows,
        ),
        &stats,
        lance,
    );
    let now = layout::format_timestamp(unix_micros());
    let manifest = manifest_for(opts, &run_id, &now, &root_url, encoding, custom, &stats);
    let manifest_bytes = manifest.to_sqlite_bytes()?;
    let artifact_bytes = artifact.as_ref().map(|(file, m)| (*file, npy::write(m)));
    let manifest_path = publish(
        publisher,
        &PublishParts {
            manifest: &manifest_bytes,
            artifact: artifact_bytes.as_ref().map(|(f, b)| (*f, b.as_slice())),
            now: &now,
            root_url: &root_url,
            run_id: &run_id,
        },
        &before_current,
    )?;

    let seconds = started.elapsed().as_secs_f64();
    Ok(BuildSummary {
        run_id,
        root: root_url,
        manifest: manifest_path,
        rows,
        duplicates_dropped,
        shards: opts.shards,
        non_empty_shards: manifest.shards.len(),
        bytes: manifest.shards.iter().map(|s| s.db_bytes).sum(),
        key_encoding: encoding.as_str(),
        vector_dim: dim,
        metric: dim.map(|_| opts.metric.as_str()),
        vector_routing: opts
            .vector_only
            .as_ref()
            .map(|v| v.routing.strategy().as_str()),
        seconds,
        rows_per_s: rows as f64 / seconds.max(1e-9),
    })
}

/// Where a build publishes, parsed from `--out` (a local directory, `file://` URL or
/// `s3://bucket/prefix`).
fn publish_root(opts: &BuildOptions) -> Result<Root> {
    if opts.out.trim().is_empty() {
        return Err(Error::Usage(
            "--out is empty: give the snapshot root (a directory, file:// URL or \
             s3://bucket/prefix)"
                .into(),
        ));
    }
    let root = match opts.out.starts_with("s3://") {
        true => Root::Remote(RemoteRoot::parse_for_publish(
            &opts.out,
            &opts.storage_options,
        )?),
        false => Root::parse(&opts.out)?,
    };
    if let Root::Remote(remote) = &root {
        if !remote.url().starts_with("s3://") {
            return Err(Error::Usage(format!(
                "cannot publish to {}: give a local directory, file:// URL or s3://bucket/prefix",
                remote.url()
            )));
        }
    }
    Ok(root)
}

/// The run id: `--run-id` checked against the format, or a fresh time-ordered one.
fn run_id_for(opts: &BuildOptions) -> Result<String> {
    Ok(match &opts.run_id {
        Some(id) => {
            layout::validate_run_id(id)?;
            id.clone()
        }
        None => new_run_id(),
    })
}

/// Every shard's records sorted by key, duplicates resolved per `--on-duplicate`; and how many
/// were dropped.
fn sort_shards(
    opts: &BuildOptions,
    buckets: Vec<Vec<Record>>,
    threads: usize,
) -> Result<(Vec<Vec<Record>>, u64)> {
    let buckets = Mutex::new(buckets.into_iter().map(Some).collect::<Vec<_>>());
    let sorted = parallel_map(opts.shards as usize, threads, |db_id| {
        let bucket = take(&buckets, db_id)?;
        sort_and_dedup(bucket, opts.on_duplicate)
    })?;
    let duplicates_dropped: u64 = sorted.iter().map(|(_, dropped)| *dropped).sum();
    Ok((
        sorted.into_iter().map(|(records, _)| records).collect(),
        duplicates_dropped,
    ))
}

/// Whether sqlite-vec shards get the IVF index: `--vector-index ivf`, or `auto` when the largest
/// shard holds at least [`ivf::AUTO_MIN_ROWS`] vectors and no binary codes were asked for (they
/// work on the flat index, and replace IVF's first pass).
fn ivf_for(opts: &BuildOptions, shards: &[Vec<Record>]) -> bool {
    match opts.vector_index {
        IndexKind::Ivf => true,
        IndexKind::Auto if opts.quantization == Quantization::None => {
            let largest = shards
                .iter()
                .map(|records| records.iter().filter(|r| r.vector.is_some()).count())
                .max()
                .unwrap_or(0);
            largest >= ivf::AUTO_MIN_ROWS
        }
        _ => false,
    }
}

/// What the records' vectors are, for writing shards.
#[derive(Clone, Copy)]
struct ShardVectors {
    dim: Option<usize>,
    dot: Option<DotReduction>,
    /// The LanceDB backend holds the vectors (SQLite then holds KV only, or nothing).
    lance: bool,
}

/// One written shard: its file's figures, its sidecar's, and (LanceDB) the index it got.
type Written = (ShardStats, Option<SidecarStats>, Option<IndexPlan>);

/// Writes every non-empty shard into staging (in parallel), each with its local sidecar.
fn write_shards(
    opts: &BuildOptions,
    publisher: &Publisher,
    shards: &[Vec<Record>],
    vectors_in: ShardVectors,
    run_id: &str,
    threads: usize,
    stored_rows: u64,
) -> Result<Vec<Option<Written>>> {
    let ShardVectors { dim, dot, lance } = vectors_in;
    let bar = progress_bar(opts.progress, stored_rows, "writing shards");
    // On LanceDB the SQLite file holds KV only (composite shards) or is not written at all
    // (vector-only shards).
    let vectors = dim.filter(|_| !lance).map(|dim| VectorLayout {
        dim,
        metric: opts.metric,
        dot,
        kv: opts.vector_only.is_none(),
        ivf: ivf_for(opts, shards),
        binary_codes: opts.quantization == Quantization::Binary,
    });
    let lance_layout = lance_layout(opts, dim, shards)?;
    let stats = parallel_map(opts.shards as usize, threads, |db_id| {
        let records = &shards[db_id];
        if records.is_empty() {
            return Ok(None);
        }
        let path = publisher.staged_shard_path(db_id as u32)?;
        let (shard, plan) = match &lance_layout {
            None => (
                write_shard(
                    &path,
                    records,
                    vectors.as_ref(),
                    opts.page_size,
                    (integrity::page_seed(run_id, db_id as u32), db_id as u32),
                    &|n| bar.inc(n),
                )?,
                None,
            ),
            Some(layout) => write_lance(
                &path,
                records,
                layout,
                opts.vector_only.is_none(),
                opts.page_size,
                (integrity::page_seed(run_id, db_id as u32), db_id as u32),
                &|n| bar.inc(n),
            )?,
        };
        if opts.vector_only.is_some() && lance {
            // Vector-only LanceDB shards have no SQLite file, so no sidecar either.
            return Ok(Some((shard, None, plan)));
        }
        // The file is closed; bind the sidecar to the ETag a single-part upload of it gets.
        // (A remote publisher binds it to the ETag its upload returns, after uploading.)
        let sidecar = match (opts.sidecar, &publisher) {
            (true, Publisher::Local(_)) => write_local_sidecar(&path)?,
            _ => None,
        };
        Ok(Some((shard, sidecar, plan)))
    })?;
    bar.finish_and_clear();
    Ok(stats)
}

/// Uploads every written shard (bounded parallelism); each sidecar is then bound to the ETag its
/// shard's upload returned.
fn upload_shards(
    opts: &BuildOptions,
    remote: &RemotePublisher,
    stats: &mut [Option<Written>],
    lance: bool,
) -> Result<()> {
    let uploaded = parallel_map(
        opts.shards as usize,
        UPLOAD_CONCURRENCY,
        |db_id| match &stats[db_id] {
            Some(_) => {
                if lance {
                    let vector_only = opts.vector_only.is_some();
                    remote.upload_lance(db_id as u32, vector_only)?;
                    if vector_only {
                        return Ok(None);
                    }
                }
                remote.upload_shard(db_id as u32, opts.sidecar)
            }
            None => Ok(None),
        },
    )?;
    for (slot, sidecar) in stats.iter_mut().zip(uploaded) {
        if let Some((_, s, _)) = slot {
            *s = sidecar;
        }
    }
    Ok(())
}

/// `custom`, completed with what the written shards decided: the LanceDB index of the largest
/// shard, and the sidecar settings when any shard has one.
fn snapshot_custom(
    opts: &BuildOptions,
    mut custom: Map<String, Value>,
    stats: &[Option<Written>],
    lance: bool,
) -> Map<String, Value> {
    if lance {
        // The snapshot-level index is that of the largest shard (the one queries wait on);
        // each shard's own choice is in its writer_info.
        let largest = stats
            .iter()
            .flatten()
            .max_by_key(|(s, _, _)| s.rows)
            .and_then(|(_, _, plan)| *plan)
            .unwrap_or(IndexPlan::Flat);
        if let Some(Value::Object(vector)) = custom.get_mut("vector") {
            vector.insert("backend".into(), "lancedb".into());
            if opts.vector_only.is_none() {
                vector.insert("kv_backend".into(), "sqlite".into());
            }
            vector.insert("index_type".into(), largest.index_type().into());
            vector.insert("quantization".into(), largest.quantization().into());
            vector.insert("index_params".into(), largest.params());
        }
    }
    // sqlite-vec IVF: the default nprobes is that of the largest shard's cell count (the
    // shard queries wait on); each shard's cells are in its writer_info.
    let largest_ivf = stats
        .iter()
        .flatten()
        .filter_map(|(s, _, _)| s.ivf)
        .max_by_key(|ivf| ivf.cells);
    if let (Some(largest), Some(Value::Object(vector))) = (largest_ivf, custom.get_mut("vector")) {
        vector.insert("index_type".into(), ivf::INDEX_TYPE.into());
        vector.insert(
            "index_params".into(),
            json!({
                "nprobes": ivf::default_nprobes(largest.cells),
                "max_cells": largest.cells,
                "cells": "sqrt(rows) per shard",
            }),
        );
    }
    // Binary codes: an extension of ours in index_params (the format's `quantization` stays
    // null: the shard keeps its full-precision vectors, which other readers search exactly).
    let with_codes = stats.iter().flatten().any(|(s, _, _)| s.codes.is_some());
    if let (true, Some(Value::Object(vector))) = (with_codes, custom.get_mut("vector")) {
        vector.insert(
            "index_params".into(),
            json!({
                "codes": codes::KIND_BINARY,
                "refine_factor": codes::DEFAULT_REFINE_FACTOR,
            }),
        );
    }
    if stats
        .iter()
        .flatten()
        .any(|(_, sidecar, _)| sidecar.is_some())
    {
        custom.insert(
            "sqlite_sidecar".into(),
            json!({
                "codec": "zstd",
                "filename": layout::SIDECAR_FILE,
                "format_version": edgeshard_shared::sidecar::VERSION,
                "page_size": opts.page_size,
            }),
        );
    }
    if stats.iter().flatten().any(|(_, sidecar, _)| {
        sidecar
            .as_ref()
            .is_some_and(|s| s.key_index_bytes.is_some())
    }) {
        // edgeshard's extension: readers that know it read a cold lookup's page through
        // `shard.keyindex` instead of pinning the sidecar; others ignore this key.
        custom.insert(
            layout::KEY_INDEX_CUSTOM_KEY.into(),
            json!({
                "filename": layout::KEY_INDEX_FILE,
                "format_version": edgeshard_shared::key_index::VERSION,
            }),
        );
    }
    custom
}

/// The manifest of this run.
fn manifest_for(
    opts: &BuildOptions,
    run_id: &str,
    now: &str,
    root_url: &str,
    encoding: KeyEncoding,
    custom: Map<String, Value>,
    stats: &[Option<Written>],
) -> Manifest {
    let mut manifest = Manifest {
        meta: BuildMeta {
            run_id: run_id.to_string(),
            created_at: now.to_string(),
            num_dbs: opts.shards,
            s3_prefix: root_url.to_string(),
            key_col: match opts.vector_only {
                Some(_) => KEY_COL_VECTOR.into(),
                None => KEY_COL_KV.into(),
            },
            // Vector-only snapshots record their vector routing in custom.vector; `sharding`
            // stays the hash spec, as shardyfusion writes it.
            sharding: Sharding::hash(),
            db_path_template: layout::DB_PATH_TEMPLATE.into(),
            shard_prefix: layout::SHARDS_DIR.into(),
            format_version: FORMAT_VERSION,
            // Vector-only shards hold no KV rows; shardyfusion records "raw" for them.
            key_encoding: match opts.vector_only {
                Some(_) => KeyEncoding::Raw,
                None => encoding,
            },
            custom,
        },
        shards: stats
            .iter()
            .enumerate()
            .filter_map(|(db_id, s)| s.as_ref().map(|(s, sc, plan)| (db_id as u32, s, sc, plan)))
            .map(|(db_id, s, sidecar, plan)| ShardEntry {
                db_id,
                db_url: Some(layout::join(root_url, &layout::shard_dir(run_id, db_id, 0))),
                attempt: 0,
                row_count: s.rows,
                db_bytes: s.bytes,
                min_key: s.min_key.as_ref().and_then(|k| k.to_json()),
                max_key: s.max_key.as_ref().and_then(|k| k.to_json()),
                checkpoint_id: Some(s.checkpoint_id.clone()),
                // A SQLite shard's checkpoint_id is the xxh3-128 of its file; recorded again
                // under its own key, which readers verify (LanceDB shards hash a folder).
                writer_info: writer_info(
                    s.duration_ms,
                    sidecar.as_ref(),
                    *plan,
                    plan.is_none().then_some(s.checkpoint_id.as_str()),
                    s.page_seed,
                    s.ivf,
                    s.codes.as_ref(),
                ),
            })
            .collect::<Vec<_>>(),
    };
    let rows: u64 = manifest.shards.iter().map(|s| s.row_count).sum();
    manifest.meta.custom.insert(
        SHARD_TOTALS_KEY.into(),
        json!({"shard_rows": manifest.shards.len(), "rows": rows}),
    );
    manifest
}

/// What [`publish`] puts in place after the shards.
struct PublishParts<'a> {
    manifest: &'a [u8],
    /// The vector routing artifact (file name, NPY bytes), when the routing has one.
    artifact: Option<(&'static str, &'a [u8])>,
    now: &'a str,
    root_url: &'a str,
    run_id: &'a str,
}

/// Publishes in order: shards (local), routing artifact, manifest, then `_CURRENT`; returns the
/// manifest's path. Until `_CURRENT` is replaced, readers see the previous snapshot.
fn publish(
    mut publisher: Publisher,
    parts: &PublishParts<'_>,
    before_current: &dyn Fn(Error) -> Error,
) -> Result<String> {
    let PublishParts {
        manifest: manifest_bytes,
        artifact: artifact_bytes,
        now,
        root_url,
        run_id,
    } = *parts;
    let manifest_path = match &mut publisher {
        Publisher::Local(local) => {
            local.publish_shards()?;
            if let Some((file, bytes)) = &artifact_bytes {
                local.publish_vector_meta(file, bytes)?;
            }
            local.publish_manifest(now, manifest_bytes)?
        }
        Publisher::Remote(remote) => {
            if let Some((file, bytes)) = &artifact_bytes {
                remote
                    .publish_vector_meta(file, bytes)
                    .map_err(before_current)?;
            }
            remote
                .publish_manifest(now, manifest_bytes)
                .map_err(before_current)?
        }
    };
    let pointer = CurrentPointer {
        manifest_ref: layout::join(root_url, &manifest_path),
        run_id: run_id.to_string(),
        updated_at: now.to_string(),
    };
    match publisher {
        Publisher::Local(mut local) => {
            local.publish_current(&pointer)?;
            local.finish();
        }
        Publisher::Remote(remote) => match remote.publish_current(&pointer) {
            Ok(()) => {}
            Err(e @ Error::Conflict(_)) => return Err(e),
            Err(e) => {
                return Err(Error::Publish {
                    context: format!(
                        "writing {root_url}/_CURRENT failed (shards and manifest {} are \
                         uploaded; if _CURRENT did not change, readers still see the previous \
                         snapshot)",
                        pointer.manifest_ref
                    ),
                    source: Box::new(e),
                })
            }
        },
    }

    Ok(manifest_path)
}

/// Where a build publishes.
enum Publisher {
    Local(LocalPublisher),
    Remote(RemotePublisher),
}

impl Publisher {
    fn staged_shard_path(&self, db_id: u32) -> Result<PathBuf> {
        match self {
            Publisher::Local(p) => p.staged_shard_path(db_id),
            Publisher::Remote(p) => p.staged_shard_path(db_id),
        }
    }
}

fn check_options(opts: &BuildOptions) -> Result<()> {
    if !(1..=MAX_SHARDS).contains(&opts.shards) {
        return Err(Error::Usage(format!(
            "--shards must be between 1 and {MAX_SHARDS}, got {}",
            opts.shards
        )));
    }
    if !(4096..=65536).contains(&opts.page_size) || !opts.page_size.is_power_of_two() {
        return Err(Error::Usage(format!(
            "--page-size must be a power of two from 4096 to 65536, got {}",
            opts.page_size
        )));
    }
    if opts.vector_backend == VectorBackendKind::Lancedb {
        if cfg!(not(feature = "lancedb")) {
            return Err(Error::Usage(
                "--vector-backend lancedb: this edgeshard was built without LanceDB support \
                 (cargo build --features lancedb)"
                    .into(),
            ));
        }
        if opts.fields.vector_field.is_none() {
            return Err(Error::Usage(
                "--vector-backend lancedb needs --vector-field (the vectors to index)".into(),
            ));
        }
    } else if !matches!(
        opts.vector_index,
        IndexKind::Auto | IndexKind::Flat | IndexKind::Ivf
    ) {
        return Err(Error::Usage(
            "--vector-index: sqlite-vec shards are flat (exact) or ivf; ivf-hnsw-sq and ivf-pq \
             are LanceDB's (--vector-backend lancedb)"
                .into(),
        ));
    }
    if opts.quantization != Quantization::None {
        let why = if opts.fields.vector_field.is_none() {
            Some("needs --vector-field (the vectors to encode)")
        } else if opts.vector_backend == VectorBackendKind::Lancedb {
            Some("is for sqlite-vec shards (LanceDB indexes quantize with their own codes)")
        } else if opts.vector_index == IndexKind::Ivf {
            Some("works with the flat sqlite-vec index only, not with --vector-index ivf")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::Usage(format!("--quantization binary {why}")));
        }
    }
    if opts.vector_index == IndexKind::Ivf && opts.fields.vector_field.is_none() {
        return Err(Error::Usage(
            "--vector-index ivf needs --vector-field (the vectors to index)".into(),
        ));
    }
    if opts.vector_index == IndexKind::Ivf && opts.vector_backend == VectorBackendKind::Lancedb {
        return Err(Error::Usage(
            "--vector-index ivf is the sqlite-vec backend's index; LanceDB shards take auto, \
             flat, ivf-hnsw-sq or ivf-pq"
                .into(),
        ));
    }
    if let Some(v) = &opts.vector_only {
        if opts.fields.vector_field.is_none() {
            return Err(Error::Usage(
                "--vector-only needs --vector-field (the vectors to index)".into(),
            ));
        }
        if v.num_probes == 0 || v.num_probes > opts.shards {
            return Err(Error::Usage(format!(
                "--probes must be between 1 and --shards ({}), got {}",
                opts.shards, v.num_probes
            )));
        }
        match (v.routing, &v.shard_field) {
            (VectorRoutingKind::Explicit, None) => {
                return Err(Error::Usage(
                    "--routing explicit needs --shard-field (the field naming each record's \
                     shard)"
                        .into(),
                ))
            }
            (VectorRoutingKind::Explicit, Some(_)) if v.num_probes != 1 => {
                return Err(Error::Usage(
                    "--probes applies to cluster and lsh routing; explicit routing searches \
                     the shards a query names"
                        .into(),
                ))
            }
            (VectorRoutingKind::Cluster | VectorRoutingKind::Lsh, Some(_)) => {
                return Err(Error::Usage(
                    "--shard-field is only for --routing explicit".into(),
                ))
            }
            _ => {}
        }
        if !(0.0..=1.0).contains(&v.spill) {
            return Err(Error::Usage(format!(
                "--spill is a fraction of the vectors, between 0 and 1, got {}",
                v.spill
            )));
        }
        if v.spill > 0.0 && v.routing != VectorRoutingKind::Cluster {
            return Err(Error::Usage("--spill is only for --routing cluster".into()));
        }
        if let Some(bits) = v.hash_bits {
            if v.routing != VectorRoutingKind::Lsh {
                return Err(Error::Usage("--hash-bits is only for --routing lsh".into()));
            }
            if !(1..=vrouting::MAX_HASH_BITS).contains(&bits) {
                return Err(Error::Usage(format!(
                    "--hash-bits must be between 1 and {}, got {bits}",
                    vrouting::MAX_HASH_BITS
                )));
            }
        }
    }
    Ok(())
}

/// Records bucketed by shard, and what the manifest needs to say about them.
struct Routed {
    buckets: Vec<Vec<Record>>,
    encoding: KeyEncoding,
    dim: Option<usize>,
    count: u64,
    /// dot_product: the L2 reduction the vectors are stored with.
    dot: Option<DotReduction>,
    /// Vector-only cluster / lsh routing: the file name and matrix to publish.
    artifact: Option<(&'static str, Matrix)>,
    /// Cluster routing with spill: records stored a second time, in another shard.
    spilled: u64,
}

fn read_and_route(opts: &BuildOptions) -> Result<Routed> {
    let format = match opts.input_format {
        Some(f) => f,
        None => InputFormat::from_path(&opts.input).ok_or_else(|| {
            Error::Usage(format!(
                "cannot tell the format of {} from its extension; pass --input-format",
                opts.input.display()
            ))
        })?,
    };
    let shard_field = opts
        .vector_only
        .as_ref()
        .and_then(|v| v.shard_field.clone());
    let needed = opts.fields.needed_columns().map(|mut cols| {
        cols.extend(shard_field.iter().cloned());
        cols.sort();
        cols.dedup();
        cols
    });
    let rows = read_records(&opts.input, format, needed.as_deref())?;
    let spinner = progress_bar(opts.progress, 0, "reading records");
    let mut records: Vec<Record> = Vec::new();
    // Explicit routing: each record's shard, read from its shard field.
    let mut explicit: Vec<u32> = Vec::new();
    let mut encoding = opts.key_encoding;
    let mut dim: Option<usize> = None;
    for raw in rows {
        let raw = raw?;
        let enc = *encoding.get_or_insert_with(|| opts.fields.infer_key_encoding(&raw));
        if let Some(field) = &shard_field {
            explicit.push(explicit_shard(&raw, field, opts.shards)?);
        }
        let record = opts.fields.to_record(raw, enc)?;
        if let Some(v) = &record.vector {
            let want = *dim.get_or_insert(v.len());
            vector::check_vector(v, want, opts.metric).map_err(|e| Error::InvalidRecord {
                record: record.number,
                field: opts.fields.vector_field.clone().unwrap_or_default(),
                reason: e.to_string(),
            })?;
        }
        records.push(record);
        if records.len().is_multiple_of(4096) {
            spinner.set_position(records.len() as u64);
        }
    }
    spinner.finish_and_clear();
    let count = records.len() as u64;
    if count == 0 {
        return Err(Error::InvalidInput {
            location: opts.input.display().to_string(),
            reason: "no records".into(),
        });
    }
    let encoding = encoding.unwrap_or(KeyEncoding::Utf8);
    let vectors = || records.iter().filter_map(|r| r.vector.as_deref());
    // LanceDB has an inner-product distance; sqlite-vec stores dot_product as an L2 reduction.
    let dot = match (dim, opts.metric, opts.vector_backend) {
        (_, _, VectorBackendKind::Lancedb) => None,
        (Some(_), Metric::DotProduct, _) => Some(DotReduction::for_vectors(vectors()).map_err(
            |e| Error::InvalidInput {
                location: opts.input.display().to_string(),
                reason: e.to_string(),
            },
        )?),
        _ => None,
    };

    // Cluster routing with spill: the second shard a boundary vector is also stored in.
    let mut spill_to: Vec<Option<u32>> = Vec::new();
    let (shard_of, artifact): (Vec<u32>, Option<(&'static str, Matrix)>) = match &opts.vector_only {
        None => (
            records
                .iter()
                .map(|r| routing::shard_for_key(&r.key, opts.shards))
                .collect::<std::result::Result<_, _>>()?,
            None,
        ),
        Some(v) => match v.routing {
            VectorRoutingKind::Explicit => (explicit, None),
            VectorRoutingKind::Cluster => {
                let all: Vec<&[f32]> = vectors().collect();
                if all.len() < opts.shards as usize {
                    return Err(Error::Usage(format!(
                        "--routing cluster trains one centroid per shard: {} vectors \
                             cannot make {} shards; use fewer --shards",
                        all.len(),
                        opts.shards
                    )));
                }
                let centroids = train_centroids(&all, opts.shards as usize, opts.metric)?;
                let cells =
                    vrouting::cluster_assign_with_spill(&all, &centroids, opts.metric, v.spill);
                let shards = cells.iter().map(|(primary, _)| *primary).collect();
                spill_to = cells.into_iter().map(|(_, second)| second).collect();
                (shards, Some((layout::CENTROIDS_FILE, centroids)))
            }
            VectorRoutingKind::Lsh => {
                let bits = v
                    .hash_bits
                    .unwrap_or_else(|| vrouting::default_hash_bits(opts.shards));
                let planes =
                    vrouting::random_hyperplanes(bits, dim.unwrap_or(0), vrouting::DEFAULT_SEED)?;
                let shards = vectors()
                    .map(|v| vrouting::lsh_assign(v, &planes, opts.shards))
                    .collect();
                (shards, Some((layout::HYPERPLANES_FILE, planes)))
            }
        },
    };
    let mut buckets: Vec<Vec<Record>> = (0..opts.shards).map(|_| Vec::new()).collect();
    let spilled = spill_to.iter().flatten().count() as u64;
    let mut spill_to = spill_to.into_iter();
    for (record, shard) in records.into_iter().zip(shard_of) {
        if let Some(Some(second)) = spill_to.next() {
            buckets[second as usize].push(record.clone());
        }
        buckets[shard as usize].push(record);
    }
    Ok(Routed {
        buckets,
        encoding,
        dim,
        count,
        dot,
        artifact,
        spilled,
    })
}

/// k-means centroids for cluster routing, trained on a seeded sample of the vectors. Cosine
/// trains on unit-length copies (direction is what cosine compares).
fn train_centroids(all: &[&[f32]], shards: usize, metric: Metric) -> Result<Matrix> {
    let picked = vrouting::sample_indices(all.len(), KMEANS_SAMPLE, vrouting::DEFAULT_SEED);
    let sample: Vec<Vec<f32>> = picked
        .iter()
        .map(|&i| {
            let v = all[i];
            match metric {
                Metric::Cosine => {
                    let n = vector::norm2(v).sqrt();
                    v.iter().map(|x| (*x as f64 / n) as f32).collect()
                }
                _ => v.to_vec(),
            }
        })
        .collect();
    let refs: Vec<&[f32]> = sample.iter().map(Vec::as_slice).collect();
    Ok(vrouting::train_kmeans(
        &refs,
        shards,
        KMEANS_ITERATIONS,
        vrouting::DEFAULT_SEED,
        metric,
    )?)
}

/// The shard a record names in its `--shard-field` (explicit routing).
fn explicit_shard(raw: &RawRecord, field: &str, shards: u32) -> Result<u32> {
    let invalid = |reason: String| Error::InvalidRecord {
        record: raw.number,
        field: field.to_string(),
        reason,
    };
    let id = match raw.fields.get(field) {
        None => return Err(invalid("missing shard id".into())),
        Some(FieldValue::Json(serde_json::Value::Number(n))) => n.as_u64(),
        Some(FieldValue::Json(serde_json::Value::String(s))) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    match id {
        Some(id) if id < shards as u64 => Ok(id as u32),
        Some(id) => Err(invalid(format!(
            "shard id {id} is not below --shards {shards}"
        ))),
        None => Err(invalid("the shard id is not a non-negative integer".into())),
    }
}

/// Sorts by stored key (stable, so equal keys stay in input order) and applies the duplicate
/// policy. Returns the records and how many duplicates were dropped.
fn sort_and_dedup(mut records: Vec<Record>, policy: DuplicatePolicy) -> Result<(Vec<Record>, u64)> {
    records.sort_by(|a, b| a.encoded_key.cmp(&b.encoded_key));
    let before = records.len();
    let mut kept: Vec<Record> = Vec::with_capacity(records.len());
    for record in records {
        match kept.last_mut() {
            Some(last) if last.encoded_key == record.encoded_key => match policy {
                DuplicatePolicy::Error => {
                    return Err(Error::DuplicateKey {
                        key: record.key.to_string(),
                        first: last.number,
                        second: record.number,
                    })
                }
                DuplicatePolicy::LastWins => *last = record,
            },
            _ => kept.push(record),
        }
    }
    let dropped = (before - kept.len()) as u64;
    Ok((kept, dropped))
}

/// Runs `f(0..n)` on `threads` workers; results in index order. The first error (lowest index)
/// wins, so error messages do not depend on thread timing.
fn parallel_map<T: Send>(
    n: usize,
    threads: usize,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<T>>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.min(n.max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                // A panicking task is an internal error of its own, not a panic of the build.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i)))
                    .unwrap_or_else(|_| Err(Error::Internal(format!("task {i} panicked"))));
                if let Ok(mut slots) = results.lock() {
                    slots[i] = Some(result);
                }
            });
        }
    });
    let slots = results
        .into_inner()
        .map_err(|_| Error::Internal("a worker thread panicked".into()))?;
    slots
        .into_iter()
        .enumerate()
        .map(|(i, slot)| {
            slot.unwrap_or_else(|| Err(Error::Internal(format!("task {i} left no result"))))
        })
        .collect()
}

/// Takes shard `i`'s records. A poisoned lock (a panic elsewhere) is an internal error, never
/// an empty shard.
fn take(buckets: &Mutex<Vec<Option<Vec<Record>>>>, i: usize) -> Result<Vec<Record>> {
    let mut buckets = buckets
        .lock()
        .map_err(|_| Error::Internal("the shard buckets' lock was poisoned by a panic".into()))?;
    Ok(buckets
        .get_mut(i)
        .and_then(Option::take)
        .unwrap_or_default())
}

/// The LanceDB table layout of a `--vector-backend lancedb` build (`None` otherwise).
#[cfg(feature = "lancedb")]
fn lance_layout(
    opts: &BuildOptions,
    dim: Option<usize>,
    shards: &[Vec<Record>],
) -> Result<Option<crate::lance_writer::LanceLayout>> {
    use crate::lance_writer::LanceLayout;
    match (opts.vector_backend, dim) {
        (VectorBackendKind::Lancedb, Some(dim)) => Ok(Some(LanceLayout {
            dim,
            metric: opts.metric,
            filter_columns: LanceLayout::filter_columns_of(shards.iter().flatten()),
            index: opts.vector_index,
        })),
        _ => Ok(None),
    }
}

#[cfg(not(feature = "lancedb"))]
fn lance_layout(
    _opts: &BuildOptions,
    _dim: Option<usize>,
    _shards: &[Vec<Record>],
) -> Result<Option<NoLance>> {
    // check_options refused --vector-backend lancedb already.
    Ok(None)
}

/// Stands in for the LanceDB layout in builds without the feature (never constructed).
#[cfg(not(feature = "lancedb"))]
enum NoLance {}

/// Writes a LanceDB shard: for composite (unified) snapshots the SQLite KV file at `db_path`
/// plus the table under `vector/`; for vector-only ones the table in the shard folder only.
#[cfg(feature = "lancedb")]
fn write_lance(
    db_path: &std::path::Path,
    records: &[Record],
    layout: &crate::lance_writer::LanceLayout,
    composite: bool,
    page_size: u32,
    page_seed: (u64, u32),
    on_rows: &(dyn Fn(u64) + Sync),
) -> Result<(ShardStats, Option<IndexPlan>)> {
    let shard_dir = db_path
        .parent()
        .ok_or_else(|| Error::Usage(format!("no folder for {}", db_path.display())))?;
    let kv = match composite {
        true => Some(write_shard(
            db_path,
            records,
            None,
            page_size,
            page_seed,
            &|_| {},
        )?),
        false => None,
    };
    let db_dir = match composite {
        true => shard_dir.join(layout::COMPOSITE_VECTOR_DIR),
        false => shard_dir.to_path_buf(),
    };
    let lance = crate::lance_writer::write_lance_shard(&db_dir, records, layout)?;
    on_rows(records.len() as u64);
    let stats = match kv {
        Some(mut kv) => {
            kv.duration_ms += lance.duration_ms;
            kv
        }
        None => ShardStats {
            rows: lance.rows,
            bytes: lance.bytes,
            checkpoint_id: lance.checkpoint_id,
            min_key: records.first().map(|r| r.key.clone()),
            max_key: records.last().map(|r| r.key.clone()),
            duration_ms: lance.duration_ms,
            page_seed: None,
            ivf: None,
            codes: None,
        },
    };
    Ok((stats, Some(lance.plan)))
}

#[cfg(not(feature = "lancedb"))]
fn write_lance(
    _db_path: &std::path::Path,
    _records: &[Record],
    layout: &NoLance,
    _composite: bool,
    _page_size: u32,
    _page_seed: (u64, u32),
    _on_rows: &(dyn Fn(u64) + Sync),
) -> Result<(ShardStats, Option<IndexPlan>)> {
    match *layout {}
}

fn custom_json(
    dim: Option<usize>,
    metric: Metric,
    dot: Option<DotReduction>,
    vector_only: Option<&VectorOnlyOptions>,
    artifact: Option<&Matrix>,
    artifact_ref: Option<&str>,
    rows: u64,
) -> Map<String, Value> {
    let mut custom = Map::new();
    let Some(dim) = dim else {
        return custom;
    };
    let routing = vector_only.map(|v| {
        let strategy = v.routing.strategy();
        VectorRouting {
            strategy,
            num_probes: v.num_probes,
            centroids_ref: (strategy == VectorStrategy::Cluster)
                .then(|| artifact_ref.map(str::to_string))
                .flatten(),
            hyperplanes_ref: (strategy == VectorStrategy::Lsh)
                .then(|| artifact_ref.map(str::to_string))
                .flatten(),
            num_hash_bits: (strategy == VectorStrategy::Lsh)
                .then(|| artifact.map(|m| m.rows as u32))
                .flatten(),
            total_vectors: Some(rows),
            // edgeshard only: shardyfusion readers ignore it (and may then list a boundary
            // vector twice).
            spill_fraction: (v.spill > 0.0).then_some(v.spill),
        }
    });
    let spec = VectorSpec {
        dim,
        metric,
        backend: Some(VectorBackend::SqliteVec),
        unified: vector_only.is_none(),
        routing,
        dot_reduction: dot,
        ann_defaults: Default::default(),
        index_type: Some("flat".into()),
        quantization: None,
        index_params: None,
        kv_backend: vector_only.is_none().then(|| "sqlite-vec".into()),
    };
    custom.insert("vector".into(), spec.to_json());
    custom
}

fn writer_info(
    duration_ms: u64,
    sidecar: Option<&SidecarStats>,
    plan: Option<IndexPlan>,
    content_hash: Option<&str>,
    page_seed: Option<u64>,
    ivf: Option<IvfStats>,
    codes: Option<&CodesStats>,
) -> Map<String, Value> {
    let Value::Object(mut map) = json!({
        "attempt": 0,
        "duration_ms": duration_ms,
        "stage_id": null,
        "task_attempt_id": null,
        "writer": concat!("edgeshard/", env!("CARGO_PKG_VERSION")),
    }) else {
        return Map::new();
    };
    if let Some(sidecar) = sidecar {
        map.insert("sidecar_tag".into(), sidecar.tag.clone().into());
        if let Some(hash) = &sidecar.key_index_hash {
            map.insert(
                edgeshard_shared::key_index::HASH_KEY.into(),
                hash.clone().into(),
            );
        }
    }
    if let Some(hash) = content_hash {
        map.insert(integrity::CONTENT_HASH_KEY.into(), hash.into());
    }
    if let Some(seed) = page_seed {
        map.insert(
            integrity::PAGE_SEED_KEY.into(),
            format!("{seed:016x}").into(),
        );
    }
    if let Some(plan) = plan {
        map.insert("index_type".into(), plan.index_type().into());
        map.insert("index_params".into(), plan.params());
    }
    if let Some(ivf) = ivf {
        map.insert("index_type".into(), ivf::INDEX_TYPE.into());
        map.insert(
            "index_params".into(),
            json!({"cells": ivf.cells, "chunk_size": ivf.chunk_size}),
        );
    }
    if let Some(c) = codes {
        map.insert(codes::FILE_KEY.into(), codes::FILE_NAME.into());
        map.insert(codes::BYTES_KEY.into(), c.bytes.into());
        map.insert(codes::HASH_KEY.into(), c.hash.clone().into());
    }
    map
}

fn progress_bar(enabled: bool, total: u64, label: &'static str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let template = if total == 0 {
        "{spinner} {msg}: {pos} [{elapsed}]"
    } else {
        "{msg} [{bar:30}] {pos}/{len} rows ({per_sec}, eta {eta})"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label);
    bar
}

/// A fresh 32-hex-digit run id (time-ordered prefix, random suffix).
pub fn new_run_id() -> String {
    let micros = unix_micros() as u64;
    format!("{:016x}{:016x}", micros, rand::random::<u64>())
}

pub fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
