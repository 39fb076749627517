//! The manifest: a small SQLite database describing one snapshot run (format version 4).
//!
//! Parsing and writing go through SQLite's in-memory `deserialize`/`serialize`, so this module
//! handles bytes only and runs unchanged on wasm32 (rusqlite there sits on sqlite-wasm-rs).

use crate::error::{Error, Result};
use crate::json::{to_string_sorted, Style};
use crate::key::KeyEncoding;
use crate::vector::{AnnParams, DotReduction, Metric};
use crate::vector_routing::{VectorStrategy, MAX_HASH_BITS};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Map, Value};
use std::collections::HashSet;

/// The manifest format version this crate reads and writes (`build_meta.format_version`).
pub const FORMAT_VERSION: i64 = 4;
/// The first 16 bytes of every SQLite database: a manifest without them is refused early.
pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Page size of the manifests this crate writes.
pub const PAGE_SIZE: u32 = 4096;
/// The only key hash routing supports (`build_meta.sharding.hash_algorithm`).
pub const HASH_ALGORITHM: &str = "xxh3_64";
/// The most shard slots a manifest may have: what the builder accepts. A reader allocates per
/// slot, so an unbounded `num_dbs` (10^8, 2^32-1) would exhaust memory instead of failing.
pub const MAX_NUM_DBS: u32 = 65_536;
/// `key_col` of KV and unified snapshots.
pub const KEY_COL_KV: &str = "_key";
/// `key_col` of vector-only snapshots.
pub const KEY_COL_VECTOR: &str = "_vector_id";

/// The manifest DDL exactly as shardyfusion writes it (same text in `sqlite_master`).
pub const BUILD_META_DDL: &str = "CREATE TABLE build_meta (
    run_id           TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    num_dbs          INTEGER NOT NULL,
    s3_prefix        TEXT    NOT NULL,
    key_col          TEXT    NOT NULL,
    sharding         TEXT    NOT NULL,
    db_path_template TEXT    NOT NULL,
    shard_prefix     TEXT    NOT NULL,
    format_version   INTEGER NOT NULL,
    key_encoding     TEXT    NOT NULL,
    custom           TEXT    NOT NULL DEFAULT '{}'
)";
/// The `shards` table DDL exactly as shardyfusion writes it (same text in `sqlite_master`).
pub const SHARDS_DDL: &str = "CREATE TABLE shards (
    db_id         INTEGER NOT NULL PRIMARY KEY,
    db_url        TEXT,
    attempt       INTEGER NOT NULL,
    row_count     INTEGER NOT NULL,
    db_bytes      INTEGER NOT NULL,
    min_key       TEXT,
    max_key       TEXT,
    checkpoint_id TEXT,
    writer_info   TEXT    NOT NULL DEFAULT '{}'
)";

const SHARDING_KEYS: [&str; 5] = [
    "strategy",
    "hash_algorithm",
    "routing_values",
    "cel_expr",
    "cel_columns",
];

/// How keys were routed to shard slots (`sharding.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// xxh3-64 of the key modulo `num_dbs` ([`crate::routing`]); what `edgeshard build`
    /// writes.
    Hash,
    /// A CEL expression chose each record's slot (shardyfusion): `cel_expr` is required and
    /// `routing_values`, when present (categorical), holds one value per slot.
    Cel,
}

/// `build_meta.sharding`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sharding {
    /// How keys were routed.
    pub strategy: Strategy,
    /// The key hash; always [`HASH_ALGORITHM`] in a valid manifest.
    pub hash_algorithm: String,
    /// Categorical CEL routing: the value each slot holds, one per slot (`num_dbs` of them).
    pub routing_values: Option<Vec<Value>>,
    /// The CEL expression of [`Strategy::Cel`].
    pub cel_expr: Option<String>,
    /// Columns the CEL expression reads, as the writer recorded them (kept, not interpreted).
    pub cel_columns: Option<Map<String, Value>>,
}

impl Sharding {
    /// Plain hash routing, what `edgeshard build` writes.
    pub fn hash() -> Self {
        Self {
            strategy: Strategy::Hash,
            hash_algorithm: HASH_ALGORITHM.into(),
            routing_values: None,
            cel_expr: None,
            cel_columns: None,
        }
    }

    /// The JSON object stored in `build_meta.sharding` (all five keys, `null` when unset).
    pub fn to_json(&self) -> Value {
        json!({
            "strategy": match self.strategy { Strategy::Hash => "hash", Strategy::Cel => "cel" },
            "hash_algorithm": self.hash_algorithm,
            "routing_values": self.routing_values,
            "cel_expr": self.cel_expr,
            "cel_columns": self.cel_columns,
        })
    }

    /// Parses the JSON text; any key beyond the five known ones makes the manifest invalid
    /// (an unknown routing rule must never be silently ignored).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: String| Error::InvalidManifest(format!("sharding: {why}"));
        let value: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not JSON ({e})")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        if let Some(extra) = obj.keys().find(|k| !SHARDING_KEYS.contains(&k.as_str())) {
            return Err(bad(format!("unknown key {extra:?}")));
        }
        let strategy = match obj.get("strategy").and_then(Value::as_str) {
            Some("hash") => Strategy::Hash,
            Some("cel") => Strategy::Cel,
            other => {
                return Err(bad(format!(
                    "strategy {other:?} is not \"hash\" or \"cel\""
                )))
            }
        };
        let hash_algorithm = match obj.get("hash_algorithm").and_then(Value::as_str) {
            Some(HASH_ALGORITHM) => HASH_ALGORITHM.to_string(),
            Some(other) => return Err(bad(format!("hash_algorithm {other:?} is not \"xxh3_64\""))),
            None => return Err(bad("hash_algorithm is missing".into())),
        };
        let routing_values = match obj.get("routing_values") {
            None | Some(Value::Null) => None,
            Some(Value::Array(values)) => Some(values.clone()),
            Some(_) => return Err(bad("routing_values is not a list".into())),
        };
        let cel_expr = match obj.get("cel_expr") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("cel_expr is not a string".into())),
        };
        let cel_columns = match obj.get("cel_columns") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(_) => return Err(bad("cel_columns is not an object".into())),
        };
        Ok(Self {
            strategy,
            hash_algorithm,
            routing_values,
            cel_expr,
            cel_columns,
        })
    }
}

