//! An open snapshot: the manifest plus lazily opened shard connections.

use crate::error::{Error, Result};
use crate::range::{FileSource, RangeShard, RangeSource, RangeStats, StatsSnapshot};
use crate::root::{sqlite_immutable_uri, ManifestVersion, Root};
use crate::sqlite_vec_ext;
use edgeshard_shared::current::CurrentPointer;
use edgeshard_shared::filter::{project, Filter};
use edgeshard_shared::integrity::ContentHasher;
use edgeshard_shared::manifest::{ShardEntry, Strategy, VectorBackend, VectorSpec};
use edgeshard_shared::merge::{merge_top_k_distinct, Scored};
use edgeshard_shared::query::MAX_K;
pub use edgeshard_shared::query::{SearchHit, SearchOptions, SearchResponse, VectorId};
use edgeshard_shared::search_plan::{self, Router};
use edgeshard_shared::sidecar::{Sidecar, SidecarContent};
use edgeshard_shared::vector::{AnnParams, DotReduction};
use edgeshard_shared::{layout, routing, vector, Key, Manifest, Metric};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Upper bound of the memory map per shard connection (address space, not resident memory).
const MMAP_BYTES: i64 = 1 << 32;

/// What `edgeshard info` prints.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    pub root: String,
    pub run_id: String,
    pub created_at: String,
    pub manifest: String,
    pub num_dbs: u32,
    pub non_empty_shards: usize,
    pub rows: u64,
    pub bytes: u64,
    pub key_encoding: &'static str,
    pub key_col: String,
    pub sharding: &'static str,
    pub vector: Option<Value>,
}

struct ShardHandle {
    entry: ShardEntry,
    /// `shards/run_id=R/db=NNNNN/attempt=AA/shard.db`, relative to the root.
    relative: String,
    /// Display form of where the shard lives, for errors.
    location: String,
    /// Opened on first use; a shard that is never queried is never opened.
    conn: Mutex<Option<ShardConn>>,
    /// Set once the shard's first stored key was seen to route to it (checked on its first
    /// miss, see [`Snapshot::check_routing_on_miss`]).
    routing_checked: AtomicBool,
    /// The shard's LanceDB table, opened on first search (LanceDB snapshots).
    #[cfg(feature = "lancedb")]
    lance: Mutex<Option<Arc<crate::lance::LanceShard>>>,
}

/// An open shard database: a file SQLite reads itself, or pages read by range.
enum ShardConn {
    Whole(Connection),
    Range(RangeShard),
}

/// How shard databases are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessMode {
    /// Range for large remote snapshots (a shard >= 16 MiB or all >= 2 GiB), else download;
    /// local files are read in place.
    #[default]
    Auto,
    /// Each shard fetched whole (remote) into the local cache, then read from disk.
    Download,
    /// Pages fetched on demand with ranged reads, through a bounded page cache and the sidecar.
    Range,
}

impl AccessMode {
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "auto" => Ok(Self::Auto),
            "download" => Ok(Self::Download),
            "range" => Ok(Self::Range),
            other => Err(Error::InvalidRequest(format!(
                "access mode {other:?} is not auto, download or range"
            ))),
        }
    }
}

/// Threads one search uses to query its shards (at most one per shard): enough to overlap the
/// reads of range-read shards and to use the cores on local ones, without one OS thread per
/// shard when a search covers thousands.
const SEARCH_THREADS: usize = 16;

/// `work` over every item on at most `threads` scoped threads; results in item order. A panic
/// in `work` is an error, not a crash of the caller.
fn for_each_bounded<I: Sync, T: Send>(
    items: &[I],
    threads: usize,
    work: impl Fn(&I) -> Result<T> + Sync,
) -> Vec<Result<T>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = threads.clamp(1, items.len().max(1));
    let mut slots: Vec<Option<Result<T>>> = (0..items.len()).map(|_| None).collect();
    let finished: Vec<Vec<(usize, Result<T>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            break done;
                        };
                        done.push((i, work(item)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for (i, result) in finished.into_iter().flatten() {
        slots[i] = Some(result);
    }
    slots
        .into_iter()
        .map(|slot| {
            slot.unwrap_or_else(|| {
                Err(Error::Unsupported(
                    "internal error: a shard search thread panicked".into(),
                ))
            })
        })
        .collect()
}

/// How many older manifests a cold start tries when the current one is corrupt.
pub const FALLBACK_MANIFESTS: usize = 3;

/// Shard size from which `auto` reads by range (the format's rule), and the total.
const RANGE_SHARD_BYTES: u64 = 16 << 20;
const RANGE_TOTAL_BYTES: u64 = 2 << 30;

#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub access: AccessMode,
    /// Where downloaded shards are kept (default: `$TMPDIR/edgeshard-cache`), in folders named
    /// by `checkpoint_id`, so runs never mix.
    pub cache_dir: Option<PathBuf>,
    /// Page cache bound per shard in range mode, in pages.
    pub cache_pages: usize,
    /// S3 settings overriding the environment (object_store keys, e.g. `aws_endpoint`).
    pub storage_options: Vec<(String, String)>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            access: AccessMode::Auto,
            cache_dir: None,
            cache_pages: 4096,
            storage_options: Vec::new(),
        }
    }
}

/// What [`Snapshot::verify_shards`] checked of one shard file.
#[derive(Debug, Clone, Serialize)]
pub struct ShardCheck {
    pub db_id: u32,
    pub bytes: u64,
    /// "size" or "size+xxh3_128".
    pub checked: &'static str,
}

pub struct Snapshot {
    root: Root,
    manifest_path: String,
    manifest: Manifest,
    vector: Option<VectorSpec>,
    /// The vector backend in force: `custom.vector.backend`, or detected from the shard objects
    /// when a (shardyfusion) vector-only manifest names none.
    backend: Option<VectorBackend>,
    /// Vector-only snapshots: centroids / hyperplanes loaded at open.
    router: Option<Router>,
    /// Indexed by db_id; `None` for empty slots.
    shards: Vec<Option<ShardHandle>>,
    options: OpenOptions,
    /// The access mode in force (`auto` resolved).
    mode: AccessMode,
    /// Requests and bytes of every read this snapshot made (whole objects and ranges).
    stats: Arc<RangeStats>,
}

