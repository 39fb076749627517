//! The `edgeshard` command line. Read commands print one JSON object per line by default
//! (`--format table` for people); errors go to stderr with a non-zero exit code.

use crate::build::{
    build, BuildOptions, DuplicatePolicy, Quantization, VectorBackendKind, VectorOnlyOptions,
    VectorRoutingKind,
};
use crate::error::{Error, Result};
use crate::input::{FieldMapping, InputFormat};
use crate::output::{self, json_err, FilterSpec, SearchRequest};
use crate::vector_index::IndexKind;
use crate::versions::RollbackTarget;
use clap::{Args, Parser, Subcommand, ValueEnum};
use edgeshard_native::{AccessMode, OpenOptions, Root, SearchResponse, Snapshot};
use edgeshard_shared::{routing, Key, KeyEncoding, Metric};
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Parser)]
#[command(
    name = "edgeshard",
    version,
    about = "Build and read sharded, versioned KV + vector snapshots (shardyfusion format v4)",
    after_help = "Examples:\n  edgeshard build --input docs.jsonl --key-field id --value-field text \\\n      --vector-field embedding --shards 8 --out ./snap\n  edgeshard build --input docs.parquet --key-field id --vector-field embedding \\\n      --payload-fields section --vector-only --routing cluster --shards 16 --probes 2 --out ./vsnap\n  edgeshard get --root ./snap some-key\n  edgeshard search --root ./snap --vector '[0.1, 0.2, 0.3]' --k 5 --filter section=web"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per line.
    Json,
    /// Aligned columns for people.
    Table,
}

/// Where a snapshot is and how to read it: the flags every reading command shares (the read
/// commands and `serve`).
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Snapshot root: a directory, file://, s3://bucket/prefix or http(s):// URL.
    #[arg(long, env = "EDGESHARD_ROOT")]
    pub root: String,
    /// How remote shards are read: whole into the local cache (download), page by page with
    /// ranged reads (range), or by the call (auto: lookups by range; searches download a shard
    /// below 16 MiB, when all are below 2 GiB, else range).
    #[arg(long, value_enum, default_value = "auto")]
    pub access: AccessArg,
    /// Where downloaded shards are cached (default: $TMPDIR/edgeshard-cache).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// S3 endpoint for S3-compatible stores (else AWS_ENDPOINT_URL); path-style requests.
    #[arg(long, env = "EDGESHARD_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region (else AWS_REGION, else us-east-1).
    #[arg(long)]
    pub s3_region: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long, value_enum, default_value = "json")]
    pub format: OutputFormat,
    /// Print requests, bytes and cache hits of the command to stderr, as JSON.
    #[arg(long)]
    pub stats: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccessArg {
    Auto,
    Download,
    Range,
}

impl StoreArgs {
    /// S3 settings from the flags, as object_store keys.
    pub fn storage_options(&self) -> Vec<(String, String)> {
        let mut storage_options = Vec::new();
        if let Some(endpoint) = &self.s3_endpoint {
            storage_options.push(("aws_endpoint".to_string(), endpoint.clone()));
        }
        if let Some(region) = &self.s3_region {
            storage_options.push(("aws_region".to_string(), region.clone()));
        }
        storage_options
    }

    pub fn root(&self) -> Result<Root> {
        Ok(Root::parse_with(&self.root, &self.storage_options())?)
    }

    /// The reader's options: access mode, cache folder, S3 settings.
    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            access: match self.access {
                AccessArg::Auto => AccessMode::Auto,
                AccessArg::Download => AccessMode::Download,
                AccessArg::Range => AccessMode::Range,
            },
            cache_dir: self.cache_dir.clone(),
            storage_options: self.storage_options(),
            ..OpenOptions::default()
        }
    }

    pub fn open(&self) -> Result<Snapshot> {
        Ok(Snapshot::open_with(&self.root, self.open_options())?)
    }
}

impl ReadArgs {
    fn root(&self) -> Result<Root> {
        self.store.root()
    }

    fn open(&self) -> Result<Snapshot> {
        self.store.open()
    }

