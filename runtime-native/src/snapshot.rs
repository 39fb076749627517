//! An open snapshot: the manifest plus lazily opened shard connections.

use crate::error::{Error, Result};
use crate::root::{sqlite_immutable_uri, ManifestVersion, Root};
use crate::sqlite_vec_ext;
use edgeshard_shared::current::CurrentPointer;
use edgeshard_shared::manifest::{ShardEntry, Strategy, VectorBackend, VectorSpec};
use edgeshard_shared::merge::{merge_top_k, Scored};
use edgeshard_shared::{layout, routing, vector, Key, Manifest};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Mutex;

/// sqlite-vec refuses k above this.
pub const MAX_K: usize = 4096;

/// Upper bound of the memory map per shard connection (address space, not resident memory).
const MMAP_BYTES: i64 = 1 << 32;

/// A vector id with the type it was written with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum VectorId {
    Int(i64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub id: VectorId,
    /// Distance in the snapshot metric's convention: lower is better (see `shared::vector`).
    pub score: f64,
    pub payload: Option<Value>,
    /// The shard the hit came from.
    pub shard: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResponse {
    pub results: Vec<SearchHit>,
    pub shards_queried: usize,
}

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
    path: PathBuf,
    /// Opened on first use; a shard that is never queried is never opened.
    conn: Mutex<Option<Connection>>,
}

pub struct Snapshot {
    root: Root,
    manifest_path: String,
    manifest: Manifest,
    vector: Option<VectorSpec>,
    /// Indexed by db_id; `None` for empty slots.
    shards: Vec<Option<ShardHandle>>,
}

impl Snapshot {
    /// Opens the snapshot `_CURRENT` points at.
    pub fn open(root: &str) -> Result<Self> {
        let root = Root::parse(root)?;
        let manifest_path = current_manifest_path(&root)?;
        Self::open_manifest(root, &manifest_path)
    }

