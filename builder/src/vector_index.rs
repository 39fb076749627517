//! Which vector index a LanceDB shard gets, and with what parameters (pure: used by the
//! builder with or without the `lancedb` feature, so the choice is testable everywhere).
//!
//! [`IndexKind::Auto`]: shards below [`FLAT_MAX_ROWS`] rows get no index (an exact flat scan,
//! recall 1.0); larger ones IVF_HNSW_SQ with parameters derived from the row count and
//! dimension, recorded in the manifest's `index_params`.

use serde_json::{json, Value};

/// Below this many rows a shard is searched flat (exactly). Measured on the Debian set (384-d,
/// one shard, docs/benchmarks.md): a flat LanceDB scan costs about 1.5 µs per row (8.5 ms at
/// 5,000 rows, 31 ms at 20,000), an IVF_HNSW_SQ query 7-8 ms at any of these sizes; around
/// 5,000 rows they meet, and below that the index buys nothing but build time.
pub const FLAT_MAX_ROWS: usize = 5_000;

/// Rows per IVF partition. HNSW searches a large partition well, so partitions are big: on
/// the Debian set one shard of 62,666 rows in partitions of 8,192 (8 partitions, 4 probed)
/// reached recall@10 0.931 only, while 4 partitions of 15,667 rows, all probed, reached 0.9996
/// at about the same latency (docs/benchmarks.md).
pub const ROWS_PER_PARTITION: usize = 32_768;

/// `--vector-index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum IndexKind {
    /// LanceDB: flat below [`FLAT_MAX_ROWS`], IVF_HNSW_SQ above. sqlite-vec: flat below
    /// `shared::ivf::AUTO_MIN_ROWS` vectors in the largest shard, IVF above (flat with
    /// `--quantization binary`).
    #[default]
    Auto,
    /// No index: exact search.
    Flat,
    IvfHnswSq,
    IvfPq,
    /// sqlite-vec only: k-means cells inside each shard (`shared::ivf`); a search reads the
    /// probed cells only.
    Ivf,
}

/// The index one shard gets, with the parameters recorded in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexPlan {
    Flat,
    IvfHnswSq { partitions: u32 },
    IvfPq { partitions: u32, sub_vectors: u32 },
}

impl IndexPlan {
    /// The index a shard of `rows` vectors of `dim` dimensions gets.
    ///
    /// IVF partitions of about [`ROWS_PER_PARTITION`] rows (at least 1): HNSW inside a
    /// partition keeps recall high, and a query then reads only the probed partitions. PQ uses
    /// `dim / 4` sub-vectors
    /// (LanceDB's default `dim / 16` loses much of the recall on real embeddings, and
    /// shardyfusion's single sub-vector nearly all of it), or the largest divisor of `dim`
    /// below that.
    pub fn for_rows(kind: IndexKind, rows: usize, dim: usize) -> Self {
        let partitions = rows.div_ceil(ROWS_PER_PARTITION).clamp(1, 4_096) as u32;
        // The largest divisor of dim that is at most dim / 4 (LanceDB needs dim % n == 0).
        let most = (dim / 4).max(1);
        let sub_vectors = (1..=most)
            .rev()
            .find(|n| dim.is_multiple_of(*n))
            .unwrap_or(1) as u32;
        match kind {
            // `ivf` is sqlite-vec's (the build refuses it with LanceDB).
            IndexKind::Flat | IndexKind::Ivf => Self::Flat,
            IndexKind::Auto if rows < FLAT_MAX_ROWS => Self::Flat,
            IndexKind::Auto | IndexKind::IvfHnswSq => Self::IvfHnswSq { partitions },
            IndexKind::IvfPq => Self::IvfPq {
                partitions,
                sub_vectors,
            },
        }
    }

    pub fn index_type(self) -> &'static str {
        match self {
            Self::Flat => "flat",
            Self::IvfHnswSq { .. } => "ivf_hnsw_sq",
            Self::IvfPq { .. } => "ivf_pq",
        }
    }

    pub fn quantization(self) -> Option<&'static str> {
        match self {
            Self::Flat => None,
            Self::IvfHnswSq { .. } => Some("sq8"),
            Self::IvfPq { .. } => Some("pq"),
        }
    }

    /// Build parameters and query defaults (`nprobes`, `ef`, `refine_factor`), as recorded in
    /// `writer_info` and, for the snapshot, `custom.vector.index_params`.
    pub fn params(self) -> Value {
        match self {
            Self::Flat => json!({}),
            // Probing half the partitions (at least 4) with ef 100 and a 2x refine measured
            // recall@10 >= 0.95 (docs/benchmarks.md).
            Self::IvfHnswSq { partitions } => json!({
                "num_partitions": partitions,
                "nprobes": partitions.div_ceil(2).max(4).min(partitions),
                "ef": 100,
                "refine_factor": 2,
            }),
            Self::IvfPq {
                partitions,
                sub_vectors,
            } => json!({
                "num_partitions": partitions,
                "num_sub_vectors": sub_vectors,
                "nprobes": partitions.div_ceil(2).max(4).min(partitions),
                "refine_factor": 4,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_shards_are_flat_large_ones_indexed() {
        assert_eq!(
            IndexPlan::for_rows(IndexKind::Auto, 4_999, 384),
            IndexPlan::Flat
        );
        assert_eq!(
            IndexPlan::for_rows(IndexKind::Auto, 5_000, 384),
            IndexPlan::IvfHnswSq { partitions: 1 }
        );
        assert_eq!(
            IndexPlan::for_rows(IndexKind::Auto, 125_000, 384),
            IndexPlan::IvfHnswSq { partitions: 4 }
        );
        assert_eq!(
            IndexPlan::for_rows(IndexKind::IvfPq, 70_000, 384),
            IndexPlan::IvfPq {
                partitions: 3,
                sub_vectors: 96
            }
        );
        assert_eq!(
            IndexPlan::for_rows(IndexKind::Flat, 1_000_000, 8),
            IndexPlan::Flat
        );
    }
}
