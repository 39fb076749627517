//! The shape of a search, one for every reader (native, wasm, the CLI, a server): what a search
//! asks for ([`SearchOptions`]), what it answers ([`SearchResponse`] of [`SearchHit`]s), the
//! typed vector ids of `vec_id_map` (written and read here, side by side), and the checks every
//! reader makes before it reads anything.

use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::json::{to_string_sorted, Style};
use crate::key::Key;
use crate::manifest::VectorSpec;
use crate::vector::{self, AnnParams};
use serde::Serialize;
use serde_json::Value;

/// The largest `k` a search may ask for: sqlite-vec's KNN cap.
pub const MAX_K: usize = 4096;

/// A vector id with the type it was written with (`vec_id_map.original_id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum VectorId {
    /// Written from an integer key (`"t": "int"`).
    Int(i64),
    /// Written from a text key, or bytes that are UTF-8 (`"t": "str"`).
    Str(String),
}

impl VectorId {
    /// The id a record's key gives its vector: integers stay integers, text and UTF-8 bytes are
    /// text. `None` for bytes that are not UTF-8 (such a key cannot name a vector).
    pub fn from_key(key: &Key) -> Option<Self> {
        match key {
            Key::Int(i) => Some(VectorId::Int(*i)),
            Key::Str(s) => Some(VectorId::Str(s.clone())),
            Key::Bytes(b) => std::str::from_utf8(b).ok().map(|s| VectorId::Str(s.into())),
        }
    }

    /// `vec_id_map.original_id` in shardyfusion's exact text: `{"v": 7, "t": "int"}`,
    /// `{"v": "a", "t": "str"}` (Python `json.dumps` spacing).
    pub fn to_stored(&self) -> String {
        let (v, t) = match self {
            VectorId::Int(i) => (Value::from(*i), "int"),
            VectorId::Str(s) => (Value::from(s.as_str()), "str"),
        };
        format!(
            "{{\"v\": {}, \"t\": \"{t}\"}}",
            to_string_sorted(&v, Style::Python)
        )
    }

    /// Reads `vec_id_map.original_id` (any JSON spelling of [`VectorId::to_stored`]'s object);
    /// `None` when it is not one.
    pub fn from_stored(text: &str) -> Option<Self> {
        let value: Value = serde_json::from_str(text).ok()?;
        match (value.get("t")?.as_str()?, value.get("v")?) {
            ("int", v) => v.as_i64().map(VectorId::Int),
            ("str", v) => v.as_str().map(|s| VectorId::Str(s.to_string())),
            _ => None,
        }
    }

    /// The id as a JSON value (a number or a string).
    pub fn to_json(&self) -> Value {
        match self {
            VectorId::Int(i) => Value::from(*i),
            VectorId::Str(s) => Value::from(s.as_str()),
        }
    }
}

/// One result of a search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    /// The vector's id, typed as written.
    pub id: VectorId,
    /// Distance in the snapshot metric's convention: lower is better (see [`crate::vector`]).
    pub score: f64,
    /// The vector's payload (projected to the fields asked for), when it has one.
    pub payload: Option<Value>,
    /// The shard the hit came from.
    pub shard: u32,
}

/// What a search answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResponse {
    /// Best first.
    pub results: Vec<SearchHit>,
    /// How many shards the search read (the non-empty ones among those selected).
    pub shards_queried: usize,
    /// Which, ascending.
    pub shards: Vec<u32>,
}

/// What a search asks for besides its vector.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOptions {
    /// Results wanted, 1..=[`MAX_K`].
    pub k: usize,
    /// Vector-routed (cluster / lsh) snapshots: shards to probe (default: the manifest's
    /// `num_probes`; capped at `num_dbs`). An error on snapshots routed by key.
    pub probes: Option<usize>,
    /// Search exactly these shards (required for explicit vector routing; replaces the probed
    /// shards otherwise). Cannot be combined with `probes`.
    pub shard_ids: Option<Vec<u32>>,
    /// Keep only vectors whose payload matches. On sqlite-vec this is a post-filter that still
    /// returns `k` results when `k` vectors match: each shard over-fetches `4k` candidates,
    /// doubles up to [`MAX_K`], then scans the shard exactly.
    pub filter: Option<Filter>,
    /// Payload fields to return (`None`: the whole payload; empty: no payload).
    pub payload_fields: Option<Vec<String>>,
    /// ANN knobs of indexed LanceDB shards. sqlite-vec (exact) and flat LanceDB shards ignore
    /// them.
    pub ann: AnnParams,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            k: 10,
            probes: None,
            shard_ids: None,
            filter: None,
            payload_fields: None,
            ann: AnnParams::default(),
        }
    }
}

impl SearchOptions {
    /// The checks every reader makes before reading anything: the snapshot has vectors, `k` is
    /// in range, the query has the snapshot's dimension and is usable under its metric. Returns
    /// the snapshot's vector spec. (Which shards to read is [`crate::search_plan`]'s.)
    pub fn check<'a>(&self, spec: Option<&'a VectorSpec>, query: &[f32]) -> Result<&'a VectorSpec> {
        let spec = spec.ok_or_else(|| {
            Error::InvalidArgument("this snapshot has no vectors (no custom.vector)".into())
        })?;
        if !(1..=MAX_K).contains(&self.k) {
            return Err(Error::InvalidArgument(format!(
                "k must be between 1 and {MAX_K}, got {}",
                self.k
            )));
        }
        vector::check_vector(query, spec.dim, spec.metric)
            .map_err(|e| Error::InvalidArgument(format!("query vector: {}", e.detail())))?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_ids_round_trip_in_shardyfusion_text() {
        for (id, text) in [
            (VectorId::Int(0), r#"{"v": 0, "t": "int"}"#),
            (VectorId::Int(-7), r#"{"v": -7, "t": "int"}"#),
            (VectorId::Str("id-1".into()), r#"{"v": "id-1", "t": "str"}"#),
            (
                VectorId::Str("é\"".into()),
                r#"{"v": "\u00e9\"", "t": "str"}"#,
            ),
        ] {
            assert_eq!(id.to_stored(), text);
            assert_eq!(VectorId::from_stored(text), Some(id.clone()));
            // Any JSON spelling reads the same.
            let compact = serde_json::to_string(&serde_json::json!({"t": if matches!(id, VectorId::Int(_)) { "int" } else { "str" }, "v": id.to_json()})).unwrap();
            assert_eq!(VectorId::from_stored(&compact), Some(id));
        }
        assert_eq!(VectorId::from_stored(r#"{"v": 1.5, "t": "int"}"#), None);
        assert_eq!(VectorId::from_stored("7"), None);
        assert_eq!(VectorId::from_key(&Key::Bytes(vec![0xff])), None);
        assert_eq!(
            VectorId::from_key(&Key::Bytes(b"ab".to_vec())),
            Some(VectorId::Str("ab".into()))
        );
    }
}