impl Snapshot {
    /// Opens the snapshot `_CURRENT` points at.
    pub fn open(root: &str) -> Result<Self> {
        Self::open_with(root, OpenOptions::default())
    }

    /// Opens the snapshot `_CURRENT` points at, with options (access mode, cache).
    ///
    /// When the current manifest is corrupt, the newest older manifests that parse are tried
    /// (up to [`FALLBACK_MANIFESTS`]), so a bad publish does not take readers down; the snapshot
    /// then reports which manifest it serves ([`Snapshot::manifest_path`]).
    pub fn open_with(root: &str, options: OpenOptions) -> Result<Self> {
        let root = Root::parse_with(root, &options.storage_options)?;
        let stats = Arc::new(RangeStats::default());
        let manifest_path = current_manifest_path_counted(&root, &stats)?;
        let first_error = match Self::open_manifest_counted(
            root.clone(),
            &manifest_path,
            options.clone(),
            stats.clone(),
        ) {
            Ok(snapshot) => return Ok(snapshot),
            Err(e @ Error::Format { .. }) => e,
            Err(other) => return Err(other),
        };
        // Only a corrupt manifest falls back; listing needs a root that can list.
        let Ok(history) = root.list_manifests() else {
            return Err(first_error);
        };
        let older = history
            .iter()
            .skip_while(|m| m.manifest_path != manifest_path)
            .skip(1)
            .take(FALLBACK_MANIFESTS);
        for candidate in older {
            if let Ok(snapshot) = Self::open_manifest_counted(
                root.clone(),
                &candidate.manifest_path,
                options.clone(),
                stats.clone(),
            ) {
                return Ok(snapshot);
            }
        }
        Err(first_error)
    }

    /// Opens one specific manifest with options (no fallback: this is exactly the one asked).
    pub fn open_manifest_with(
        root: Root,
        manifest_path: &str,
        options: OpenOptions,
    ) -> Result<Self> {
        let stats = Arc::new(RangeStats::default());
        Self::open_manifest_counted(root, manifest_path, options, stats)
    }

    /// Opens one specific manifest (`manifests/<TS>_run_id=<RUN>/manifest`, relative to root).
    pub fn open_manifest(root: Root, manifest_path: &str) -> Result<Self> {
        let stats = Arc::new(RangeStats::default());
        Self::open_manifest_counted(root, manifest_path, OpenOptions::default(), stats)
    }

    fn open_manifest_counted(
        root: Root,
        manifest_path: &str,
        options: OpenOptions,
        stats: Arc<RangeStats>,
    ) -> Result<Self> {
        let bytes = read_counted(&root, manifest_path, &stats)?;
        let manifest = Manifest::from_sqlite_bytes(&bytes).map_err(|source| Error::Format {
            location: root.location(manifest_path),
            source,
        })?;
        let vector = manifest.vector_spec().map_err(|source| Error::Format {
            location: root.location(manifest_path),
            source,
        })?;
        let mut shards: Vec<Option<ShardHandle>> =
            (0..manifest.meta.num_dbs).map(|_| None).collect();
        for entry in &manifest.shards {
            let dir = manifest
                .shard_dir_relative(entry)
                .map_err(|source| Error::Format {
                    location: root.location(manifest_path),
                    source,
                })?;
            let relative = layout::join(&dir, layout::SHARD_DB_FILE);
            shards[entry.db_id as usize] = Some(ShardHandle {
                entry: entry.clone(),
                location: root.location(&relative),
                relative,
                conn: Mutex::new(None),
                routing_checked: AtomicBool::new(false),
                #[cfg(feature = "lancedb")]
                lance: Mutex::new(None),
            });
        }
        let backend = vector.as_ref().map(|spec| match spec.backend {
            Some(backend) => backend,
            None if spec.unified => VectorBackend::SqliteVec,
            None => detect_backend(&root, &shards),
        });
        let router = match vector.as_ref() {
            Some(spec) => load_router(&root, &manifest, spec, &stats)?,
            None => None,
        };
        let mode = match (options.access, &root) {
            (AccessMode::Auto, Root::Local(_)) => AccessMode::Download,
            (AccessMode::Auto, Root::Remote(_)) => {
                let largest = manifest
                    .shards
                    .iter()
                    .map(|s| s.db_bytes)
                    .max()
                    .unwrap_or(0);
                let total: u64 = manifest.shards.iter().map(|s| s.db_bytes).sum();
                if largest >= RANGE_SHARD_BYTES || total >= RANGE_TOTAL_BYTES {
                    AccessMode::Range
                } else {
                    AccessMode::Download
                }
            }
            (explicit, _) => explicit,
        };
        Ok(Self {
            root,
            manifest_path: manifest_path.to_string(),
            manifest,
            vector,
            backend,
            router,
            shards,
            options,
            mode,
            stats,
        })
    }

    /// `(db_id, path of shard.db relative to the root)` of every non-empty shard.
    pub fn shard_db_paths(&self) -> Vec<(u32, String)> {
        self.shards
            .iter()
            .flatten()
            .map(|s| (s.entry.db_id, s.relative.clone()))
            .collect()
    }

    /// The access mode in force (`auto` resolved to `download` or `range`).
    pub fn access_mode(&self) -> AccessMode {
        self.mode
    }

    /// Requests, bytes and cache hits of every read so far (open included).
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Path of the open manifest, relative to the root.
    pub fn manifest_path(&self) -> &str {
        &self.manifest_path
    }

    pub fn vector_spec(&self) -> Option<&VectorSpec> {
        self.vector.as_ref()
    }

    pub fn info(&self) -> SnapshotInfo {
        let meta = &self.manifest.meta;
        SnapshotInfo {
            root: self.root.url(),
            run_id: meta.run_id.clone(),
            created_at: meta.created_at.clone(),
            manifest: self.manifest_path.clone(),
            num_dbs: meta.num_dbs,
            non_empty_shards: self.manifest.shards.len(),
            rows: self.manifest.shards.iter().map(|s| s.row_count).sum(),
            bytes: self.manifest.shards.iter().map(|s| s.db_bytes).sum(),
            key_encoding: meta.key_encoding.as_str(),
            key_col: meta.key_col.clone(),
            sharding: match meta.sharding.strategy {
                Strategy::Hash => "hash",
                Strategy::Cel => "cel",
            },
            vector: meta.custom.get("vector").cloned(),
        }
    }

