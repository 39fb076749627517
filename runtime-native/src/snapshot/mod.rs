//! An open snapshot: the manifest plus lazily opened shard connections.
//!
//! - this module: opening (`_CURRENT`, the manifest, fallback to older manifests), info, routing,
//!   history and verification;
//! - [`kv`]: key lookups;
//! - [`search`]: vector search over the shards;
//! - [`shards`]: shard handles, their connections per access mode, the download cache.

mod codes;
mod kv;
mod search;
mod shards;

use shards::{cached_file_checks_out, ShardConn, ShardHandle, Use};

use crate::error::{Error, Result};
use crate::range::{FileSource, RangeShard, RangeSource, RangeStats, StatsSnapshot};
use crate::root::{sqlite_immutable_uri, ManifestVersion, Root};
use crate::sqlite_vec_ext;
use edgeshard_shared::current::CurrentPointer;
use edgeshard_shared::filter::{project, Filter};
use edgeshard_shared::integrity::ContentHasher;
use edgeshard_shared::manifest::{ShardEntry, Strategy, VectorBackend, VectorSpec};
use edgeshard_shared::merge::{merge_top_k_distinct, Scored};
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

/// How shard databases are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessMode {
    /// Remote roots: key lookups by range; searches by range for large snapshots (a shard of
    /// 16 MiB or more, or 2 GiB in all), else download (a shard a search downloaded then
    /// serves lookups locally). Local files are read in place.
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
    /// "size" or "size+xxh3_128", and ", codes" when the shard's binary codes were checked.
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
    /// The access mode of searches (`auto` resolved); lookups: [`Snapshot::lookup_access_mode`].
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
                cells: std::sync::OnceLock::new(),
                codes: std::sync::OnceLock::new(),
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

    /// The access mode searches use (`auto` resolved to `download` or `range`).
    pub fn access_mode(&self) -> AccessMode {
        self.mode
    }

    /// The access mode key lookups use on a shard not yet open: under `auto` on a remote root,
    /// `range` (a shard already downloaded, by a search or in the cache, is read locally).
    pub fn lookup_access_mode(&self) -> AccessMode {
        self.mode_for(Use::Lookup)
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
            // Binary codes beside the shard: read whole and checked like a search would.
            let codes = entry
                .writer_info
                .contains_key(edgeshard_shared::codes::FILE_KEY);
            if let Some(spec) = self.vector.as_ref().filter(|_| codes) {
                self.shard_codes(shard, spec)?;
            }
            checks.push(ShardCheck {
                db_id: entry.db_id,
                bytes: size,
                checked: match (hashed, codes) {
                    (true, true) => "size+xxh3_128, codes",
                    (true, false) => "size+xxh3_128",
                    (false, true) => "size, codes",
                    (false, false) => "size",
                },
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