/// The single row of `build_meta`.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildMeta {
    /// The build's run id: part of the manifest's and the shards' paths.
    pub run_id: String,
    /// When the build started, `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC).
    pub created_at: String,
    /// Shard slots including empty ones: the routing modulus.
    pub num_dbs: u32,
    /// The snapshot root the writer published to.
    pub s3_prefix: String,
    /// Name of the key column: [`KEY_COL_KV`] or [`KEY_COL_VECTOR`].
    pub key_col: String,
    /// How keys were routed to slots.
    pub sharding: Sharding,
    /// Folder name of a shard slot, as a Python format string ([`crate::layout::DB_PATH_TEMPLATE`]).
    pub db_path_template: String,
    /// Folder of the shards under the root ([`crate::layout::SHARDS_DIR`]).
    pub shard_prefix: String,
    /// Always [`FORMAT_VERSION`] in a manifest this crate accepts.
    pub format_version: i64,
    /// How keys are stored in the shards' `kv` tables.
    pub key_encoding: KeyEncoding,
    /// `custom` JSON object (vector config, sidecar config, anything else a writer adds).
    pub custom: Map<String, Value>,
}

/// One row of `shards` (non-empty shards only).
#[derive(Debug, Clone, PartialEq)]
pub struct ShardEntry {
    /// The shard's slot, `0..num_dbs`.
    pub db_id: u32,
    /// Full URL of the shard folder (`.../attempt=AA`).
    pub db_url: Option<String>,
    /// The writer attempt that produced the published shard (its `attempt=AA` folder).
    pub attempt: u32,
    /// Records in the shard.
    pub row_count: u64,
    /// Size of `shard.db` in bytes; readers refuse a file of another size.
    pub db_bytes: u64,
    /// The shard's smallest key in [`crate::Key::to_json`]'s form, when recorded.
    pub min_key: Option<Value>,
    /// The shard's largest key, as `min_key`.
    pub max_key: Option<Value>,
    /// Opaque content identity, used as a cache key.
    pub checkpoint_id: Option<String>,
    /// The writer's own JSON object; edgeshard keeps the page-checksum seed and the content hash
    /// there ([`crate::integrity`]).
    pub writer_info: Map<String, Value>,
}

/// Which engine stores a snapshot's vectors (`custom.vector.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorBackend {
    /// `vec0` tables of sqlite-vec inside each shard's SQLite database.
    SqliteVec,
    /// A LanceDB dataset per shard (the reader's `lancedb` feature).
    LanceDb,
}

impl VectorBackend {
    /// The name recorded in `custom.vector.backend`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SqliteVec => "sqlite-vec",
            Self::LanceDb => "lancedb",
        }
    }
}

/// `custom.vector`, the part readers need.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSpec {
    /// Dimension of every stored vector and of queries.
    pub dim: usize,
    /// The metric scores are reported in ([`crate::vector`]).
    pub metric: Metric,
    /// `None` on shardyfusion's vector-only manifests, which name no backend.
    pub backend: Option<VectorBackend>,
    /// KV and vectors in one snapshot (a record's vector id is its key).
    pub unified: bool,
    /// How vectors were routed to shards, for vector-only snapshots (`sharding_strategy`);
    /// `None` when rows are routed by key (unified snapshots).
    pub routing: Option<VectorRouting>,
    /// `dot_reduction`: how dot_product is stored in an L2-only index (see
    /// [`DotReduction`]); `None` for cosine and l2.
    pub dot_reduction: Option<DotReduction>,
    /// Query defaults of indexed shards (`index_params`: nprobes, refine_factor, ef).
    pub ann_defaults: AnnParams,
    /// `index_type` as recorded ("flat", or a LanceDB index such as "IVF_HNSW_SQ").
    pub index_type: Option<String>,
    /// `quantization` as recorded (`null` for full-precision vectors).
    pub quantization: Option<String>,
    /// `index_params` as recorded (build and query parameters of the index), whole.
    pub index_params: Option<Value>,
    /// `kv_backend` of unified snapshots ("sqlite-vec": one file; "sqlite": SQLite KV beside
    /// LanceDB vectors).
    pub kv_backend: Option<String>,
}