    /// With `--stats`, the snapshot's I/O so far as one JSON line on stderr.
    fn report(&self, snap: &Snapshot) {
        if self.stats {
            let stats = json!({
                "stats": snap.stats(),
                "access": {"lookups": snap.lookup_access_mode(), "searches": snap.access_mode()},
            });
            crate::error::warn(&stats.to_string());
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a snapshot from JSONL, CSV or Parquet records and publish it.
    Build(BuildArgs),
    /// Look up keys (parsed per the snapshot's key encoding: integers for u64be/u32be).
    #[command(allow_negative_numbers = true)]
    Get {
        #[command(flatten)]
        read: ReadArgs,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Look up many keys, from arguments or one per line on stdin; results in input order.
    #[command(allow_negative_numbers = true)]
    Multiget {
        #[command(flatten)]
        read: ReadArgs,
        keys: Vec<String>,
    },
    /// Nearest vectors to a query, over all shards (or --shards), merged.
    Search {
        #[command(flatten)]
        read: ReadArgs,
        /// The query as a JSON array.
        #[arg(
            long,
            conflicts_with = "vector_file",
            required_unless_present = "vector_file"
        )]
        vector: Option<String>,
        /// A file holding the query as a JSON array.
        #[arg(long)]
        vector_file: Option<PathBuf>,
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Only these shard ids (comma-separated). Required for explicit vector routing; with
        /// cluster / lsh routing they replace the probed shards.
        #[arg(long, value_delimiter = ',')]
        shards: Option<Vec<u32>>,
        /// Vector-routed (cluster / lsh) snapshots: how many shards to probe (default: the
        /// manifest's num_probes; at most the shard count).
        #[arg(long)]
        probes: Option<usize>,
        /// Keep only vectors whose payload matches: FIELD=VALUE, FIELD=V1|V2 (any of),
        /// FIELD!=VALUE; VALUE is JSON when it parses as JSON, else text. Repeat to AND. Still
        /// returns k results when k vectors match.
        #[arg(long = "filter")]
        filters: Vec<String>,
        /// Payload fields to return (comma-separated; default: the whole payload).
        #[arg(long, value_delimiter = ',')]
        fields: Option<Vec<String>>,
        /// Indexed shards: IVF cells (sqlite-vec --vector-index ivf) or partitions (LanceDB) to
        /// probe per shard (default: the manifest's index_params).
        #[arg(long, value_parser = parse_positive::<usize>)]
        nprobes: Option<usize>,
        /// Search every shard exactly, ignoring any vector index (brute force).
        #[arg(long, conflicts_with_all = ["nprobes", "refine", "ef"])]
        exact: bool,
        /// Indexed LanceDB shards, and sqlite-vec shards with binary codes (--quantization
        /// binary): re-rank REFINE x k candidates by exact distance (default: the manifest's
        /// index_params.refine_factor).
        #[arg(long, value_parser = parse_positive::<u32>)]
        refine: Option<u32>,
        /// Indexed LanceDB shards (HNSW): search breadth.
        #[arg(long, value_parser = parse_positive::<usize>)]
        ef: Option<usize>,
    },
    /// Summary of the current snapshot.
    Info {
        #[command(flatten)]
        read: ReadArgs,
    },
    /// The shards of the current snapshot.
    Shards {
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Which shard a key routes to: from a snapshot (--root) or for --num-dbs slots.
    #[command(allow_negative_numbers = true)]
    Route {
        /// Negative integers are keys too (`route -1 --num-dbs 3`).
        key: String,
        #[arg(long, env = "EDGESHARD_ROOT", conflicts_with = "num_dbs")]
        root: Option<String>,
        #[arg(long, required_unless_present = "root")]
        num_dbs: Option<u32>,
        /// How to read KEY without a snapshot: int, str, or hex bytes (default: int if it
        /// parses as one, else str).
        #[arg(long, value_enum)]
        key_type: Option<KeyType>,
        #[arg(long, value_enum, default_value = "json")]
        format: OutputFormat,
    },
    /// Check every shard file of the current snapshot against its manifest row: present, of
    /// the recorded size, and (local roots) of the recorded content hash.
    Verify {
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Published manifests, newest first.
    History {
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Bind each shard's sidecar to the ETag a host serving this snapshot reports for the
    /// shard (static hosts compute their own ETags); range readers then use the sidecars there.
    SidecarBind {
        /// The local snapshot root whose sidecars are rewritten.
        #[arg(long)]
        root: String,
        /// Where the same snapshot is served: http(s)://... or s3://...
        #[arg(long)]
        host: String,
        #[arg(long, value_enum, default_value = "json")]
        format: OutputFormat,
    },
    /// Remove old runs (manifest, then shards) and leftovers of failed builds from a local
    /// root. Never touches what _CURRENT points at, the newest --keep-last manifests, or
    /// folders younger than an hour (a build may still be writing them).
    Cleanup {
        #[command(flatten)]
        read: ReadArgs,
        /// Newest manifests to keep (the current one is always kept).
        #[arg(long, default_value_t = 3)]
        keep_last: usize,
        /// Only remove runs older than this age: 30d, 12h, 45m, 90s.
        #[arg(long, value_parser = crate::cleanup::parse_age)]
        older_than: Option<std::time::Duration>,
        /// Print what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Serve the snapshot over HTTP: a JSON API answering as get, search, info, shards, route
    /// and history do, following _CURRENT as new versions are published (see the README,
    /// "Server").
    Serve(crate::serve::ServeArgs),
    /// Point _CURRENT at an older manifest.
    Rollback {
        #[command(flatten)]
        read: ReadArgs,
        /// How many versions back from the current one (1 = the previous).
        #[arg(long, conflicts_with_all = ["run_id", "manifest_ref"],
              required_unless_present_any = ["run_id", "manifest_ref"])]
        offset: Option<usize>,
        /// The run id to make current.
        #[arg(long, conflicts_with = "manifest_ref")]
        run_id: Option<String>,
        /// The manifest to make current: its URL (as `history` or `_CURRENT` show it) or its
        /// path under the root.
        #[arg(long = "ref")]
        manifest_ref: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyType {
    Int,
    Str,
    Hex,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Input file (.jsonl, .csv, .parquet), or - for JSONL/CSV on stdin.
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long, value_enum)]
    pub input_format: Option<InputFormat>,
    /// Field holding the record key.
    #[arg(long)]
    pub key_field: String,
    /// Field holding the value (default: the whole record minus the vector, as JSON).
    #[arg(long)]
    pub value_field: Option<String>,
    /// Field holding the vector (JSON array, or Parquet list of floats). Makes the snapshot
    /// unified: KV plus a sqlite-vec index, the vector id being the key.
    #[arg(long)]
    pub vector_field: Option<String>,
    /// Fields copied into each vector's JSON payload (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub payload_fields: Vec<String>,
    /// Number of shard slots.
    #[arg(long, default_value_t = 8)]
    pub shards: u32,
    /// u64be, u32be, utf8 or raw (default: u64be for integer keys, utf8 otherwise).
    #[arg(long, value_parser = parse_key_encoding)]
    pub key_encoding: Option<KeyEncoding>,
    /// cosine, l2 or dot_product (alias dot). sqlite-vec has no inner-product distance, so
    /// dot_product is stored by the exact reduction to L2 with one extra dimension (recorded in
    /// the manifest as custom.vector.dot_reduction); scores are 1 - q.v.
    #[arg(long, value_parser = parse_metric, default_value = "cosine")]
    pub metric: Metric,
    /// SQLite page size of the shards (power of two, 4096..65536).
    #[arg(long, default_value_t = 4096)]
    pub page_size: u32,
    /// Snapshot root to publish to: a directory, file:// URL or s3://bucket/prefix (credentials
    /// from the usual AWS_* environment variables).
    #[arg(long)]
    pub out: String,
    /// S3 endpoint for an s3:// --out on an S3-compatible store (else AWS_ENDPOINT_URL);
    /// path-style requests, and plain HTTP allowed for an http:// endpoint.
    #[arg(long, env = "EDGESHARD_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region for an s3:// --out (else AWS_REGION, else us-east-1).
    #[arg(long)]
    pub s3_region: Option<String>,
    #[arg(long, value_enum, default_value = "error")]
    pub on_duplicate: DuplicatePolicy,
    /// Run id (default: a fresh time-ordered id).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress output on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Do not write the page-cache sidecar (shard.sidecar) beside each shard.
    #[arg(long)]
    pub no_sidecar: bool,
    /// Build a vector-only snapshot (no KV rows; the key field is the vector id), with vectors
    /// routed to shards by --routing. Needs --vector-field.
    #[arg(long)]
    pub vector_only: bool,
    /// Vector routing of a --vector-only snapshot: cluster (nearest k-means centroid), lsh
    /// (random-hyperplane hash) or explicit (--shard-field names each record's shard). Default:
    /// cluster.
    #[arg(long, value_enum)]
    pub routing: Option<VectorRoutingKind>,
    /// Shards a query probes by default (the manifest's num_probes), 1..=--shards; cluster and
    /// lsh routing. Default: 1.
    #[arg(long)]
    pub probes: Option<u32>,
    /// Explicit routing: the field holding each record's shard id (0..--shards).
    #[arg(long)]
    pub shard_field: Option<String>,
    /// LSH routing: number of hyperplanes (1..=64; default ceil(log2(--shards))).
    #[arg(long)]
    pub hash_bits: Option<u32>,
    /// Cluster routing: also store this fraction of the vectors (those nearest a cell
    /// boundary) in their second-nearest shard, so fewer probes find their neighbours (0..=1;
    /// 0.3 = 1.3x the vectors). Default 0. edgeshard readers report such a vector once;
    /// shardyfusion readers may list it twice.
    #[arg(long)]
    pub spill: Option<f64>,
    /// Where vectors live: sqlite-vec (exact, inside shard.db) or lancedb (a LanceDB table per
    /// shard beside the SQLite KV file; needs a build with --features lancedb).
    #[arg(long, value_enum, default_value = "sqlite-vec")]
    pub vector_backend: VectorBackendKind,
    /// Vector index per shard. sqlite-vec: auto (flat below 5,000 vectors in the largest shard,
    /// ivf above; flat with --quantization binary), flat (exact) or ivf (k-means cells inside
    /// each shard: a search reads only the cells it probes, --nprobes). LanceDB: auto (flat
    /// below 5,000 rows, IVF_HNSW_SQ above), flat, ivf-hnsw-sq or ivf-pq.
    #[arg(long, value_enum, default_value = "auto")]
    pub vector_index: IndexKind,
    /// sqlite-vec shards: compact codes written beside each shard (`shard.codes`) that a
    /// search scans first, re-ranking the best k x refine candidates exactly (--refine,
    /// default 4). binary: one bit per dimension, ~1/30 of the vectors' bytes, so a cold
    /// search over HTTP reads the codes and a few pages instead of every vector. Flat index
    /// only. Other readers (shardyfusion) ignore the file and search the shard exactly.
    #[arg(long, value_enum, default_value = "none")]
    pub quantization: Quantization,
    #[arg(long, value_enum, default_value = "json")]
    pub format: OutputFormat,
}

/// An integer >= 1 (ANN knobs: 0 partitions or 0 breadth would silently return nothing).
fn parse_positive<T: std::str::FromStr + PartialOrd + From<u8>>(text: &str) -> Result<T, String> {
    match text.parse::<T>() {
        Ok(v) if v >= T::from(1) => Ok(v),
        _ => Err(format!("expected an integer >= 1, got {text:?}")),
    }
}

fn parse_key_encoding(s: &str) -> std::result::Result<KeyEncoding, String> {
    KeyEncoding::parse(s).map_err(|e| e.to_string())
}

fn parse_metric(s: &str) -> std::result::Result<Metric, String> {
    Metric::parse(s).map_err(|e| e.to_string())
}

/// Runs one command, writing results to `out` and reading stdin-fed keys from `input`.
pub fn run(cli: Cli, out: &mut dyn Write, input: &mut dyn BufRead) -> Result<()> {
    match cli.command {
        Command::Build(args) => run_build(args, out),
        Command::Get { read, keys } => run_get(&read, &keys, out),
        Command::Multiget { read, keys } => {
            let keys = if keys.is_empty() {
                input
                    .lines()
                    .map(|l| l.map_err(Error::io("stdin")))
                    .filter(|l| !matches!(l, Ok(l) if l.trim().is_empty()))
                    .collect::<Result<Vec<_>>>()?
            } else {
                keys
            };
            run_get(&read, &keys, out)
        }
        Command::Search {
            read,
            vector,
            vector_file,
            k,
            shards,
            probes,
            filters,
            fields,
            nprobes,
            exact,
            refine,
            ef,
        } => {
            let text = match (vector, vector_file) {
                (Some(text), _) => text,
                (None, Some(path)) => {
                    std::fs::read_to_string(&path).map_err(Error::io(path.display()))?
                }
                (None, None) => return Err(Error::Usage("give --vector or --vector-file".into())),
            };
            let vector: Vec<f64> = serde_json::from_str(text.trim()).map_err(|e| {
                Error::Usage(format!(
                    "the query vector is not a JSON array of numbers: {e}"
                ))
            })?;
            let request = SearchRequest {
                vector,
                k: Some(k),
                filter: (!filters.is_empty()).then_some(FilterSpec::All(filters)),
                fields,
                probes,
                nprobes,
                ef,
                refine,
                shards,
                exact,
            };
            let (query, options) = request.to_query()?;
            let snap = read.open()?;
            let started = Instant::now();
            let response = snap.search_with(&query, &options)?;
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            read.report(&snap);
            print_search(&response, latency_ms, read.format, out)
        }
        Command::Info { read } => {
            let snap = read.open()?;
            let value = output::info_object(&snap.info())?;
            read.report(&snap);
            emit_records(&[value], read.format, out)
        }
        Command::Verify { read } => {
            let snap = read.open()?;
            let checks = snap.verify_shards()?;
            read.report(&snap);
            let rows = checks
                .iter()
                .map(serde_json::to_value)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(json_err)?;
            emit_records(&rows, read.format, out)
        }
        Command::Shards { read } => {
            let snap = read.open()?;
            read.report(&snap);
            let rows = output::shard_rows(&snap);
            emit_records(&rows, read.format, out)
        }
        Command::Route {
            key,
            root,
            num_dbs,
            key_type,
            format,
        } => {
            let (key, shard) = match (root, num_dbs) {
                (Some(root), _) => {
                    let snap = Snapshot::open(&root)?;
                    let key = snap.manifest().meta.key_encoding.parse_key_text(&key)?;
                    let shard = snap.route(&key)?;
                    (key, shard)
                }
                (None, Some(n)) => {
                    let key = key_from_text(&key, key_type)?;
                    let shard = routing::shard_for_key(&key, n)?;
                    (key, shard)
                }
                (None, None) => return Err(Error::Usage("give --root or --num-dbs".into())),
            };
            let row = output::route_object(&key, shard);
            emit_records(&[row], format, out)
        }
        Command::History { read } => {
            let root = read.root()?;
            let rows = output::history_rows(&root)?;
            emit_records(&rows, read.format, out)
        }
        Command::Rollback {
            read,
            offset,
            run_id,
            manifest_ref,
        } => run_rollback(&read, offset, run_id, manifest_ref, out),
        Command::Cleanup {
            read,
            keep_last,
            older_than,
            dry_run,
        } => {
            let removed = crate::cleanup::cleanup(
                &read.root()?,
                &crate::cleanup::CleanupOptions {
                    keep_last,
                    older_than,
                    dry_run,
                },
            )?;
            let rows: Vec<Value> = removed
                .iter()
                .map(|r| serde_json::to_value(r).map_err(json_err))
                .collect::<Result<_>>()?;
            emit_records(&rows, read.format, out)
        }
        Command::SidecarBind { root, host, format } => run_sidecar_bind(&root, &host, format, out),
        Command::Serve(args) => crate::serve::run(args),
    }
}

fn run_build(args: BuildArgs, out: &mut dyn Write) -> Result<()> {
    let vector_only = match args.vector_only {
        true => Some(VectorOnlyOptions {
            routing: args.routing.unwrap_or(VectorRoutingKind::Cluster),
            num_probes: args.probes.unwrap_or(1),
            shard_field: args.shard_field,
            hash_bits: args.hash_bits,
            spill: args.spill.unwrap_or(0.0),
        }),
        false => {
            let stray = [
                ("--routing", args.routing.is_some()),
                ("--probes", args.probes.is_some()),
                ("--shard-field", args.shard_field.is_some()),
                ("--hash-bits", args.hash_bits.is_some()),
                ("--spill", args.spill.is_some()),
            ];
            if let Some((flag, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(Error::Usage(format!(
                    "{flag} applies to vector-only snapshots: add --vector-only"
                )));
            }
            None
        }
    };
    let opts = BuildOptions {
        input: args.input,
        input_format: args.input_format,
        fields: FieldMapping {
            key_field: args.key_field,
            value_field: args.value_field,
            vector_field: args.vector_field,
            payload_fields: args.payload_fields,
        },
        shards: args.shards,
        key_encoding: args.key_encoding,
        metric: args.metric,
        page_size: args.page_size,
        out: args.out,
        storage_options: [
            ("aws_endpoint", args.s3_endpoint),
            ("aws_region", args.s3_region),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| (key.to_string(), v)))
        .collect(),
        on_duplicate: args.on_duplicate,
        run_id: args.run_id,
        threads: args.threads,
        progress: !args.quiet,
        sidecar: !args.no_sidecar,
        vector_only,
        vector_backend: args.vector_backend,
        vector_index: args.vector_index,
        quantization: args.quantization,
    };
    let summary = build(&opts)?;
    let value = serde_json::to_value(&summary).map_err(json_err)?;
    report_after_change(&format!("run {} is published", summary.run_id), || {
        emit_records(&[value], args.format, out)
    })
}

/// Prints the report of a command that has already changed the root (a build that switched
/// `_CURRENT`, a rollback): failing to print it must not fail the command, or a caller would
/// retry or roll back a change that readers already see. The failure goes to stderr.
fn report_after_change(done: &str, print: impl FnOnce() -> Result<()>) -> Result<()> {
    if let Err(e) = print() {
        crate::error::warn(&format!(
            "warning: {done}, but its report could not be printed: {e}"
        ));
    }
    Ok(())
}

impl Cli {
    /// Whether the command changes the snapshot root in a way a caller must not take back on a
    /// failed exit (see `report_after_change`); `main` then treats a failed flush of stdout
    /// as a warning.
    pub fn changes_current(&self) -> bool {
        matches!(self.command, Command::Build(_) | Command::Rollback { .. })
    }
}

fn run_get(read: &ReadArgs, keys: &[String], out: &mut dyn Write) -> Result<()> {
    let snap = read.open()?;
    let encoding = snap.manifest().meta.key_encoding;
    let parsed: Vec<Key> = keys
        .iter()
        .map(|k| encoding.parse_key_text(k))
        .collect::<std::result::Result<_, _>>()?;
    let rows = output::get_rows(&snap, &parsed)?;
    read.report(&snap);
    emit_records(&rows, read.format, out)
}

fn run_rollback(
    read: &ReadArgs,
    offset: Option<usize>,
    run_id: Option<String>,
    manifest_ref: Option<String>,
    out: &mut dyn Write,
) -> Result<()> {
    let target = match (offset, run_id, manifest_ref) {
        (Some(n), _, _) => RollbackTarget::Offset(n),
        (None, Some(id), _) => RollbackTarget::RunId(id),
        (None, None, Some(reference)) => RollbackTarget::ManifestRef(reference),
        (None, None, None) => return Err(Error::Usage("give --offset, --run-id or --ref".into())),
    };
    let done = crate::versions::rollback(&read.store.root, &read.store.storage_options(), &target)?;
    let row = json!({
        "run_id": done.run_id, "manifest": done.manifest, "previous": done.previous,
    });
    report_after_change(&format!("_CURRENT names run {}", done.run_id), || {
        emit_records(&[row], read.format, out)
    })
}

fn run_sidecar_bind(
    root: &str,
    host: &str,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<()> {
    let rows: Vec<Value> = crate::sidecar_writer::bind_to_host(root, host)?
        .into_iter()
        .map(
            |b| json!({"db_id": b.db_id, "sidecar": b.sidecar.display().to_string(), "tag": b.tag}),
        )
        .collect();
    emit_records(&rows, format, out)
}

fn key_from_text(text: &str, key_type: Option<KeyType>) -> Result<Key> {
    match key_type {
        Some(KeyType::Int) => text
            .parse()
            .map(Key::Int)
            .map_err(|_| Error::Usage(format!("{text:?} is not a 64-bit integer"))),
        Some(KeyType::Str) => Ok(Key::Str(text.to_string())),
        Some(KeyType::Hex) => {
            let digits = text.trim_start_matches("0x");
            if !digits.len().is_multiple_of(2) {
                return Err(Error::Usage(format!(
                    "{text:?} has an odd number of hex digits"
                )));
            }
            (0..digits.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&digits[i..i + 2], 16))
                .collect::<std::result::Result<Vec<u8>, _>>()
                .map(Key::Bytes)
                .map_err(|_| Error::Usage(format!("{text:?} is not hex")))
        }
        None => Ok(text
            .parse()
            .map(Key::Int)
            .unwrap_or_else(|_| Key::Str(text.to_string()))),
    }
}

fn print_search(
    response: &SearchResponse,
    latency_ms: f64,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<()> {
    match format {
        OutputFormat::Json => {
            let value = output::search_object(response, latency_ms);
            writeln!(out, "{value}").map_err(Error::io("stdout"))
        }
        OutputFormat::Table => {
            let rows: Vec<Value> = response
                .results
                .iter()
                .enumerate()
                .map(|(rank, hit)| {
                    json!({"rank": rank + 1, "id": hit.id, "score": hit.score,
                           "shard": hit.shard, "payload": hit.payload})
                })
                .collect();
            emit_records(&rows, format, out)?;
            writeln!(
                out,
                "{} results from {} shards in {latency_ms:.2} ms",
                response.results.len(),
                response.shards_queried
            )
            .map_err(Error::io("stdout"))
        }
    }
}

/// Prints objects as JSON lines, or as a table whose columns are the first object's keys.
fn emit_records(rows: &[Value], format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    let io = |e| Error::io("stdout")(e);
    match format {
        OutputFormat::Json => {
            for row in rows {
                writeln!(out, "{row}").map_err(io)?;
            }
            Ok(())
        }
        OutputFormat::Table => {
            let Some(Value::Object(first)) = rows.first() else {
                return Ok(());
            };
            let columns: Vec<&String> = first.keys().collect();
            let cell = |row: &Value, col: &str| match &row[col] {
                Value::String(s) => s.clone(),
                Value::Null => "-".to_string(),
                other => other.to_string(),
            };
            let widths: Vec<usize> = columns
                .iter()
                .map(|c| {
                    rows.iter()
                        .map(|r| cell(r, c).chars().count())
                        .max()
                        .unwrap_or(0)
                        .max(c.len())
                })
                .collect();
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            writeln!(
                out,
                "{}",
                line(columns.iter().map(|c| c.to_string()).collect())
            )
            .map_err(io)?;
            for row in rows {
                writeln!(
                    out,
                    "{}",
                    line(columns.iter().map(|c| cell(row, c)).collect())
                )
                .map_err(io)?;
            }
            Ok(())
        }
    }
}
