//! The shape of a search, one for every reader (native, wasm, the CLI, a server): what a search
//! asks for ([`SearchOptions`]), what it answers ([`SearchResponse`] of [`SearchHit`]s), the
//! typed vector ids of `vec_id_map` (written and read here, side by side), and the checks every
//! reader makes before it reads anything.

use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::json::{to_string_sorted, Style};
use crate::key::Key;
use crate::manifest::VectorSpec;
use crate::vector::{self, AnnParams, DotReduction, Metric};
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
        if self.ann.nprobes == Some(0) {
            return Err(Error::InvalidArgument(
                "nprobes must be at least 1 (use exact for a search of every vector)".into(),
            ));
        }
        if self.ann.refine_factor == Some(0) {
            return Err(Error::InvalidArgument(
                "refine must be at least 1 (candidates re-ranked per result)".into(),
            ));
        }
        vector::check_vector(query, spec.dim, spec.metric)
            .map_err(|e| Error::InvalidArgument(format!("query vector: {}", e.detail())))?;
        Ok(spec)
    }
}

/// How many candidates one shard's statement asks sqlite-vec for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// The `n` nearest by the index's own distance (`MATCH ? AND k = n`).
    Nearest(usize),
    /// Every row in distance order: an exact scan, past sqlite-vec's KNN cap.
    All,
}

/// When a shard has given enough candidates, one policy for every reader: a plain search takes
/// the `k` nearest; a filtered one over-fetches `4x` and doubles until `k` match, up to
/// [`MAX_K`], then scans the shard; dot_product (stored as its L2 reduction) over-fetches
/// `k + max(k, 16)`, rescores each candidate exactly ([`dot_score`]) and fetches more until
/// nothing beyond the last candidate can beat the k-th ([`DotReduction::max_dot_beyond`] bounds
/// the index's f32 rounding) or every vector was seen. Exact for any norms.
#[derive(Debug, Clone, Copy)]
pub struct CandidatePolicy {
    k: usize,
    filtered: bool,
    dot: Option<DotReduction>,
    /// The statements read some IVF cells of the shard, not all of it ([`Self::in_cells`]).
    in_cells: bool,
}

impl CandidatePolicy {
    /// The policy of a search for `k` results, with or without a payload filter; `dot` is the
    /// snapshot's dot reduction when its metric is dot_product on sqlite-vec.
    pub fn new(k: usize, filtered: bool, dot: Option<DotReduction>) -> Self {
        Self {
            k,
            filtered,
            dot,
            in_cells: false,
        }
    }

    /// The same policy when the KNN statements read only the probed IVF cells of the shard
    /// (`crate::ivf`): running out of rows then means the cells are exhausted, not the shard,
    /// so a filtered search with fewer than `k` matches goes on to the exact scan of the
    /// whole shard (a filter still returns `k` results whenever `k` vectors match).
    pub fn in_cells(self, in_cells: bool) -> Self {
        Self { in_cells, ..self }
    }

    /// What a shard's first statement asks for.
    pub fn first(&self) -> Fetch {
        let n = match self.dot {
            Some(_) => self.k + self.k.max(16),
            None => self.k,
        };
        let n = match self.filtered {
            true => n.saturating_mul(4),
            false => n,
        };
        self.capped(n)
    }

    /// After a statement asked for `fetch` and returned `returned` rows: `None` when the shard
    /// is done, else what to ask next. `kth_score` is the k-th best score among the candidates
    /// kept so far (after the filter; rescored for dot_product), `None` while fewer than `k`
    /// were kept; `last_distance` is the index distance of the last row returned.
    pub fn next(
        &self,
        fetch: Fetch,
        returned: usize,
        kth_score: Option<f64>,
        last_distance: Option<f64>,
        query: &[f32],
    ) -> Option<Fetch> {
        let n = match fetch {
            Fetch::All => return None,
            Fetch::Nearest(n) if returned < n => {
                let short = self.filtered && kth_score.is_none();
                return (self.in_cells && short).then_some(Fetch::All);
            }
            Fetch::Nearest(n) => n,
        };
        let enough = match self.dot {
            // Nothing unfetched can score better (lower `1 - q.v`) than the k-th hit.
            Some(reduction) => match (kth_score, last_distance) {
                (Some(kth), Some(last)) => 1.0 - reduction.max_dot_beyond(query, last) > kth,
                _ => false,
            },
            None => !self.filtered || kth_score.is_some(),
        };
        if enough {
            return None;
        }
        if n >= MAX_K {
            return Some(Fetch::All);
        }
        Some(self.capped(n.saturating_mul(2)))
    }