impl VectorSpec {
    /// Reads `custom.vector` (the writer side is [`VectorSpec::to_json`]), with every check of
    /// the format: an error names the key that is wrong.
    pub fn from_json(vector: &Value) -> Result<VectorSpec> {
        let bad = |why: &str| Error::InvalidManifest(format!("custom.vector: {why}"));
        let obj = vector.as_object().ok_or_else(|| bad("not an object"))?;
        let dim = obj
            .get("dim")
            .and_then(Value::as_u64)
            .filter(|d| *d > 0)
            .ok_or_else(|| bad("dim is missing or not a positive integer"))?;
        let metric = Metric::parse(
            obj.get("metric")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("metric is missing"))?,
        )
        .map_err(|e| bad(&e.to_string()))?;
        let backend = match obj.get("backend").and_then(Value::as_str) {
            None => None,
            Some("sqlite-vec") => Some(VectorBackend::SqliteVec),
            Some("lancedb") => Some(VectorBackend::LanceDb),
            Some(other) => return Err(bad(&format!("unknown backend {other:?}"))),
        };
        let text = |key: &str| -> Result<Option<String>> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(&format!("{key} is not a string"))),
            }
        };
        let routing = match text("sharding_strategy")? {
            None => None,
            Some(name) => {
                let strategy = VectorStrategy::parse(&name).map_err(|e| bad(&e.to_string()))?;
                let num_probes = match obj.get("num_probes") {
                    None | Some(Value::Null) => 1,
                    Some(v) => v
                        .as_u64()
                        .filter(|p| (1..=u32::MAX as u64).contains(p))
                        .ok_or_else(|| bad("num_probes is not a positive integer"))?
                        as u32,
                };
                let num_hash_bits = match obj.get("num_hash_bits") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(
                        v.as_u64()
                            .filter(|b| (1..=MAX_HASH_BITS as u64).contains(b))
                            .ok_or_else(|| {
                                bad(&format!(
                                    "num_hash_bits is not an integer in 1..={MAX_HASH_BITS}"
                                ))
                            })? as u32,
                    ),
                };
                let routing = VectorRouting {
                    strategy,
                    num_probes,
                    centroids_ref: text("centroids_ref")?,
                    hyperplanes_ref: text("hyperplanes_ref")?,
                    num_hash_bits,
                    total_vectors: obj.get("total_vectors").and_then(Value::as_u64),
                    spill_fraction: obj.get("spill_fraction").and_then(Value::as_f64),
                };
                match strategy {
                    VectorStrategy::Cluster if routing.centroids_ref.is_none() => {
                        return Err(bad("cluster sharding without centroids_ref"))
                    }
                    VectorStrategy::Lsh if routing.hyperplanes_ref.is_none() => {
                        return Err(bad("lsh sharding without hyperplanes_ref"))
                    }
                    _ => {}
                }
                Some(routing)
            }
        };
        let dot_reduction = match obj.get("dot_reduction") {
            None | Some(Value::Null) => None,
            Some(r) => {
                let method = r.get("method").and_then(Value::as_str);
                if method != Some(DotReduction::METHOD) {
                    return Err(bad(&format!(
                        "dot_reduction method {method:?} is not {:?}",
                        DotReduction::METHOD
                    )));
                }
                let max_norm = r
                    .get("max_norm")
                    .and_then(Value::as_f64)
                    .filter(|m| m.is_finite() && *m > 0.0)
                    .ok_or_else(|| bad("dot_reduction max_norm is not a positive number"))?;
                if metric != Metric::DotProduct {
                    return Err(bad("dot_reduction on a metric other than dot_product"));
                }
                Some(DotReduction { max_norm })
            }
        };
        Ok(VectorSpec {
            dim: dim as usize,
            metric,
            backend,
            unified: obj.get("unified").and_then(Value::as_bool).unwrap_or(false),
            routing,
            dot_reduction,
            ann_defaults: obj
                .get("index_params")
                .map(AnnParams::from_index_params)
                .unwrap_or_default(),
            index_type: text("index_type")?,
            quantization: text("quantization")?,
            index_params: obj.get("index_params").filter(|v| !v.is_null()).cloned(),
            kv_backend: text("kv_backend")?,
        })
    }

    /// `custom.vector` as the builder writes it (the reader side is [`Manifest::vector_spec`]:
    /// `vector_spec` of this JSON gives back this spec). Keys absent from the spec are not
    /// written, except `quantization`, which the format always carries (`null`).
    pub fn to_json(&self) -> Value {
        let mut vector = serde_json::Map::new();
        let mut put = |key: &str, value: Value| {
            vector.insert(key.to_string(), value);
        };
        if let Some(backend) = self.backend {
            put(
                "backend",
                match backend {
                    VectorBackend::SqliteVec => "sqlite-vec",
                    VectorBackend::LanceDb => "lancedb",
                }
                .into(),
            );
        }
        put("dim", self.dim.into());
        put("metric", self.metric.as_str().into());
        if let Some(index_type) = &self.index_type {
            put("index_type", index_type.as_str().into());
        }
        put("quantization", self.quantization.clone().into());
        if let Some(params) = &self.index_params {
            put("index_params", params.clone());
        }
        if let Some(kv_backend) = &self.kv_backend {
            put("kv_backend", kv_backend.as_str().into());
        }
        if self.unified {
            put("unified", true.into());
        }
        if let Some(routing) = &self.routing {
            put("sharding_strategy", routing.strategy.as_str().into());
            put("num_probes", routing.num_probes.into());
            if let Some(total) = routing.total_vectors {
                put("total_vectors", total.into());
            }
            if let Some(spill) = routing.spill_fraction {
                put("spill_fraction", spill.into());
            }
            if let Some(centroids) = &routing.centroids_ref {
                put("centroids_ref", centroids.as_str().into());
            }
            if let Some(hyperplanes) = &routing.hyperplanes_ref {
                put("hyperplanes_ref", hyperplanes.as_str().into());
            }
            if let Some(bits) = routing.num_hash_bits {
                put("num_hash_bits", bits.into());
            }
        }
        if let Some(dot) = &self.dot_reduction {
            put(
                "dot_reduction",
                serde_json::json!({"method": DotReduction::METHOD, "max_norm": dot.max_norm}),
            );
        }
        Value::Object(vector)
    }
}

/// The vector routing keys of a vector-only `custom.vector` (format spec section 3 and 7).
#[derive(Debug, Clone, PartialEq)]
pub struct VectorRouting {
    /// How vectors were assigned to shards.
    pub strategy: VectorStrategy,
    /// Shards a query probes by default (cluster, lsh).
    pub num_probes: u32,
    /// URL of `centroids.npy` as recorded (cluster).
    pub centroids_ref: Option<String>,
    /// URL of `hyperplanes.npy` as recorded (lsh).
    pub hyperplanes_ref: Option<String>,
    /// Bits of the LSH code (lsh), when recorded.
    pub num_hash_bits: Option<u32>,
    /// Vectors in the snapshot, when the writer recorded it.
    pub total_vectors: Option<u64>,
    /// Cluster routing: the fraction of vectors also stored in their second-nearest shard
    /// (edgeshard only; shardyfusion readers ignore it).
    pub spill_fraction: Option<f64>,
}

/// `custom` key of edgeshard's record of its shard rows: `{"shard_rows": N, "rows": N}` (how
/// many rows the `shards` table has and the sum of their `row_count`), so a deleted or altered
/// row is detected. Other readers ignore it.
pub const SHARD_TOTALS_KEY: &str = "edgeshard_shard_totals";

/// A parsed manifest: `build_meta` and the `shards` rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The single `build_meta` row.
    pub meta: BuildMeta,
    /// Sorted by `db_id`.
    pub shards: Vec<ShardEntry>,
}

impl Manifest {
    /// Where shard `entry`'s folder (`shards/run_id=R/db=NNNNN/attempt=AA`) lies relative to
    /// the snapshot root: from its recorded `db_url` (resolved against the recorded root, so a
    /// copied or re-hosted snapshot still works), else from the layout.
    ///
    /// Normalised, and refused when it would leave the root (`..`): a manifest can name only
    /// files of its own snapshot.
    pub fn shard_dir_relative(&self, entry: &ShardEntry) -> Result<String> {
        let relative = entry
            .db_url
            .as_deref()
            .and_then(|url| {
                crate::layout::relative_to_root(
                    url,
                    &self.meta.s3_prefix,
                    crate::layout::SHARDS_DIR,
                )
            })
            .map(str::to_string)
            .unwrap_or_else(|| {
                crate::layout::shard_dir(&self.meta.run_id, entry.db_id, entry.attempt)
            });
        crate::layout::normalize_relative(&relative).map_err(|e| {
            Error::InvalidManifest(format!(
                "shard {}: db_url {:?}: {e}",
                entry.db_id, entry.db_url
            ))
        })
    }

    /// Where a vector routing artifact (`centroids_ref`, `hyperplanes_ref`, as recorded) lies
    /// relative to the root, normalised and refused when it would leave the root; the layout's
    /// `vector_meta/run_id=<RUN>/<file>` when none is recorded.
    pub fn artifact_relative(&self, recorded: Option<&str>, file: &str) -> Result<String> {
        let relative = recorded
            .and_then(|url| {
                crate::layout::relative_to_root(
                    url,
                    &self.meta.s3_prefix,
                    crate::layout::VECTOR_META_DIR,
                )
            })
            .map(str::to_string)
            .unwrap_or_else(|| crate::layout::vector_meta_path(&self.meta.run_id, file));
        crate::layout::normalize_relative(&relative)
            .map_err(|e| Error::InvalidManifest(format!("{file} reference {recorded:?}: {e}")))
    }