    /// The shard slot `key` routes to.
    pub fn route(&self, key: &Key) -> Result<u32> {
        if self.manifest.meta.sharding.strategy == Strategy::Cel {
            return Err(Error::Unsupported(
                "CEL-routed snapshots cannot be routed by key in this reader".into(),
            ));
        }
        routing::shard_for_key(key, self.manifest.meta.num_dbs).map_err(Error::invalid_request)
    }

    /// The value stored under `key`, or `None` when absent.
    pub fn get(&self, key: &Key) -> Result<Option<Vec<u8>>> {
        let encoded = self
            .manifest
            .meta
            .key_encoding
            .encode(key)
            .map_err(Error::invalid_request)?;
        let db_id = self.route(key)?;
        let Some(shard) = &self.shards[db_id as usize] else {
            return Ok(None);
        };
        let value = self.with_conn(shard, |conn| {
            conn.prepare_cached("SELECT v FROM kv WHERE k = ?1")?
                .query_row([&encoded], |r| r.get(0))
                .optional()
        })?;
        if value.is_none() {
            self.check_routing_on_miss(shard)?;
        }
        Ok(value)
    }

    /// Before a shard's first "not found" is answered, checks that the shard file really holds
    /// this slot's keys: its first stored key must route to its `db_id`. A shard under the
    /// wrong manifest row (swapped or renumbered rows, another `num_dbs`) would otherwise answer
    /// "not found" for every key looked for in it. Found values need no check (a key is stored
    /// only in its own shard). Costs one read of the shard's first leaf, once per shard.
    fn check_routing_on_miss(&self, shard: &ShardHandle) -> Result<()> {
        if shard.routing_checked.load(Ordering::Relaxed) {
            return Ok(());
        }
        let first: Option<Vec<u8>> = self.with_conn(shard, |conn| {
            conn.prepare_cached("SELECT k FROM kv ORDER BY k LIMIT 1")?
                .query_row([], |r| r.get(0))
                .optional()
        })?;
        if let Some(key) = first {
            self.manifest
                .check_shard_holds_key(shard.entry.db_id, &key)
                .map_err(|e| Error::CorruptShard {
                    db_id: shard.entry.db_id,
                    location: shard.location.clone(),
                    detail: e.to_string(),
                })?;
        }
        shard.routing_checked.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Values for `keys`, in input order; `None` for absent keys. Keys are grouped per shard so
    /// each shard connection is taken once.
    pub fn multi_get(&self, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>> {
        let encoding = self.manifest.meta.key_encoding;
        let mut by_shard: Vec<Vec<(usize, Vec<u8>)>> = vec![Vec::new(); self.shards.len()];
        for (i, key) in keys.iter().enumerate() {
            let encoded = encoding.encode(key).map_err(Error::invalid_request)?;
            by_shard[self.route(key)? as usize].push((i, encoded));
        }
        let mut out = vec![None; keys.len()];
        for (db_id, wanted) in by_shard.into_iter().enumerate() {
            let Some(shard) = &self.shards[db_id] else {
                continue;
            };
            if wanted.is_empty() {
                continue;
            }
            let found = self.with_conn(shard, |conn| {
                let mut stmt = conn.prepare_cached("SELECT v FROM kv WHERE k = ?1")?;
                wanted
                    .iter()
                    .map(|(i, k)| Ok((*i, stmt.query_row([k], |r| r.get(0)).optional()?)))
                    .collect::<rusqlite::Result<Vec<(usize, Option<Vec<u8>>)>>>()
            })?;
            if found.iter().any(|(_, value)| value.is_none()) {
                self.check_routing_on_miss(shard)?;
            }
            for (i, value) in found {
                out[i] = value;
            }
        }
        Ok(out)
    }

    /// The `k` nearest vectors to `query` over the given shards (all non-empty shards when
    /// `shard_ids` is `None`, or the probed shards of a vector-routed snapshot), queried in
    /// parallel and merged. See [`Snapshot::search_with`] for filters, probes and projection.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        shard_ids: Option<&[u32]>,
    ) -> Result<SearchResponse> {
        self.search_with(
            query,
            &SearchOptions {
                k,
                shard_ids: shard_ids.map(<[u32]>::to_vec),
                ..SearchOptions::default()
            },
        )
    }

    /// The `k` nearest vectors to `query` with options: shards (probes / ids), a payload
    /// filter and a payload projection. Scores follow one convention per metric whatever the
    /// backend (`shared::vector`): lower is better.
    pub fn search_with(&self, query: &[f32], options: &SearchOptions) -> Result<SearchResponse> {
        #[cfg(not(feature = "lancedb"))]
        if self.backend == Some(VectorBackend::LanceDb) {
            return Err(Error::Unsupported(
                "this snapshot's vectors are LanceDB shards (vector_index.lance); this build of \
                 edgeshard has no LanceDB support (build with --features lancedb)"
                    .into(),
            ));
        }
        let spec = options
            .check(self.vector.as_ref(), query)
            .map_err(|e| Error::InvalidRequest(e.detail().to_string()))?;
        let k = options.k;
        let dot = match (spec.metric, spec.dot_reduction) {
            // LanceDB has an inner-product distance of its own.
            (Metric::DotProduct, None) if self.backend == Some(VectorBackend::LanceDb) => None,
            (Metric::DotProduct, None) => {
                return Err(Error::Unsupported(
                    "this dot_product snapshot on sqlite-vec records no dot_reduction: \
                     sqlite-vec has no inner-product distance, so it cannot be ranked correctly"
                        .into(),
                ))
            }
            (_, reduction) => reduction,
        };
        let selected = self.select_shards(query, spec, options)?;
        let targets: Vec<&ShardHandle> = selected
            .iter()
            .filter_map(|id| self.shards[*id as usize].as_ref())
            .collect();
        let shard_query = ShardQuery {
            bytes: match dot {
                Some(_) => vector::to_le_bytes(&DotReduction::augment_query(query)),
                None => vector::to_le_bytes(query),
            },
            query,
            metric: spec.metric,
            dim: spec.dim,
            k,
            filter: options.filter.as_ref(),
            ann: options.ann,
            dot_reduction: dot,
        };
        let per_shard = for_each_bounded(&targets, SEARCH_THREADS, |shard| {
            self.search_shard(shard, &shard_query)
        })
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
        let results = merge_top_k_distinct(per_shard, k, |hit| hit.id.clone())
            .into_iter()
            .map(|s| {
                let mut hit = s.item;
                if let Some(fields) = &options.payload_fields {
                    hit.payload = project(hit.payload.take(), fields);
                }
                hit
            })
            .collect();
        Ok(SearchResponse {
            results,
            shards_queried: targets.len(),
            shards: targets.iter().map(|s| s.entry.db_id).collect(),
        })
    }

    /// The shard ids a search covers, before dropping empty slots.
    fn select_shards(
        &self,
        query: &[f32],
        spec: &VectorSpec,
        options: &SearchOptions,
    ) -> Result<Vec<u32>> {
        let router = self.router.as_ref().unwrap_or(&Router::ByKey);
        router
            .shards_to_search(
                spec,
                self.manifest.meta.num_dbs,
                query,
                options.probes,
                options.shard_ids.as_deref(),
            )
            .map_err(|e| Error::InvalidRequest(e.detail().to_string()))
    }

    /// One shard's best hits, scores already in the reported convention. Dispatches on the
    /// backend (a LanceDB backend slots in here beside sqlite-vec).
    fn search_shard(
        &self,
        shard: &ShardHandle,
        q: &ShardQuery<'_>,
    ) -> Result<Vec<Scored<SearchHit>>> {
        match self.backend {
            #[cfg(feature = "lancedb")]
            Some(VectorBackend::LanceDb) => self.search_shard_lance(shard, q),
            #[cfg(not(feature = "lancedb"))]
            Some(VectorBackend::LanceDb) => Err(Error::Unsupported(
                "LanceDB vector shards need a build with --features lancedb".into(),
            )),
            Some(VectorBackend::SqliteVec) | None => self.search_shard_sqlite_vec(shard, q),
        }
    }

    /// LanceDB: the shard's table is opened in place (local directory or S3, never
    /// downloaded) on first use and kept; the search runs on the I/O runtime.
    #[cfg(feature = "lancedb")]
    fn search_shard_lance(
        &self,
        shard: &ShardHandle,
        q: &ShardQuery<'_>,
    ) -> Result<Vec<Scored<SearchHit>>> {
        use crate::lance::{LanceQuery, LanceShard};
        let db_id = shard.entry.db_id;
        let table = {
            let mut slot = shard
                .lance
                .lock()
                .map_err(|_| Error::poisoned("LanceDB shard"))?;
            match slot.as_ref() {
                Some(table) => table.clone(),
                None => {
                    let (uri, options) = self.lance_location(shard)?;
                    let opened = Arc::new(crate::remote::wait(async move {
                        LanceShard::open(db_id, &uri, options).await
                    })??);
                    *slot = Some(opened.clone());
                    opened
                }
            }
        };
        let defaults = self
            .vector
            .as_ref()
            .map(|v| v.ann_defaults)
            .unwrap_or_default();
        // Per-query values win over the defaults the builder recorded.
        let ann = AnnParams {
            nprobes: q.ann.nprobes.or(defaults.nprobes),
            refine_factor: q.ann.refine_factor.or(defaults.refine_factor),
            ef: q.ann.ef.or(defaults.ef),
        };
        let vector = q.query.to_vec();
        let filter = q.filter.cloned();
        let (metric, k) = (q.metric, q.k);
        let hits = crate::remote::wait(async move {
            table
                .search(&LanceQuery {
                    vector: &vector,
                    metric,
                    k,
                    filter: filter.as_ref(),
                    ann,
                })
                .await
        })??;
        Ok(hits
            .into_iter()
            .map(|h| Scored {
                score: h.score,
                item: SearchHit {
                    id: h.id,
                    score: h.score,
                    payload: h.payload,
                    shard: db_id,
                },
            })
            .collect())
    }

    /// Where a LanceDB shard's database is (the folder holding `vector_index.lance`) and the
    /// storage options to open it with.
    #[cfg(feature = "lancedb")]
    fn lance_location(&self, shard: &ShardHandle) -> Result<(String, Vec<(String, String)>)> {
        let composite = self.vector.as_ref().is_some_and(|v| v.unified);
        let relative = layout::lance_db_dir(shard_dir_of(&shard.relative), composite);
        match &self.root {
            Root::Local(base) => Ok((base.join(&relative).display().to_string(), Vec::new())),
            Root::Remote(remote) => remote.lance_location(&relative),
        }
    }

    /// sqlite-vec: exact KNN through `vec0` (`MATCH ? AND k = ?`).
    ///
    /// - With a filter, candidates are over-fetched (`4 x` what is needed, doubling up to
    ///   sqlite-vec's cap of 4096) and filtered after; when the cap is reached without enough
    ///   matches, the shard is scanned exactly (`vec_distance_*` over every row, in order), so
    ///   `k` results come back whenever `k` vectors match.
    /// - dot_product (stored as its L2 reduction): the L2 pass yields `k + max(k, 16)`
    ///   candidates, re-ranked by the exact `1 - q.v` computed from the stored vector.
    fn search_shard_sqlite_vec(
        &self,
        shard: &ShardHandle,
        q: &ShardQuery<'_>,
    ) -> Result<Vec<Scored<SearchHit>>> {
        let db_id = shard.entry.db_id;
        let corrupt = |detail: String| Error::CorruptShard {
            db_id,
            location: shard.location.clone(),
            detail,
        };
        self.plan_vector_reads(shard)?;
        if let Some(reduction) = q.dot_reduction {
            let hits = self.with_conn_try(shard, |conn| {
                exact_dot_hits(conn, q, &reduction, &corrupt, &|e| self.sql_error(shard, e))
            })?;
            return Ok(scored_hits(hits, db_id));
        }
        let dot = q.metric == Metric::DotProduct;
        let want = q.k;
        let mut hits = self.with_conn_try(shard, |conn| {
            let sql = |e: rusqlite::Error| self.sql_error(shard, e);
            let mut fetch = match q.filter {
                None => want,
                Some(_) => want.saturating_mul(4),
            }
            .min(MAX_K);
            loop {
                let rows = knn_rows(conn, q, fetch, dot).map_err(sql)?;
                let exhausted = rows.len() < fetch;
                let matched = keep_matching(rows, q.filter, want, &corrupt)?;
                if matched.len() >= want || exhausted {
                    break Ok(matched);
                }
                if fetch >= MAX_K {
                    let rows = scan_rows(conn, q, dot).map_err(sql)?;
                    break keep_matching(rows, q.filter, want, &corrupt);
                }
                fetch = (fetch * 2).min(MAX_K);
            }
        })?;
        hits.truncate(q.k);
        // sqlite-vec distances already follow the reported convention for cosine (1 - cos)
        // and l2 (Euclidean).
        Ok(scored_hits(hits, db_id))
    }

    /// Runs `f` on the shard's connection, opening it on first use; SQLite errors become
    /// [`Error::CorruptShard`] naming the shard.
    fn with_conn<T>(
        &self,
        shard: &ShardHandle,
        mut f: impl FnMut(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.with_conn_try(shard, |conn| f(conn).map_err(|e| self.sql_error(shard, e)))
    }

    /// A SQLite error on a shard. (A failed ranged read never surfaces as one: the range
    /// driver reports it itself.)
    fn sql_error(&self, shard: &ShardHandle, e: rusqlite::Error) -> Error {
        Error::CorruptShard {
            db_id: shard.entry.db_id,
            location: shard.location.clone(),
            detail: e.to_string(),
        }
    }

    /// Runs `f` on the shard's connection, opening it on first use (a shard that cannot be
    /// opened is an error naming it).
    /// In range mode `f` may run several times (see [`RangeShard::run`]): it must have no
    /// effect outside what it returns.
    fn with_conn_try<T>(
        &self,
        shard: &ShardHandle,
        f: impl FnMut(&Connection) -> Result<T>,
    ) -> Result<T> {
        let mut guard = shard
            .conn
            .lock()
            .map_err(|_| Error::poisoned(&format!("shard {} connection", shard.entry.db_id)))?;
        if guard.is_none() {
            sqlite_vec_ext::register();
            *guard = Some(self.open_shard(shard)?);
        }
        match guard.as_mut() {
            Some(ShardConn::Whole(conn)) => {
                let mut f = f;
                f(conn)
            }
            Some(ShardConn::Range(range)) => range.run(f),
            None => Err(Error::Internal(format!(
                "shard {}: connection missing after open",
                shard.entry.db_id
            ))),
        }
    }

    /// Before a search on a range-read shard: fetches its vector tables in two rounds (see
    /// [`RangeShard::plan_vector_reads`]); nothing for other shards.
    fn plan_vector_reads(&self, shard: &ShardHandle) -> Result<()> {
        // Opens the shard when needed.
        self.with_conn_try(shard, |_| Ok(()))?;
        let mut guard = shard
            .conn
            .lock()
            .map_err(|_| Error::poisoned(&format!("shard {} connection", shard.entry.db_id)))?;
        match guard.as_mut() {
            Some(ShardConn::Range(range)) => range.plan_vector_reads(),
            _ => Ok(()),
        }
    }

    /// Opens one shard's database per the access mode.
    fn open_shard(&self, shard: &ShardHandle) -> Result<ShardConn> {
        let db_id = shard.entry.db_id;
        let corrupt = |detail: String| Error::CorruptShard {
            db_id,
            location: shard.location.clone(),
            detail,
        };
        let conn = match (&self.root, self.mode) {
            (Root::Local(dir), AccessMode::Range) => {
                let path = dir.join(&shard.relative);
                self.check_local_size(&path, &shard.entry)
                    .map_err(corrupt)?;
                let source = FileSource::open(&path)?;
                // Local files have no ETag: the sidecar written beside the file is trusted.
                let sidecar = std::fs::read(sidecar_path(&path))
                    .ok()
                    .and_then(|bytes| Sidecar::parse(&bytes).ok())
                    .map(|s| s.content);
                self.open_range(shard, Box::new(source), sidecar)?
            }
            (Root::Local(dir), _) => {
                let path = dir.join(&shard.relative);
                self.check_local_size(&path, &shard.entry)
                    .map_err(corrupt)?;
                // SQLite reads the file directly here, page checks and all bypassed: the whole
                // file is hashed once at open instead (xxh3, streamed), when a hash is recorded.
                if path.is_file() && !cached_file_checks_out(&path, &shard.entry) {
                    return Err(corrupt(
                        "its content hash differs from the manifest's content_xxh3_128: the \
                         file is damaged or not this build's"
                            .into(),
                    ));
                }
                ShardConn::Whole(open_local_file(&path, db_id)?)
            }
            (Root::Remote(remote), AccessMode::Range) => {
                // The shard's ETag and its sidecar are independent: fetch both in one round.
                let (head, sidecar) = std::thread::scope(|scope| {
                    let sidecar = scope.spawn(|| self.remote_sidecar(shard));
                    let head = remote.head(&shard.relative);
                    (head, sidecar.join())
                });
                let (size, etag) = head?;
                let sidecar = sidecar
                    .map_err(|_| Error::Internal("a sidecar fetch thread panicked".into()))?;
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                self.stats.rounds.fetch_add(1, Ordering::Relaxed);
                // Another build's file (or a truncated one) under this path would otherwise be
                // read page by page as if it were this shard.
                self.check_file_size(&shard.entry, size)
                    .map_err(|e| corrupt(e.to_string()))?;
                let sidecar = sidecar
                    .filter(|s| Some(s.tag.as_str()) == etag.as_deref())
                    .map(|s| s.content);
                let source = remote.range_source(&shard.relative, size, etag);
                self.open_range(shard, Box::new(source), sidecar)?
            }
            (Root::Remote(_), _) => {
                ShardConn::Whole(open_local_file(&self.download(shard)?, db_id)?)
            }
        };
        // Reading the schema here turns "not a database" into an error at open, with the shard
        // named, instead of at the first query.
        let schema = |conn: &Connection| {
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| self.sql_error(shard, e))
        };
        match &conn {
            ShardConn::Whole(c) => schema(c)?,
            ShardConn::Range(range) => range.run(schema)?,
        };
        Ok(conn)
    }

    /// Opens a shard page by page; when its writer recorded page checksums, every page is
    /// checked before SQLite sees it.
    fn open_range(
        &self,
        shard: &ShardHandle,
        source: Box<dyn RangeSource>,
        sidecar: Option<SidecarContent>,
    ) -> Result<ShardConn> {
        let verifier = shard
            .entry
            .page_verifier()
            .map_err(|e| Error::CorruptShard {
                db_id: shard.entry.db_id,
                location: shard.location.clone(),
                detail: e.to_string(),
            })?;
        let range = RangeShard::open(
            shard.entry.db_id,
            source,
            sidecar,
            self.options.cache_pages,
            self.stats.clone(),
            verifier,
        )?;
        Ok(ShardConn::Range(range))
    }

    /// The shard's sidecar when the manifest announces one and it parses (the caller checks its
    /// tag against the live ETag); anything else means plain page reads. Counted as a request of
    /// the same round as the shard's HEAD.
    fn remote_sidecar(&self, shard: &ShardHandle) -> Option<Sidecar> {
        let config = self.manifest.meta.custom.get("sqlite_sidecar")?;
        let filename = config
            .get("filename")
            .and_then(Value::as_str)
            .unwrap_or(layout::SIDECAR_FILE);
        let relative = shard
            .relative
            .strip_suffix(layout::SHARD_DB_FILE)
            .map(|dir| format!("{dir}{filename}"))?;
        let bytes = self.root.read(&relative).ok()?;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Sidecar::parse(&bytes).ok()
    }

    /// Fetches a remote shard whole into the local cache (temp file + rename, so concurrent
    /// processes never see a partial file), or reuses a cached copy of the same checkpoint.
    fn download(&self, shard: &ShardHandle) -> Result<PathBuf> {
        let entry = &shard.entry;
        // checkpoint_id is opaque (another writer's may not be a content hash), so the run and
        // slot are part of the cache identity too.
        let slot = format!(
            "{}-db{:05}-a{:02}",
            self.manifest.meta.run_id, entry.db_id, entry.attempt
        );
        let identity = match &entry.checkpoint_id {
            Some(id) if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) => {
                format!("{slot}-{id}")
            }
            _ => slot,
        };
        let dir = self
            .options
            .cache_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("edgeshard-cache"))
            .join(identity);
        let target = dir.join(layout::SHARD_DB_FILE);
        // A cached copy is used only if it still checks out (size, and the content hash when
        // the manifest records one): a copy damaged on disk is fetched again, not served.
        if self.check_local_size(&target, entry).is_ok() && cached_file_checks_out(&target, entry) {
            return Ok(target);
        }
        let io = |location: &PathBuf| {
            let location = location.display().to_string();
            move |source| Error::Io { location, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let bytes = read_counted(&self.root, &shard.relative, &self.stats)?;
        // Checked before it enters the cache, so a body damaged in transit is an error now and
        // not an answer later.
        self.check_file_size(entry, bytes.len() as u64)
            .and_then(|()| entry.check_hash(|| edgeshard_shared::integrity::content_hash(&bytes)))
            .map_err(|e| Error::CorruptShard {
                db_id: entry.db_id,
                location: shard.location.clone(),
                detail: e.to_string(),
            })?;
        let temp = dir.join(format!(
            "{}.{}.{}.tmp",
            layout::SHARD_DB_FILE,
            std::process::id(),
            NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
        ));
        {
            let mut file = std::fs::File::create(&temp).map_err(io(&temp))?;
            std::io::Write::write_all(&mut file, &bytes).map_err(io(&temp))?;
            file.sync_all().map_err(io(&temp))?;
        }
        std::fs::rename(&temp, &target).map_err(io(&target))?;
        Ok(target)
    }

    /// A shard file's size against its row's `db_bytes`. On LanceDB snapshots `db_bytes`
    /// counts the vector table too (shardyfusion's composite shards), so it says nothing about
    /// `shard.db` alone and is not checked.
    fn check_file_size(&self, entry: &ShardEntry, size: u64) -> edgeshard_shared::Result<()> {
        match self.backend {
            Some(VectorBackend::LanceDb) => Ok(()),
            _ => entry.check_size(size),
        }
    }

    /// [`Self::check_file_size`] of a local file (a missing file is left to the open, which
    /// names it as not found).
    fn check_local_size(
        &self,
        path: &std::path::Path,
        entry: &ShardEntry,
    ) -> std::result::Result<(), String> {
        match std::fs::metadata(path) {
            Ok(meta) => self
                .check_file_size(entry, meta.len())
                .map_err(|e| e.to_string()),
            Err(_) => Ok(()),
        }
    }

    /// Checks every shard file of this snapshot against its manifest row without opening it:
    /// present, of the recorded size and, where a content hash is recorded and the file is
    /// local, of that hash (streamed). Remote files are checked by size (one HEAD each).
    /// Used before `rollback` points readers at a version, and by `edgeshard verify`.
    pub fn verify_shards(&self) -> Result<Vec<ShardCheck>> {
        let mut checks = Vec::new();
        for shard in self.shards.iter().flatten() {
            let entry = &shard.entry;
            let corrupt = |detail: String| Error::CorruptShard {
                db_id: entry.db_id,
                location: shard.location.clone(),
                detail,
            };
            // Vector-only LanceDB shards have no shard.db; their table is LanceDB's to check.
            if self.backend == Some(VectorBackend::LanceDb) && self.manifest.meta.key_col != "_key"
            {
                continue;
            }
            let (size, hashed) = match &self.root {
                Root::Local(dir) => {
                    let path = dir.join(&shard.relative);
                    let size = std::fs::metadata(&path)
                        .map_err(|_| Error::NotFound {
                            what: format!("shard {}", entry.db_id),
                            location: path.display().to_string(),
                        })?
                        .len();
                    self.check_file_size(entry, size)
                        .map_err(|e| corrupt(e.to_string()))?;
                    let hashed = entry.content_hash().is_some();
                    if hashed && !cached_file_checks_out(&path, entry) {
                        return Err(corrupt(format!(
                            "content does not match the manifest's {} {}",
                            edgeshard_shared::integrity::CONTENT_HASH_KEY,
                            entry.content_hash().unwrap_or_default()
                        )));
                    }
                    (size, hashed)
                }
                Root::Remote(remote) => {
                    let (size, _) = remote.head(&shard.relative)?;
                    self.check_file_size(entry, size)
                        .map_err(|e| corrupt(e.to_string()))?;
                    (size, false)
                }
            };
            checks.push(ShardCheck {
                db_id: entry.db_id,
                bytes: size,
                checked: if hashed { "size+xxh3_128" } else { "size" },
            });
        }
        Ok(checks)
    }

    /// Published manifests under this snapshot's root, newest first.
    pub fn history(&self) -> Result<Vec<ManifestVersion>> {
        self.root.list_manifests()
    }
}

static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// Whether a shard file exists and matches its row's content hash when one is recorded
/// (streamed, so a large file is not held in memory; the size is checked by the caller).
fn cached_file_checks_out(path: &std::path::Path, entry: &ShardEntry) -> bool {
    if !path.is_file() {
        return false;
    }
    if entry.content_hash().is_none() {
        return true;
    }
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut hasher = ContentHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match std::io::Read::read(&mut file, &mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    entry.check_hash(|| hasher.finish_hex()).is_ok()
}

/// Opens shard `db_id`'s local file read-only, immutable and memory-mapped.
fn open_local_file(path: &std::path::Path, db_id: u32) -> Result<Connection> {
    if !path.is_file() {
        return Err(Error::NotFound {
            what: "shard database".into(),
            location: path.display().to_string(),
        });
    }
    let corrupt = |e: rusqlite::Error| Error::CorruptShard {
        db_id,
        location: path.display().to_string(),
        detail: e.to_string(),
    };
    let conn = Connection::open_with_flags(
        sqlite_immutable_uri(path),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(corrupt)?;
    // Shards are immutable, so memory-mapping them is safe; it spares a read() and a copy per
    // page, which dominates brute-force vector scans.
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)
        .map_err(corrupt)?;
    Ok(conn)
}

fn sidecar_path(db_path: &std::path::Path) -> PathBuf {
    db_path.with_file_name(layout::SIDECAR_FILE)
}

/// Reads a whole object, counting it as one request.
fn read_counted(root: &Root, relative: &str, stats: &RangeStats) -> Result<Vec<u8>> {
    let bytes = root.read(relative)?;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    stats.rounds.fetch_add(1, Ordering::Relaxed);
    stats.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    Ok(bytes)
}

fn current_manifest_path_counted(root: &Root, stats: &RangeStats) -> Result<String> {
    let bytes = read_counted(root, layout::CURRENT, stats)?;
    manifest_path_from_current(root, &bytes)
}

/// The manifest `_CURRENT` points at, relative to the root.
pub fn current_manifest_path(root: &Root) -> Result<String> {
    let bytes = root.read(layout::CURRENT)?;
    manifest_path_from_current(root, &bytes)
}

fn manifest_path_from_current(root: &Root, bytes: &[u8]) -> Result<String> {
    let pointer = CurrentPointer::parse(bytes).map_err(|source| Error::Format {
        location: root.location(layout::CURRENT),
        source,
    })?;
    // The manifest URL was recorded where the snapshot was published; find it relative to
    // wherever the snapshot lives now.
    let relative =
        layout::manifest_ref_relative(&pointer.manifest_ref).map_err(|source| Error::Format {
            location: root.location(layout::CURRENT),
            source,
        })?;
    Ok(relative)
}

/// One search as every shard runs it.
struct ShardQuery<'a> {
    /// The query as the index stores vectors (augmented `[q, 0]` for dot_product).
    bytes: Vec<u8>,
    query: &'a [f32],
    metric: Metric,
    dim: usize,
    k: usize,
    filter: Option<&'a Filter>,
    #[cfg_attr(not(feature = "lancedb"), allow(dead_code))]
    ann: AnnParams,
    /// dot_product on sqlite-vec: the L2 reduction the vectors are stored with.
    dot_reduction: Option<DotReduction>,
}

/// A candidate row of a shard.
struct RawRow {
    rowid: i64,
    distance: f64,
    original_id: Option<String>,
    payload: Option<String>,
    embedding: Option<Vec<u8>>,
}

/// A candidate that passed the filter, decoded.
struct ShardHit {
    rowid: i64,
    distance: f64,
    id: VectorId,
    payload: Option<Value>,
    embedding: Option<Vec<u8>>,
}

fn read_rows(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<RawRow>> {
    let rows = stmt.query_map(params, |r| {
        Ok(RawRow {
            rowid: r.get(0)?,
            distance: r.get(1)?,
            original_id: r.get(2)?,
            payload: r.get(3)?,
            embedding: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// The `fetch` nearest rows by the index's own distance, nearest first.
fn knn_rows(
    conn: &Connection,
    q: &ShardQuery<'_>,
    fetch: usize,
    with_vectors: bool,
) -> rusqlite::Result<Vec<RawRow>> {
    let mut stmt = conn.prepare_cached(match with_vectors {
        true => search_plan::sql::KNN_WITH_VECTORS,
        false => search_plan::sql::KNN,
    })?;
    read_rows(&mut stmt, rusqlite::params![q.bytes, fetch as i64])
}

/// Every row of the shard, nearest first: the exact fallback of a filtered search, past the
/// KNN cap (same distances as the index: `vec_distance_cosine` / `vec_distance_l2`).
fn scan_rows(
    conn: &Connection,
    q: &ShardQuery<'_>,
    with_vectors: bool,
) -> rusqlite::Result<Vec<RawRow>> {
    let sql = search_plan::sql::scan(q.metric, with_vectors);
    let mut stmt = conn.prepare_cached(&sql)?;
    read_rows(&mut stmt, rusqlite::params![q.bytes])
}

/// dot_product on sqlite-vec, exact whatever the norms: the L2 pass over the augmented vectors
/// only proposes candidates, each is rescored exactly (`1 - q.v` in f64 from its stored
/// components), and more are fetched until no vector beyond the last one fetched can beat the
/// k-th best ([`DotReduction::max_dot_beyond`] bounds the f32 rounding of the index), or every
/// vector has been looked at.
fn exact_dot_hits(
    conn: &Connection,
    q: &ShardQuery<'_>,
    reduction: &DotReduction,
    corrupt: &dyn Fn(String) -> Error,
    sql: &dyn Fn(rusqlite::Error) -> Error,
) -> Result<Vec<ShardHit>> {
    let mut fetch = (q.k + q.k.max(16)).min(MAX_K);
    if q.filter.is_some() {
        fetch = fetch.saturating_mul(4).min(MAX_K);
    }
    loop {
        let (rows, complete) = if fetch < MAX_K {
            let rows = knn_rows(conn, q, fetch, true).map_err(sql)?;
            let complete = rows.len() < fetch;
            (rows, complete)
        } else {
            (scan_rows(conn, q, true).map_err(sql)?, true)
        };
        let last_distance = rows.last().map(|r| r.distance);
        let mut hits = keep_matching(rows, q.filter, usize::MAX, corrupt)?;
        for hit in &mut hits {
            let stored = hit
                .embedding
                .as_deref()
                .map(vector::from_le_bytes)
                .transpose()
                .map_err(|e| corrupt(format!("vector {}: {e}", hit.rowid)))?
                .filter(|v| v.len() == q.dim + 1)
                .ok_or_else(|| {
                    corrupt(format!(
                        "vector {} is not {} floats (dim + 1 of the dot reduction)",
                        hit.rowid,
                        q.dim + 1
                    ))
                })?;
            hit.distance = Metric::DotProduct.score(q.query, &stored[..q.dim]);
        }
        hits.sort_by(|a, b| {
            a.distance
                .total_cmp(&b.distance)
                .then(a.rowid.cmp(&b.rowid))
        });
        // Done when nothing unfetched can score better (lower `1 - q.v`) than the k-th hit.
        let settled = match (hits.get(q.k - 1), last_distance) {
            (Some(kth), Some(last)) => 1.0 - reduction.max_dot_beyond(q.query, last) > kth.distance,
            _ => false,
        };
        if complete || settled {
            hits.truncate(q.k);
            return Ok(hits);
        }
        fetch = fetch.saturating_mul(2).min(MAX_K);
    }
}

fn scored_hits(hits: Vec<ShardHit>, db_id: u32) -> Vec<Scored<SearchHit>> {
    hits.into_iter()
        .map(|h| Scored {
            score: h.distance,
            item: SearchHit {
                id: h.id,
                score: h.distance,
                payload: h.payload,
                shard: db_id,
            },
        })
        .collect()
}

/// Decodes rows in order and keeps the first `want` that pass the filter.
fn keep_matching(
    rows: Vec<RawRow>,
    filter: Option<&Filter>,
    want: usize,
    corrupt: &dyn Fn(String) -> Error,
) -> Result<Vec<ShardHit>> {
    let mut out = Vec::with_capacity(want.min(rows.len()));
    for row in rows {
        if out.len() >= want {
            break;
        }
        let payload: Option<Value> = row
            .payload
            .as_deref()
            .map(|text| {
                serde_json::from_str(text)
                    .map_err(|e| corrupt(format!("vec_payloads row {}: {e}", row.rowid)))
            })
            .transpose()?;
        if filter.is_some_and(|f| !f.matches(payload.as_ref())) {
            continue;
        }
        let id = match &row.original_id {
            Some(text) => VectorId::from_stored(text)
                .ok_or_else(|| corrupt(format!("vec_id_map row {}: {text:?}", row.rowid)))?,
            None => {
                return Err(corrupt(format!(
                    "vector {} has no vec_id_map row",
                    row.rowid
                )))
            }
        };
        out.push(ShardHit {
            rowid: row.rowid,
            distance: row.distance,
            id,
            payload,
            embedding: row.embedding,
        });
    }
    Ok(out)
}

/// The backend of a vector-only manifest that names none (shardyfusion's): `shard.db` in the
/// first non-empty shard's folder means sqlite-vec, `vector_index.lance` LanceDB. When neither
/// is found, sqlite-vec (opening the shard then fails, naming it).
/// `shards/run_id=R/db=NNNNN/attempt=AA` of `.../shard.db`.
fn shard_dir_of(relative_db: &str) -> &str {
    relative_db
        .strip_suffix(layout::SHARD_DB_FILE)
        .unwrap_or(relative_db)
        .trim_end_matches('/')
}

fn detect_backend(root: &Root, shards: &[Option<ShardHandle>]) -> VectorBackend {
    let Some(shard) = shards.iter().flatten().next() else {
        return VectorBackend::SqliteVec;
    };
    let dir = shard_dir_of(&shard.relative);
    let lance = layout::join(dir, layout::LANCE_INDEX_DIR);
    match root {
        Root::Local(base) => {
            if base.join(&shard.relative).is_file() {
                VectorBackend::SqliteVec
            } else if base.join(&lance).exists() {
                VectorBackend::LanceDb
            } else {
                VectorBackend::SqliteVec
            }
        }
        Root::Remote(remote) => match remote.head(&shard.relative) {
            Ok(_) => VectorBackend::SqliteVec,
            Err(_) => match remote.list_objects(&lance) {
                Ok(objects) if !objects.is_empty() => VectorBackend::LanceDb,
                _ => VectorBackend::SqliteVec,
            },
        },
    }
}

/// Loads the routing artifact of a vector-only snapshot (centroids / hyperplanes, NPY v1.0)
/// and builds its router, with every check of [`Router::new`]. A missing or malformed artifact
/// fails the open.
fn load_router(
    root: &Root,
    manifest: &Manifest,
    spec: &VectorSpec,
    stats: &RangeStats,
) -> Result<Option<Router>> {
    let artifact =
        search_plan::artifact_to_fetch(manifest, spec).map_err(|source| Error::Format {
            location: root.location(layout::VECTOR_META_DIR),
            source,
        })?;
    let (location, bytes) = match artifact {
        Some((relative, _)) => (
            root.location(&relative),
            Some(read_counted(root, &relative, stats)?),
        ),
        None => (root.location(layout::VECTOR_META_DIR), None),
    };
    let router = Router::new(spec, manifest.meta.num_dbs, bytes.as_deref())
        .map_err(|source| Error::Format { location, source })?;
    Ok(Some(router))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fan_out_keeps_order_caps_threads_and_reports_panics() {
        let items: Vec<u32> = (0..100).collect();
        let running = AtomicU64::new(0);
        let peak = AtomicU64::new(0);
        let results = for_each_bounded(&items, 4, |&i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(1));
            running.fetch_sub(1, Ordering::SeqCst);
            if i == 37 {
                panic!("shard 37 broke");
            }
            Ok(i * 2)
        });
        assert_eq!(results.len(), 100);
        assert!(
            peak.load(Ordering::SeqCst) <= 4,
            "more than 4 threads at once"
        );
        for (i, result) in results.iter().enumerate() {
            match result {
                Ok(v) => assert_eq!(*v, i as u32 * 2),
                // The panicking item and what its thread had finished are errors, never
                // missing or misplaced.
                Err(e) => assert!(e.to_string().contains("panicked"), "{e}"),
            }
        }
        assert!(results[37].is_err());
        assert!(results.iter().filter(|r| r.is_ok()).count() >= 70);
    }
}