    /// Opens one specific manifest (`manifests/<TS>_run_id=<RUN>/manifest`, relative to root).
    pub fn open_manifest(root: Root, manifest_path: &str) -> Result<Self> {
        let bytes = root.read(manifest_path)?;
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
            let dir = entry
                .db_url
                .as_deref()
                .and_then(|url| {
                    layout::relative_to_root(url, &manifest.meta.s3_prefix, layout::SHARDS_DIR)
                })
                .map(str::to_string)
                .unwrap_or_else(|| {
                    layout::shard_dir(&manifest.meta.run_id, entry.db_id, entry.attempt)
                });
            shards[entry.db_id as usize] = Some(ShardHandle {
                entry: entry.clone(),
                path: root.local_path(&layout::join(&dir, layout::SHARD_DB_FILE)),
                conn: Mutex::new(None),
            });
        }
        Ok(Self {
            root,
            manifest_path: manifest_path.to_string(),
            manifest,
            vector,
            shards,
        })
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
        self.with_conn(shard, |conn| {
            conn.prepare_cached("SELECT v FROM kv WHERE k = ?1")?
                .query_row([&encoded], |r| r.get(0))
                .optional()
        })
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
            for (i, value) in found {
                out[i] = value;
            }
        }
        Ok(out)
    }

    /// The `k` nearest vectors to `query` over the given shards (all non-empty shards when
    /// `shard_ids` is `None`), queried in parallel and merged.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        shard_ids: Option<&[u32]>,
    ) -> Result<SearchResponse> {
        let spec = self.vector.as_ref().ok_or_else(|| {
            Error::InvalidRequest("this snapshot has no vectors (no custom.vector)".into())
        })?;
        if spec.backend == Some(VectorBackend::LanceDb) {
            return Err(Error::Unsupported(
                "LanceDB vector shards are not supported by this build yet".into(),
            ));
        }
        if !(1..=MAX_K).contains(&k) {
            return Err(Error::InvalidRequest(format!(
                "k must be between 1 and {MAX_K}, got {k}"
            )));
        }
        vector::check_vector(query, spec.dim, spec.metric)
            .map_err(|e| Error::InvalidRequest(format!("query vector: {e}")))?;
        let targets: Vec<&ShardHandle> = match shard_ids {
            None => self.shards.iter().flatten().collect(),
            Some(ids) => {
                let mut ids = ids.to_vec();
                ids.sort_unstable();
                ids.dedup();
                let mut targets = Vec::new();
                for id in ids {
                    let slot = self.shards.get(id as usize).ok_or_else(|| {
                        Error::InvalidRequest(format!(
                            "shard {id} does not exist (num_dbs is {})",
                            self.shards.len()
                        ))
                    })?;
                    targets.extend(slot.as_ref());
                }
                targets
            }
        };
        let query_bytes = vector::to_le_bytes(query);
        let per_shard: Vec<Result<Vec<Scored<SearchHit>>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = targets
                .iter()
                .map(|shard| {
                    let query_bytes = &query_bytes;
                    scope.spawn(move || self.search_shard(shard, query_bytes, k))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Unsupported("a shard search thread panicked".into()))
                    })
                })
                .collect()
        });
        let per_shard = per_shard.into_iter().collect::<Result<Vec<_>>>()?;
        let results = merge_top_k(per_shard, k)
            .into_iter()
            .map(|s| s.item)
            .collect();
        Ok(SearchResponse {
            results,
            shards_queried: targets.len(),
        })
    }

    fn search_shard(
        &self,
        shard: &ShardHandle,
        query_bytes: &[u8],
        k: usize,
    ) -> Result<Vec<Scored<SearchHit>>> {
        let db_id = shard.entry.db_id;
        let rows = self.with_conn(shard, |conn| {
            let mut stmt = conn.prepare_cached(
                "WITH knn AS MATERIALIZED (
                     SELECT rowid, distance FROM vec_index WHERE embedding MATCH ?1 AND k = ?2
                 )
                 SELECT knn.rowid, knn.distance, m.original_id, p.payload
                 FROM knn
                 LEFT JOIN vec_id_map m ON m.internal_id = knn.rowid
                 LEFT JOIN vec_payloads p ON p.rowid = knn.rowid
                 ORDER BY knn.distance, knn.rowid",
            )?;
            let rows = stmt.query_map(rusqlite::params![query_bytes, k as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, f64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(rowid, distance, original_id, payload)| {
                let corrupt = |detail: String| Error::CorruptShard {
                    db_id,
                    location: shard.path.display().to_string(),
                    detail,
                };
                let id = match original_id {
                    Some(text) => parse_original_id(&text)
                        .ok_or_else(|| corrupt(format!("vec_id_map row {rowid}: {text:?}")))?,
                    None => return Err(corrupt(format!("vector {rowid} has no vec_id_map row"))),
                };
                let payload = payload
                    .map(|text| {
                        serde_json::from_str(&text)
                            .map_err(|e| corrupt(format!("vec_payloads row {rowid}: {e}")))
                    })
                    .transpose()?;
                // sqlite-vec distances already follow the reported convention for cosine
                // (1 - cos) and l2 (Euclidean); dot_product never reaches sqlite-vec.
                Ok(Scored {
                    score: distance,
                    item: SearchHit {
                        id,
                        score: distance,
                        payload,
                        shard: db_id,
                    },
                })
            })
            .collect()
    }

    /// Runs `f` on the shard's connection, opening it on first use.
    fn with_conn<T>(
        &self,
        shard: &ShardHandle,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let corrupt = |detail: String| Error::CorruptShard {
            db_id: shard.entry.db_id,
            location: shard.path.display().to_string(),
            detail,
        };
        let mut guard = shard
            .conn
            .lock()
            .map_err(|_| corrupt("connection lock poisoned by an earlier panic".into()))?;
        if guard.is_none() {
            if !shard.path.is_file() {
                return Err(Error::NotFound {
                    what: format!("shard {} database", shard.entry.db_id),
                    location: shard.path.display().to_string(),
                });
            }
            sqlite_vec_ext::register();
            let conn = Connection::open_with_flags(
                sqlite_immutable_uri(&shard.path),
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| corrupt(e.to_string()))?;
            // Shards are immutable, so memory-mapping them is safe; it spares a read() and a
            // copy per page, which dominates brute-force vector scans.
            conn.pragma_update(None, "mmap_size", MMAP_BYTES)
                .map_err(|e| corrupt(e.to_string()))?;
            // Reading the schema here turns "not a database" into an error at open, with the
            // shard named, instead of at the first query.
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| corrupt(e.to_string()))?;
            *guard = Some(conn);
        }
        let conn = guard
            .as_ref()
            .ok_or_else(|| corrupt("connection missing after open".into()))?;
        f(conn).map_err(|e| corrupt(e.to_string()))
    }

    /// Published manifests under this snapshot's root, newest first.
    pub fn history(&self) -> Result<Vec<ManifestVersion>> {
        self.root.list_manifests()
    }
}

/// The manifest `_CURRENT` points at, relative to the root.
pub fn current_manifest_path(root: &Root) -> Result<String> {
    let bytes = root.read(layout::CURRENT)?;
    let pointer = CurrentPointer::parse(&bytes).map_err(|source| Error::Format {
        location: root.location(layout::CURRENT),
        source,
    })?;
    // The manifest URL was recorded where the snapshot was published; find it relative to
    // wherever the snapshot lives now.
    let relative = pointer
        .manifest_ref
        .find(&format!("{}/", layout::MANIFESTS_DIR))
        .map(|i| pointer.manifest_ref[i..].to_string())
        .ok_or_else(|| Error::Format {
            location: root.location(layout::CURRENT),
            source: edgeshard_shared::Error::InvalidCurrent(format!(
                "manifest_ref {:?} is not under manifests/",
                pointer.manifest_ref
            )),
        })?;
    Ok(relative)
}

/// `{"v": 7, "t": "int"}` / `{"v": "a", "t": "str"}` from `vec_id_map.original_id`.
fn parse_original_id(text: &str) -> Option<VectorId> {
    let value: Value = serde_json::from_str(text).ok()?;
    match (value.get("t")?.as_str()?, value.get("v")?) {
        ("int", v) => v.as_i64().map(VectorId::Int),
        ("str", v) => v.as_str().map(|s| VectorId::Str(s.to_string())),
        _ => None,
    }
}