    /// Every file and folder this manifest makes readers use, relative to the root: each
    /// shard's folder and the vector routing artifact. What `cleanup` must never remove while
    /// the manifest is kept, whatever run ids the folder names carry.
    pub fn referenced_paths(&self) -> Result<Vec<String>> {
        let mut paths = self
            .shards
            .iter()
            .map(|entry| self.shard_dir_relative(entry))
            .collect::<Result<Vec<_>>>()?;
        if let Some(spec) = self.vector_spec()? {
            if let Some((artifact, _)) = crate::search_plan::artifact_to_fetch(self, &spec)? {
                paths.push(artifact);
            }
        }
        Ok(paths)
    }

    /// The row of shard `db_id`, or `None` when that slot is empty.
    pub fn shard(&self, db_id: u32) -> Option<&ShardEntry> {
        self.shards
            .binary_search_by_key(&db_id, |s| s.db_id)
            .ok()
            .map(|i| &self.shards[i])
    }

    /// `custom.vector`, if this snapshot holds vectors.
    pub fn vector_spec(&self) -> Result<Option<VectorSpec>> {
        self.meta
            .custom
            .get("vector")
            .map(VectorSpec::from_json)
            .transpose()
    }

    /// Every rule of the format (spec section 3). Called by the parser and by writers before
    /// anything is published.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidManifest(why));
        let meta = &self.meta;
        if meta.format_version != FORMAT_VERSION {
            return bad(format!(
                "format_version is {}, this reader understands {FORMAT_VERSION}",
                meta.format_version
            ));
        }
        if meta.num_dbs == 0 || meta.num_dbs > MAX_NUM_DBS {
            return bad(format!(
                "num_dbs is {}, must be 1..={MAX_NUM_DBS}",
                meta.num_dbs
            ));
        }
        if self.shards.len() > meta.num_dbs as usize {
            return bad(format!(
                "{} shard rows but num_dbs is {}",
                self.shards.len(),
                meta.num_dbs
            ));
        }
        let mut seen = HashSet::new();
        for shard in &self.shards {
            if shard.db_id >= meta.num_dbs {
                return bad(format!(
                    "shard db_id {} is not below num_dbs {}",
                    shard.db_id, meta.num_dbs
                ));
            }
            if !seen.insert(shard.db_id) {
                return bad(format!("shard db_id {} appears twice", shard.db_id));
            }
        }
        // Totals must be representable as SQLite integers (i64): `info`, the builder's summary
        // and other readers add them up.
        let total = |field: fn(&ShardEntry) -> u64| {
            self.shards
                .iter()
                .try_fold(0u64, |sum, shard| sum.checked_add(field(shard)))
                .filter(|sum| *sum <= i64::MAX as u64)
        };
        if total(|s| s.row_count).is_none() || total(|s| s.db_bytes).is_none() {
            return bad(
                "the shards' row_count or db_bytes add up to more than a 64-bit integer holds"
                    .into(),
            );
        }
        self.check_recorded_totals()?;
        self.check_key_ranges_route_to_their_shards()?;
        let sharding = &meta.sharding;
        if sharding.hash_algorithm != HASH_ALGORITHM {
            return bad(format!(
                "hash_algorithm {:?} is not {HASH_ALGORITHM:?}",
                sharding.hash_algorithm
            ));
        }
        if sharding.strategy == Strategy::Cel {
            if sharding.cel_expr.is_none() {
                return bad("CEL sharding without cel_expr".into());
            }
            if let Some(values) = &sharding.routing_values {
                if values.len() != meta.num_dbs as usize {
                    return bad(format!(
                        "categorical CEL sharding has {} routing_values but num_dbs is {}",
                        values.len(),
                        meta.num_dbs
                    ));
                }
            }
        }
        if meta.run_id.is_empty() || meta.run_id.contains('/') {
            return bad(format!("run_id {:?} is empty or contains '/'", meta.run_id));
        }
        self.vector_spec()?;
        Ok(())
    }

    /// A slot without a shard row is legal (an empty shard), so a deleted row would read as
    /// "key not found". edgeshard therefore records how many rows it wrote and what they hold
    /// ([`SHARD_TOTALS_KEY`] in `custom`, which other readers ignore): a manifest whose rows were
    /// deleted or altered no longer adds up. For vector-only snapshots of any writer,
    /// `total_vectors` bounds the rows' sum from below (spilled copies only add to it).
    fn check_recorded_totals(&self) -> Result<()> {
        let rows: u64 = self.shards.iter().map(|s| s.row_count).sum();
        if let Some(recorded) = self.meta.custom.get(SHARD_TOTALS_KEY) {
            let field = |name: &str| recorded.get(name).and_then(Value::as_u64);
            let (Some(shard_rows), Some(recorded_rows)) = (field("shard_rows"), field("rows"))
            else {
                return Err(Error::InvalidManifest(format!(
                    "custom.{SHARD_TOTALS_KEY} is {recorded}, not {{\"shard_rows\": N, \"rows\": N}}"
                )));
            };
            if shard_rows != self.shards.len() as u64 || recorded_rows != rows {
                return Err(Error::InvalidManifest(format!(
                    "the shards table has {} rows holding {rows} records, but its writer \
                     recorded {shard_rows} holding {recorded_rows} (custom.{SHARD_TOTALS_KEY}): \
                     shard rows were deleted or altered",
                    self.shards.len()
                )));
            }
        }
        let total_vectors = self
            .vector_spec()?
            .and_then(|spec| spec.routing)
            .and_then(|routing| routing.total_vectors);
        if let Some(total) = total_vectors {
            if rows < total {
                return Err(Error::InvalidManifest(format!(
                    "custom.vector.total_vectors is {total} but the shard rows hold only {rows}: \
                     shard rows were deleted or altered"
                )));
            }
        }
        Ok(())
    }

    /// Whether lookups route by the hash of the key (hash-routed KV and unified snapshots):
    /// then every key stored in shard N routes to N.
    fn routes_keys_by_hash(&self) -> bool {
        self.meta.sharding.strategy == Strategy::Hash && self.meta.key_col == KEY_COL_KV
    }

    /// On a hash-routed KV or unified snapshot every key of shard N routes to N, so the
    /// `min_key` and `max_key` edgeshard records must too: a manifest whose shard rows were
    /// swapped or renumbered, or whose `num_dbs` changed, would otherwise send lookups to the
    /// wrong file and answer "not found". Only rows edgeshard wrote are checked: the format
    /// calls the bounds informational, and other writers (shardyfusion's own example manifest)
    /// record bounds that are not keys of the shard. Readers also check the first stored key of
    /// a shard on its first miss ([`Manifest::check_shard_holds_key`]), whoever wrote it.
    fn check_key_ranges_route_to_their_shards(&self) -> Result<()> {
        let meta = &self.meta;
        if !self.routes_keys_by_hash() {
            return Ok(());
        }
        for shard in self.shards.iter().filter(|s| s.written_by_edgeshard()) {
            for (name, bound) in [("min_key", &shard.min_key), ("max_key", &shard.max_key)] {
                let key = match (bound, meta.key_encoding.is_integer()) {
                    (Some(Value::Number(n)), true) => n.as_i64().map(crate::key::Key::Int),
                    (Some(Value::String(s)), false) => Some(crate::key::Key::Str(s.clone())),
                    _ => None,
                };
                let Some(key) = key else { continue };
                let routed = crate::routing::shard_for_key(&key, meta.num_dbs)?;
                if routed != shard.db_id {
                    return Err(Error::InvalidManifest(format!(
                        "shard {}: its {name} {key} routes to shard {routed} (num_dbs {}): the \
                         shard rows do not match the routing",
                        shard.db_id, meta.num_dbs
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks that `encoded_key`, a key stored in shard `db_id` (readers take its first one),
    /// routes to `db_id`. A shard file under the wrong row (swapped or renumbered rows, another
    /// `num_dbs`) fails this, so a reader can say so instead of answering "not found" for keys
    /// it looked for in the wrong file. Snapshots not routed by key hash pass.
    pub fn check_shard_holds_key(&self, db_id: u32, encoded_key: &[u8]) -> Result<()> {
        if !self.routes_keys_by_hash() {
            return Ok(());
        }
        let key = self.meta.key_encoding.decode(encoded_key)?;
        let routed = crate::routing::shard_for_key(&key, self.meta.num_dbs)?;
        if routed != db_id {
            return Err(Error::Integrity(format!(
                "shard {db_id} holds key {key}, which routes to shard {routed} (num_dbs {}): \
                 the manifest's shard rows do not match the shard files (swapped, renumbered \
                 or another num_dbs)",
                self.meta.num_dbs
            )));
        }
        Ok(())
    }

    /// Reads and validates a manifest from the bytes of its SQLite file.
    pub fn from_sqlite_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 100 || &bytes[..16] != SQLITE_MAGIC {
            return Err(Error::InvalidManifest(
                "not a SQLite database (the 16-byte 'SQLite format 3' magic is missing)".into(),
            ));
        }
        check_sqlite_size(bytes)?;
        let sql_err = |e: rusqlite::Error| Error::InvalidManifest(format!("unreadable: {e}"));
        let mut conn = Connection::open_in_memory().map_err(sql_err)?;
        conn.deserialize_read_exact("main", bytes, bytes.len(), true)
            .map_err(sql_err)?;
        // SQLite reads a page past the end of a short file as zeros, and a table whose pages
        // are zeros (or damaged) can read as empty: a manifest with no shard rows would then
        // answer every key "not found". The manifest is small; check its structure whole.
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(sql_err)?;
        if check != "ok" {
            return Err(Error::InvalidManifest(format!(
                "its SQLite structure is damaged (quick_check: {check})"
            )));
        }
        let manifest = Self::read_tables(&conn).map_err(|e| match e {
            Error::InvalidManifest(_) => e,
            other => Error::InvalidManifest(other.to_string()),
        })?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn read_tables(conn: &Connection) -> Result<Self> {
        let sql_err = |e: rusqlite::Error| Error::InvalidManifest(format!("unreadable: {e}"));
        let bad = |why: String| Error::InvalidManifest(why);
        let meta_rows: i64 = conn
            .query_row("SELECT count(*) FROM build_meta", [], |r| r.get(0))
            .map_err(sql_err)?;
        if meta_rows != 1 {
            return Err(bad(format!("build_meta has {meta_rows} rows, expected 1")));
        }
        let raw = conn
            .query_row(
                "SELECT run_id, created_at, num_dbs, s3_prefix, key_col, sharding,
                        db_path_template, shard_prefix, format_version, key_encoding, custom
                 FROM build_meta",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, i64>(8)?,
                        r.get::<_, String>(9)?,
                        r.get::<_, Option<String>>(10)?,
                    ))
                },
            )
            .optional()
            .map_err(sql_err)?
            .ok_or_else(|| bad("build_meta is empty".into()))?;
        let num_dbs =
            u32::try_from(raw.2).map_err(|_| bad(format!("num_dbs {} is out of range", raw.2)))?;
        let key_encoding = KeyEncoding::parse(&raw.9).map_err(|e| bad(e.to_string()))?;
        let custom = parse_object(raw.10.as_deref().unwrap_or("{}"), "custom")?;
        let meta = BuildMeta {
            run_id: raw.0,
            created_at: raw.1,
            num_dbs,
            s3_prefix: raw.3,
            key_col: raw.4,
            sharding: Sharding::parse(&raw.5)?,
            db_path_template: raw.6,
            shard_prefix: raw.7,
            format_version: raw.8,
            key_encoding,
            custom,
        };

        let mut stmt = conn
            .prepare(
                "SELECT db_id, db_url, attempt, row_count, db_bytes, min_key, max_key,
                        checkpoint_id, writer_info
                 FROM shards ORDER BY db_id",
            )
            .map_err(sql_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<String>>(8)?,
                ))
            })
            .map_err(sql_err)?;
        let mut shards = Vec::new();
        for row in rows {
            let row = row.map_err(sql_err)?;
            let field_u = |name: &str, v: i64| {
                u64::try_from(v).map_err(|_| bad(format!("shard {}: {name} is {v}", row.0)))
            };
            let db_id = u32::try_from(row.0)
                .map_err(|_| bad(format!("shard db_id {} is out of range", row.0)))?;
            shards.push(ShardEntry {
                db_id,
                db_url: row.1,
                attempt: field_u("attempt", row.2)? as u32,
                row_count: field_u("row_count", row.3)?,
                db_bytes: field_u("db_bytes", row.4)?,
                min_key: parse_optional_json(row.5.as_deref()),
                max_key: parse_optional_json(row.6.as_deref()),
                checkpoint_id: row.7,
                writer_info: parse_object(row.8.as_deref().unwrap_or("{}"), "writer_info")?,
            });
        }
        Ok(Self { meta, shards })
    }

    /// Writes the manifest as a SQLite file image (page size 4096), after validating it.
    pub fn to_sqlite_bytes(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let sql_err = |e: rusqlite::Error| Error::InvalidManifest(format!("cannot write: {e}"));
        let mut conn = Connection::open_in_memory().map_err(sql_err)?;
        conn.execute_batch(&format!(
            "PRAGMA page_size = {PAGE_SIZE}; {BUILD_META_DDL}; {SHARDS_DDL};"
        ))
        .map_err(sql_err)?;
        let meta = &self.meta;
        let tx = conn.transaction().map_err(sql_err)?;
        tx.execute(
            "INSERT INTO build_meta VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                meta.run_id,
                meta.created_at,
                meta.num_dbs,
                meta.s3_prefix,
                meta.key_col,
                to_string_sorted(&meta.sharding.to_json(), Style::Python),
                meta.db_path_template,
                meta.shard_prefix,
                meta.format_version,
                meta.key_encoding.as_str(),
                to_string_sorted(&Value::Object(meta.custom.clone()), Style::Python),
            ],
        )
        .map_err(sql_err)?;
        for shard in &self.shards {
            let json_text =
                |v: &Option<Value>| v.as_ref().map(|v| to_string_sorted(v, Style::Python));
            tx.execute(
                "INSERT INTO shards VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    shard.db_id,
                    shard.db_url,
                    shard.attempt,
                    shard.row_count as i64,
                    shard.db_bytes as i64,
                    json_text(&shard.min_key),
                    json_text(&shard.max_key),
                    shard.checkpoint_id,
                    to_string_sorted(&Value::Object(shard.writer_info.clone()), Style::Python),
                ],
            )
            .map_err(sql_err)?;
        }
        tx.commit().map_err(sql_err)?;
        let image = conn.serialize("main").map_err(sql_err)?;
        Ok(image.to_vec())
    }
}