    /// `n` nearest, or a scan where sqlite-vec's cap stops the KNN: dot_product needs every
    /// candidate's vector and scans at the cap; a plain KNN may ask for exactly [`MAX_K`].
    fn capped(&self, n: usize) -> Fetch {
        match (self.dot, n >= MAX_K) {
            (Some(_), true) => Fetch::All,
            (None, true) => Fetch::Nearest(MAX_K),
            (_, false) => Fetch::Nearest(n),
        }
    }
}

/// The exact dot_product score (`1 - q.v`, in f64) of a candidate from its stored vector: `dim`
/// components plus the reduction's extra one, little-endian f32. An error says what is wrong
/// with the stored bytes.
pub fn dot_score(
    query: &[f32],
    stored: Option<&[u8]>,
    dim: usize,
) -> std::result::Result<f64, String> {
    let bytes = stored.ok_or("it has no stored vector")?;
    let vector = vector::from_le_bytes(bytes)
        .ok()
        .filter(|v| v.len() == dim + 1)
        .ok_or_else(|| {
            format!(
                "it is not {} floats (dim + 1 of the dot reduction)",
                dim + 1
            )
        })?;
    Ok(Metric::DotProduct.score(query, &vector[..dim]))
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
    #[test]
    fn candidate_policy_follows_the_documented_steps() {
        let q = [1.0f32, 0.0];
        // Plain: k nearest, done whatever came back.
        let plain = CandidatePolicy::new(10, false, None);
        assert_eq!(plain.first(), Fetch::Nearest(10));
        assert_eq!(
            plain.next(Fetch::Nearest(10), 10, None, Some(0.5), &q),
            None
        );
        // Filtered: 4k, doubling while fewer than k match, MAX_K, then a scan.
        let filtered = CandidatePolicy::new(10, true, None);
        assert_eq!(filtered.first(), Fetch::Nearest(40));
        assert_eq!(
            filtered.next(Fetch::Nearest(40), 40, None, Some(0.5), &q),
            Some(Fetch::Nearest(80))
        );
        assert_eq!(
            filtered.next(Fetch::Nearest(40), 40, Some(0.2), Some(0.5), &q),
            None
        );
        assert_eq!(
            filtered.next(Fetch::Nearest(40), 12, None, Some(0.5), &q),
            None
        );
        assert_eq!(
            filtered.next(Fetch::Nearest(3000), 3000, None, None, &q),
            Some(Fetch::Nearest(MAX_K))
        );
        assert_eq!(
            filtered.next(Fetch::Nearest(MAX_K), MAX_K, None, None, &q),
            Some(Fetch::All)
        );
        assert_eq!(filtered.next(Fetch::All, 99_999, None, None, &q), None);
        // Over IVF cells, running out of rows is the cells' end, not the shard's: too few
        // matches go on to the exact scan; enough, or no filter, stop.
        let cells = CandidatePolicy::new(10, true, None).in_cells(true);
        assert_eq!(
            cells.next(Fetch::Nearest(40), 12, None, Some(0.5), &q),
            Some(Fetch::All)
        );
        assert_eq!(
            cells.next(Fetch::Nearest(40), 12, Some(0.2), Some(0.5), &q),
            None
        );
        let plain_cells = CandidatePolicy::new(10, false, None).in_cells(true);
        assert_eq!(
            plain_cells.next(Fetch::Nearest(10), 4, None, Some(0.5), &q),
            None
        );
        // Dot: k + max(k, 16), more until the bound settles, a scan at the cap.
        let dot = CandidatePolicy::new(10, false, Some(DotReduction { max_norm: 2.0 }));
        assert_eq!(dot.first(), Fetch::Nearest(26));
        // The k-th hit scores 1 - 0.5; a last candidate at L2 distance 0 leaves room for better.
        assert_eq!(
            dot.next(Fetch::Nearest(26), 26, Some(0.5), Some(0.0), &q),
            Some(Fetch::Nearest(52))
        );
        // Far enough away, nothing beyond can beat it.
        assert_eq!(
            dot.next(Fetch::Nearest(26), 26, Some(0.5), Some(100.0), &q),
            None
        );
        assert_eq!(
            CandidatePolicy::new(2000, true, Some(DotReduction { max_norm: 1.0 })).first(),
            Fetch::All
        );
    }

    #[test]
    fn dot_scores_need_the_whole_stored_vector() {
        let stored = vector::to_le_bytes(&[0.5, 0.25, 0.0]);
        assert_eq!(dot_score(&[1.0, 2.0], Some(&stored), 2), Ok(0.0));
        assert!(dot_score(&[1.0, 2.0], Some(&stored[..8]), 2).is_err());
        assert!(dot_score(&[1.0, 2.0], None, 2).is_err());
    }
}
