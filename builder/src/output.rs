//! The JSON objects the read commands answer with, built in one place so that the CLI
//! (`edgeshard get`, `search`, ...) and the server (`edgeshard serve`, `/v1/...`) return the
//! same objects for the same query: a user can move between them, and tests compare them.
//!
//! Also the one translation of a search's options ([`SearchRequest`]) into the reader's
//! [`SearchOptions`]: the CLI fills it from flags, the server from a JSON body.

use crate::error::{Error, Result};
use base64::Engine;
use edgeshard_native::{current_manifest_path, AnnParams, Root, SearchOptions, SearchResponse};
use edgeshard_native::{Snapshot, SnapshotInfo};
use edgeshard_shared::filter::Filter;
use edgeshard_shared::{routing, Key};
use serde::Deserialize;
use serde_json::{json, Value};

/// A key as JSON: integers as numbers, text as strings; bytes that are not UTF-8 as their
/// `0x`-hex form (they have no JSON form of their own).
pub fn key_json(key: &Key) -> Value {
    key.to_json()
        .unwrap_or_else(|| Value::String(key.to_string()))
}

/// One key's answer: `{"key", "found", "value"}`; a value that is not UTF-8 is base64 with
/// `"value_encoding": "base64"`.
pub fn get_row(key: &Key, value: Option<Vec<u8>>) -> Value {
    let mut row = json!({"key": key_json(key), "found": value.is_some(), "value": null});
    if let Some(bytes) = value {
        match String::from_utf8(bytes) {
            Ok(text) => row["value"] = Value::String(text),
            Err(e) => {
                row["value"] =
                    Value::String(base64::engine::general_purpose::STANDARD.encode(e.as_bytes()));
                row["value_encoding"] = Value::String("base64".into());
            }
        }
    }
    row
}

/// Looks `keys` up and answers one [`get_row`] per key, in input order.
pub fn get_rows(snap: &Snapshot, keys: &[Key]) -> Result<Vec<Value>> {
    let values = snap.multi_get(keys)?;
    Ok(keys
        .iter()
        .zip(values)
        .map(|(key, value)| get_row(key, value))
        .collect())
}

/// The search object: `{"results", "shards_queried", "shards", "latency_ms"}` (latency rounded
/// to the microsecond).
pub fn search_object(response: &SearchResponse, latency_ms: f64) -> Value {
    json!({
        "results": response.results,
        "shards_queried": response.shards_queried,
        "shards": response.shards,
        "latency_ms": (latency_ms * 1000.0).round() / 1000.0,
    })
}

/// What `info` answers.
pub fn info_object(info: &SnapshotInfo) -> Result<Value> {
    serde_json::to_value(info).map_err(json_err)
}

/// The manifest's shard rows, as `shards` answers them.
pub fn shard_rows(snap: &Snapshot) -> Vec<Value> {
    snap.manifest()
        .shards
        .iter()
        .map(|s| {
            json!({
                "db_id": s.db_id, "rows": s.row_count, "bytes": s.db_bytes,
                "min_key": s.min_key, "max_key": s.max_key,
                "checkpoint_id": s.checkpoint_id, "db_url": s.db_url,
            })
        })
        .collect()
}

/// Which shard `key` routes to: `{"key", "shard", "xxh3_64"}`.
pub fn route_object(key: &Key, shard: u32) -> Value {
    json!({
        // Bytes keys show as 0x-hex here: routing hashes bytes, and text would hide them.
        "key": match key {
            Key::Bytes(_) => Value::String(key.to_string()),
            _ => key_json(key),
        },
        "shard": shard,
        "xxh3_64": format!("0x{:016x}", routing::digest(key)),
    })
}

/// Published manifests of `root`, newest first: `{"timestamp", "run_id", "current",
/// "manifest"}`; `current` marks the one `_CURRENT` names now.
pub fn history_rows(root: &Root) -> Result<Vec<Value>> {
    let current = current_manifest_path(root).ok();
    Ok(root
        .list_manifests()?
        .into_iter()
        .map(|m| {
            json!({
                "timestamp": m.timestamp, "run_id": m.run_id,
                "current": current.as_deref() == Some(m.manifest_path.as_str()),
                "manifest": m.manifest_path,
            })
        })
        .collect())
}

/// A search as a caller states it: the query vector and every option of `edgeshard search`.
/// The server reads it from a JSON body (unknown fields are refused, so a misspelt option is
/// an error rather than silently ignored); the CLI fills it from its flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query vector.
    pub vector: Vec<f64>,
    /// Results wanted (default 10).
    pub k: Option<usize>,
    /// Payload conditions, ANDed: `FIELD=VALUE`, `FIELD=V1|V2`, `FIELD!=VALUE`.
    pub filter: Option<FilterSpec>,
    /// Payload fields to return (default: the whole payload).
    pub fields: Option<Vec<String>>,
    /// Vector-routed snapshots: shards to probe.
    pub probes: Option<usize>,
    /// Indexed shards: IVF cells / partitions to probe per shard.
    pub nprobes: Option<usize>,
    /// Indexed LanceDB shards: HNSW search breadth.
    pub ef: Option<usize>,
    /// Indexed LanceDB shards and sqlite-vec shards with binary codes: re-rank `refine x k`
    /// candidates exactly.
    pub refine: Option<u32>,
    /// Only these shard ids.
    pub shards: Option<Vec<u32>>,
    /// Ignore every vector index (brute force).
    #[serde(default)]
    pub exact: bool,
}

/// A filter as JSON gives it: one condition, or a list of conditions (ANDed).
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a filter condition (\"FIELD=VALUE\") or a list of them"
)]
pub enum FilterSpec {
    One(String),
    All(Vec<String>),
}

impl SearchRequest {
    /// The query as f32 and the reader's options; refuses what the reader would misread
    /// (0 for a count that must be positive, `exact` with index knobs, a malformed filter).
    /// Dimension, metric and k range are checked by the reader against the snapshot.
    pub fn to_query(&self) -> Result<(Vec<f32>, SearchOptions)> {
        for (name, value) in [
            ("nprobes", self.nprobes.map(|v| v as u64)),
            ("ef", self.ef.map(|v| v as u64)),
            ("refine", self.refine.map(u64::from)),
        ] {
            if value == Some(0) {
                return Err(Error::Usage(format!(
                    "{name} must be an integer >= 1, got 0"
                )));
            }
        }
        if self.exact && (self.nprobes.is_some() || self.ef.is_some() || self.refine.is_some()) {
            return Err(Error::Usage(
                "exact searches every vector: it cannot be combined with nprobes, ef or refine"
                    .into(),
            ));
        }
        let conditions: Vec<String> = match &self.filter {
            None => Vec::new(),
            Some(FilterSpec::One(c)) => vec![c.clone()],
            Some(FilterSpec::All(cs)) => cs.clone(),
        };
        let options = SearchOptions {
            k: self.k.unwrap_or(10),
            probes: self.probes,
            shard_ids: self.shards.clone(),
            filter: match conditions.is_empty() {
                true => None,
                false => Some(Filter::parse(&conditions)?),
            },
            payload_fields: self.fields.clone(),
            ann: AnnParams {
                nprobes: self.nprobes,
                refine_factor: self.refine,
                ef: self.ef,
                exact: self.exact,
            },
        };
        // f64 -> f32: a finite value beyond f32's range becomes infinite, which the reader's
        // vector check refuses by name.
        let query = self.vector.iter().map(|x| *x as f32).collect();
        Ok((query, options))
    }
}

pub(crate) fn json_err(e: serde_json::Error) -> Error {
    Error::Usage(format!("cannot serialise output: {e}"))
}