fn parse_object(text: &str, what: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::InvalidManifest(format!(
            "{what} is not a JSON object"
        ))),
        Err(e) => Err(Error::InvalidManifest(format!("{what} is not JSON: {e}"))),
    }
}

/// `min_key`/`max_key` are informational: unparsable text is kept as a string rather than
/// failing the whole manifest.
fn parse_optional_json(text: Option<&str>) -> Option<Value> {
    text.map(|t| serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string())))
}

/// A SQLite file's length against its header: the page size (bytes 16-17) times the page count
/// (bytes 28-31, valid when bytes 92-95 equal the change counter at 24-27, as every SQLite since
/// 3.7.0 writes). A truncated or padded manifest is refused before SQLite reads it.
fn check_sqlite_size(bytes: &[u8]) -> Result<()> {
    let be32 = |at: usize| -> u32 {
        u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    };
    let page_size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65_536u64,
        n => u64::from(n),
    };
    if !(512..=65_536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(Error::InvalidManifest(format!(
            "its SQLite header gives a page size of {page_size}"
        )));
    }
    let len = bytes.len() as u64;
    let pages = u64::from(be32(28));
    let expected = match be32(92) == be32(24) && pages > 0 {
        true => pages * page_size,
        // An old writer that kept no page count: whole pages at least.
        false => len - len % page_size,
    };
    if len != expected {
        return Err(Error::InvalidManifest(format!(
            "{len} bytes, but its SQLite header says {expected} (truncated or padded)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_vector_round_trips_through_its_writer_and_reader() {
        let routing = |strategy, refs: (Option<&str>, Option<&str>), bits| VectorRouting {
            strategy,
            num_probes: 3,
            centroids_ref: refs.0.map(str::to_string),
            hyperplanes_ref: refs.1.map(str::to_string),
            num_hash_bits: bits,
            total_vectors: Some(1234),
            spill_fraction: None,
        };
        let unified = VectorSpec {
            dim: 384,
            metric: Metric::Cosine,
            backend: Some(VectorBackend::SqliteVec),
            unified: true,
            routing: None,
            dot_reduction: None,
            ann_defaults: AnnParams::default(),
            index_type: Some("flat".into()),
            quantization: None,
            index_params: None,
            kv_backend: Some("sqlite-vec".into()),
        };
        let mut cluster = VectorSpec {
            unified: false,
            kv_backend: None,
            routing: Some(routing(
                VectorStrategy::Cluster,
                (Some("s3://b/c.npy"), None),
                None,
            )),
            ..unified.clone()
        };
        if let Some(r) = cluster.routing.as_mut() {
            r.spill_fraction = Some(0.25);
        }
        let lsh = VectorSpec {
            routing: Some(routing(
                VectorStrategy::Lsh,
                (None, Some("h.npy")),
                Some(12),
            )),
            ..cluster.clone()
        };
        let explicit = VectorSpec {
            routing: Some(routing(VectorStrategy::Explicit, (None, None), None)),
            metric: Metric::DotProduct,
            dot_reduction: Some(DotReduction { max_norm: 3.5 }),
            ..cluster.clone()
        };
        let params = serde_json::json!({"nprobes": 20, "refine_factor": 5, "num_partitions": 64});
        let lance = VectorSpec {
            backend: Some(VectorBackend::LanceDb),
            kv_backend: Some("sqlite".into()),
            index_type: Some("IVF_HNSW_SQ".into()),
            quantization: Some("sq".into()),
            ann_defaults: AnnParams::from_index_params(&params),
            index_params: Some(params),
            ..unified.clone()
        };
        for spec in [unified, cluster, lsh, explicit, lance] {
            let json = spec.to_json();
            assert_eq!(VectorSpec::from_json(&json).unwrap(), spec, "{json}");
        }
    }

    pub(crate) fn sample() -> Manifest {
        Manifest {
            meta: BuildMeta {
                run_id: "run1".into(),
                created_at: "2026-03-14T10:30:00.123456Z".into(),
                num_dbs: 4,
                s3_prefix: "file:///snap".into(),
                key_col: KEY_COL_KV.into(),
                sharding: Sharding::hash(),
                db_path_template: crate::layout::DB_PATH_TEMPLATE.into(),
                shard_prefix: crate::layout::SHARDS_DIR.into(),
                format_version: FORMAT_VERSION,
                key_encoding: KeyEncoding::U64Be,
                custom: Map::new(),
            },
            shards: vec![
                ShardEntry {
                    db_id: 0,
                    db_url: Some("file:///snap/shards/run_id=run1/db=00000/attempt=00".into()),
                    attempt: 0,
                    row_count: 10,
                    db_bytes: 8192,
                    min_key: Some(json!(keys_routing_to(0, 4)[0])),
                    max_key: Some(json!(keys_routing_to(0, 4)[1])),
                    checkpoint_id: Some("ab".into()),
                    writer_info: Map::new(),
                },
                ShardEntry {
                    db_id: 2,
                    db_url: None,
                    attempt: 1,
                    row_count: 5,
                    db_bytes: 4096,
                    min_key: None,
                    max_key: None,
                    checkpoint_id: None,
                    writer_info: Map::new(),
                },
            ],
        }
    }

    /// The two smallest non-negative integer keys that route to `db_id` among `num_dbs`.
    fn keys_routing_to(db_id: u32, num_dbs: u32) -> Vec<i64> {
        (0..)
            .filter(|&k| {
                crate::routing::shard_for_key(&crate::key::Key::Int(k), num_dbs).unwrap() == db_id
            })
            .take(2)
            .collect()
    }

    #[test]
    fn rejects_unbounded_num_dbs() {
        for num_dbs in [MAX_NUM_DBS + 1, 100_000_000, u32::MAX] {
            let mut m = sample();
            m.meta.num_dbs = num_dbs;
            assert_invalid(&m, "must be 1..=65536");
        }
    }

    #[test]
    fn rejects_totals_that_overflow() {
        let mut m = sample();
        m.shards[0].row_count = i64::MAX as u64;
        m.shards[1].row_count = i64::MAX as u64;
        m.shards.push(ShardEntry {
            db_id: 3,
            ..m.shards[1].clone()
        });
        assert_invalid(&m, "64-bit integer");
    }

    /// [`sample`] as edgeshard's builder would record it (`writer_info.writer`).
    fn sample_by_edgeshard() -> Manifest {
        let mut m = sample();
        for shard in &mut m.shards {
            shard
                .writer_info
                .insert("writer".into(), json!("edgeshard/0.1.0"));
        }
        m
    }

    #[test]
    fn rejects_shard_rows_that_contradict_the_routing() {
        // Shard 0's key range relabelled as shard 1 (a swapped or renumbered row).
        let mut m = sample_by_edgeshard();
        m.shards[0].db_id = 1;
        assert_invalid(&m, "routes to shard 0");
        // Other writers' bounds are informational (the format says so): not checked.
        let mut m = sample();
        m.shards[0].db_id = 1;
        assert!(m.validate().is_ok());
        // Same rows, one more slot: the keys no longer route where they are stored.
        let mut m = sample_by_edgeshard();
        let wrong_modulus = (5..)
            .find(|&n| {
                keys_routing_to(0, 4).iter().any(|&k| {
                    crate::routing::shard_for_key(&crate::key::Key::Int(k), n).unwrap() != 0
                })
            })
            .unwrap();
        m.meta.num_dbs = wrong_modulus;
        assert_invalid(&m, "do not match the routing");
        // Vector-only snapshots are not routed by key: no check.
        let mut m = sample_by_edgeshard();
        m.shards[0].db_id = 1;
        m.meta.key_col = KEY_COL_VECTOR.into();
        m.meta.key_encoding = KeyEncoding::Raw;
        assert!(m.validate().is_ok());
    }

    #[test]
    fn a_shard_must_hold_keys_that_route_to_it() {
        let m = sample();
        let [k0, _] = keys_routing_to(0, 4)[..] else {
            unreachable!()
        };
        let encoded = |k: i64| KeyEncoding::U64Be.encode(&crate::key::Key::Int(k)).unwrap();
        assert!(m.check_shard_holds_key(0, &encoded(k0)).is_ok());
        let err = m.check_shard_holds_key(1, &encoded(k0)).unwrap_err();
        assert!(err.to_string().contains("routes to shard 0"), "{err}");
        // A stored key the encoding cannot produce is an error too, not a pass.
        assert!(m.check_shard_holds_key(0, b"abc").is_err());
    }

    fn assert_invalid(m: &Manifest, needle: &str) {
        let err = m.validate().unwrap_err().to_string();
        assert!(err.contains(needle), "expected {needle:?} in {err:?}");
        // The writer refuses it too, so a bad manifest can never be published.
        assert!(m.to_sqlite_bytes().is_err());
    }

    #[test]
    fn round_trips_through_sqlite() {
        let m = sample();
        let bytes = m.to_sqlite_bytes().unwrap();
        assert_eq!(&bytes[..16], SQLITE_MAGIC);
        assert_eq!(u16::from_be_bytes([bytes[16], bytes[17]]), 4096);
        assert_eq!(Manifest::from_sqlite_bytes(&bytes).unwrap(), m);
    }

    #[test]
    fn rejects_wrong_magic() {
        let mut bytes = sample().to_sqlite_bytes().unwrap();
        bytes[0] = b'X';
        let err = Manifest::from_sqlite_bytes(&bytes).unwrap_err();
        assert!(err.to_string().contains("magic"), "{err}");
        assert!(Manifest::from_sqlite_bytes(b"short").is_err());
    }

    #[test]
    fn rejects_truncated_file() {
        let bytes = sample().to_sqlite_bytes().unwrap();
        assert!(Manifest::from_sqlite_bytes(&bytes[..bytes.len() / 2]).is_err());
        // Cut at a page boundary, SQLite reads the missing pages as zeros: the shard table
        // then read as empty and every key was answered "not found" (campaign finding).
        for pages in 1..bytes.len() / 4096 {
            let err = Manifest::from_sqlite_bytes(&bytes[..pages * 4096]).unwrap_err();
            assert!(
                err.to_string().contains("truncated"),
                "{pages} pages: {err}"
            );
        }
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0u8; 4096]);
        assert!(Manifest::from_sqlite_bytes(&padded).is_err());
    }

    #[test]
    fn rejects_a_zeroed_page() {
        let bytes = sample().to_sqlite_bytes().unwrap();
        for page in 1..bytes.len() / 4096 {
            let mut damaged = bytes.clone();
            damaged[page * 4096..(page + 1) * 4096].fill(0);
            assert!(
                Manifest::from_sqlite_bytes(&damaged).is_err(),
                "page {} zeroed was accepted",
                page + 1
            );
        }
    }

    #[test]
    fn rejects_other_format_versions() {
        let mut m = sample();
        m.meta.format_version = 3;
        assert_invalid(&m, "format_version is 3");
    }

    #[test]
    fn rejects_duplicate_db_id() {
        let mut m = sample();
        m.shards[1].db_id = 0;
        assert_invalid(&m, "appears twice");
    }

    #[test]
    fn rejects_db_id_out_of_range() {
        let mut m = sample();
        m.shards[1].db_id = 4;
        assert_invalid(&m, "not below num_dbs 4");
    }

    #[test]
    fn rejects_more_rows_than_slots() {
        let mut m = sample();
        m.meta.num_dbs = 1;
        assert_invalid(&m, "2 shard rows but num_dbs is 1");
    }

    #[test]
    fn rejects_wrong_or_missing_hash_algorithm() {
        let mut m = sample();
        m.meta.sharding.hash_algorithm = "murmur3".into();
        assert_invalid(&m, "hash_algorithm");
        let err = Sharding::parse(r#"{"strategy": "hash", "routing_values": null}"#).unwrap_err();
        assert!(
            err.to_string().contains("hash_algorithm is missing"),
            "{err}"
        );
        let err = Sharding::parse(r#"{"strategy": "hash", "hash_algorithm": "md5"}"#).unwrap_err();
        assert!(err.to_string().contains("md5"), "{err}");
    }

    #[test]
    fn rejects_extra_sharding_key() {
        let err = Sharding::parse(
            r#"{"strategy": "hash", "hash_algorithm": "xxh3_64", "routing_values": null,
                "cel_expr": null, "cel_columns": null, "seed": 7}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown key \"seed\""), "{err}");
    }

    #[test]
    fn rejects_categorical_cel_with_wrong_value_count() {
        let mut m = sample();
        m.meta.sharding = Sharding {
            strategy: Strategy::Cel,
            hash_algorithm: HASH_ALGORITHM.into(),
            routing_values: Some(vec![json!("eu"), json!("us")]),
            cel_expr: Some("region".into()),
            cel_columns: Some(Map::new()),
        };
        assert_invalid(&m, "2 routing_values but num_dbs is 4");
        m.meta.sharding.routing_values = Some((0..4).map(|i| json!(i)).collect());
        assert!(m.validate().is_ok());
    }

    #[test]
    fn rejects_bad_vector_config() {
        let mut m = sample();
        m.meta
            .custom
            .insert("vector".into(), json!({"dim": 0, "metric": "cosine"}));
        assert_invalid(&m, "dim");
        m.meta
            .custom
            .insert("vector".into(), json!({"dim": 4, "metric": "hamming"}));
        assert_invalid(&m, "hamming");
    }

    #[test]
    fn reads_vector_only_routing_and_dot_reduction() {
        let mut m = sample();
        m.meta.key_col = KEY_COL_VECTOR.into();
        m.meta.custom.insert(
            "vector".into(),
            json!({"dim": 4, "metric": "dot_product", "index_type": "flat", "quantization": null,
                   "total_vectors": 15, "sharding_strategy": "cluster", "num_probes": 2,
                   "centroids_ref": "file:///snap/vector_meta/run_id=run1/centroids.npy",
                   "backend": "sqlite-vec",
                   "dot_reduction": {"method": "l2_augmented", "max_norm": 2.5}}),
        );
        let bytes = m.to_sqlite_bytes().unwrap();
        let spec = Manifest::from_sqlite_bytes(&bytes)
            .unwrap()
            .vector_spec()
            .unwrap()
            .unwrap();
        let routing = spec.routing.unwrap();
        assert_eq!(routing.strategy, VectorStrategy::Cluster);
        assert_eq!(routing.num_probes, 2);
        assert_eq!(routing.total_vectors, Some(15));
        assert!(routing.centroids_ref.unwrap().ends_with("centroids.npy"));
        assert_eq!(spec.dot_reduction, Some(DotReduction { max_norm: 2.5 }));
        assert!(!spec.unified);

        let bad_cases = [
            (
                json!({"dim": 4, "metric": "l2", "sharding_strategy": "cluster"}),
                "centroids_ref",
            ),
            (
                json!({"dim": 4, "metric": "l2", "sharding_strategy": "lsh"}),
                "hyperplanes_ref",
            ),
            (
                json!({"dim": 4, "metric": "l2", "sharding_strategy": "kd"}),
                "kd",
            ),
            (
                json!({"dim": 4, "metric": "l2", "sharding_strategy": "explicit", "num_probes": 0}),
                "num_probes",
            ),
            (
                json!({"dim": 4, "metric": "dot_product",
                    "dot_reduction": {"method": "pad", "max_norm": 1.0}}),
                "pad",
            ),
            (
                json!({"dim": 4, "metric": "cosine",
                    "dot_reduction": {"method": "l2_augmented", "max_norm": 1.0}}),
                "other than",
            ),
        ];
        for (vector, needle) in bad_cases {
            m.meta.custom.insert("vector".into(), vector);
            assert_invalid(&m, needle);
        }
    }

    /// Duplicate db_ids cannot come from our own writer (db_id is the primary key), so build a
    /// manifest file by hand whose `shards` table lacks that constraint.
    #[test]
    fn rejects_duplicate_db_id_in_file() {
        let mut conn = Connection::open_in_memory().unwrap();
        let loose_shards = SHARDS_DDL.replace("INTEGER NOT NULL PRIMARY KEY", "INTEGER NOT NULL");
        conn.execute_batch(&format!("{BUILD_META_DDL}; {loose_shards};"))
            .unwrap();
        conn.execute(
            "INSERT INTO build_meta VALUES ('r', 't', 4, 'file:///x', '_key', ?1, 'db={db_id:05d}',
             'shards', 4, 'u64be', '{}')",
            [to_string_sorted(&Sharding::hash().to_json(), Style::Python)],
        )
        .unwrap();
        for _ in 0..2 {
            conn.execute(
                "INSERT INTO shards VALUES (1, NULL, 0, 1, 1, NULL, NULL, NULL, '{}')",
                [],
            )
            .unwrap();
        }
        let bytes = conn.serialize("main").unwrap().to_vec();
        let err = Manifest::from_sqlite_bytes(&bytes).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
    }

    #[test]
    fn rejects_unknown_key_encoding_and_missing_tables() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(BUILD_META_DDL).unwrap();
        let bytes = conn.serialize("main").unwrap().to_vec();
        assert!(Manifest::from_sqlite_bytes(&bytes).is_err());

        let mut m = sample().to_sqlite_bytes().unwrap();
        let mut conn = Connection::open_in_memory().unwrap();
        conn.deserialize_read_exact("main", &m[..], m.len(), false)
            .unwrap();
        conn.execute("UPDATE build_meta SET key_encoding = 'u128'", [])
            .unwrap();
        m = conn.serialize("main").unwrap().to_vec();
        let err = Manifest::from_sqlite_bytes(&m).unwrap_err();
        assert!(err.to_string().contains("u128"), "{err}");
    }
}
