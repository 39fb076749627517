//! A shard database's tables (format spec section 5), written and read here side by side: the
//! DDL the builder runs and the statements every reader runs against it. The vector-search
//! statements are in [`crate::search_plan::sql`].

use crate::vector::Metric;

/// The KV table: keys in the snapshot's key encoding, values as given.
pub const KV_DDL: &str = "CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID";
/// Each vector's payload (a JSON object), by the vector's rowid in `vec_index`.
pub const VEC_PAYLOADS_DDL: &str =
    "CREATE TABLE vec_payloads (rowid INTEGER PRIMARY KEY, payload TEXT NOT NULL)";
/// Each vector's id as written (`{"v": 7, "t": "int"}`, see [`crate::query::VectorId`]), by
/// its rowid in `vec_index`.
pub const VEC_ID_MAP_DDL: &str =
    "CREATE TABLE vec_id_map (internal_id INTEGER PRIMARY KEY, original_id TEXT NOT NULL)";

/// `CREATE VIRTUAL TABLE vec_index ...` (sqlite-vec `vec0`) for a dimension and metric: cosine
/// and l2 as they are, dot_product as its L2 reduction (`dim + 1`, l2; see
/// [`crate::vector::DotReduction`]).
pub fn vec_index_ddl(dim: usize, metric: Metric) -> String {
    let (dim, metric) = match metric {
        Metric::DotProduct => (dim + 1, Metric::L2),
        other => (dim, other),
    };
    format!(
        "CREATE VIRTUAL TABLE vec_index USING vec0(embedding float[{dim}] distance_metric={})",
        metric.as_str()
    )
}

/// The LanceDB half of a shard (format spec section 5; shardyfusion's names): the table and its
/// columns. The builder's `lance_writer` makes the Arrow schema from these names and the native
/// reader's `lance` module queries them, so a rename here changes both sides at once.
pub mod lance {
    /// The table in every LanceDB shard.
    pub const TABLE: &str = "vector_index";
    /// The vector id as text (utf8, not null), as shardyfusion writes it.
    pub const ID_COLUMN: &str = "id";
    /// `"int"` or `"str"` (utf8, not null; edgeshard's), so ids come back typed.
    pub const ID_TYPE_COLUMN: &str = "id_type";
    /// The vector: `fixed_size_list<float32>[dim]`, not null.
    pub const VECTOR_COLUMN: &str = "vector";
    /// The payload as JSON text, or null.
    pub const PAYLOAD_COLUMN: &str = "payload";
    /// Prefix of the per-field filter columns: `payload_<field>` (utf8, float64 or boolean) for
    /// each payload field whose values share one kind.
    pub const FILTER_COLUMN_PREFIX: &str = "payload_";
}

/// `vec_index` of an IVF shard ([`crate::ivf`]): as [`vec_index_ddl`] plus each vector's cell
/// as a `partition key` column (sqlite-vec keeps each cell's vectors in chunks of their own)
/// and a `chunk_size` fitted to the cells ([`crate::ivf::chunk_size_for`]).
pub fn vec_index_ivf_ddl(dim: usize, metric: Metric, chunk_size: usize) -> String {
    let plain = vec_index_ddl(dim, metric);
    let columns_end = plain.len() - 1;
    format!(
        "{}, cell integer partition key, chunk_size={chunk_size})",
        &plain[..columns_end]
    )
}

/// An IVF shard's centroids, one row per cell (numbered 0..), each `dim` little-endian f32 of
/// the stored space (`dim + 1` for dot_product). Created before every other table, so its
/// pages sit at the start of the file.
pub const VEC_IVF_CENTROIDS_DDL: &str =
    "CREATE TABLE vec_ivf_centroids (cell INTEGER PRIMARY KEY, centroid BLOB NOT NULL)";

/// Finds a cell's chunks without reading the whole chunk list: sqlite-vec looks them up with
/// `WHERE partition00 = ?` on its shadow table, which has no index of its own.
pub const VEC_IVF_CHUNKS_INDEX_DDL: &str =
    "CREATE INDEX vec_index_chunks_cell ON vec_index_chunks (partition00)";

/// The value of key `?1` (encoded), if stored.
pub const KV_GET: &str = "SELECT v FROM kv WHERE k = ?1";
/// The shard's first key: a reader checks it routes to the shard before its first "not found".
pub const KV_FIRST_KEY: &str = "SELECT k FROM kv ORDER BY k LIMIT 1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_statements_run_on_the_written_tables() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("{KV_DDL}; {VEC_PAYLOADS_DDL}; {VEC_ID_MAP_DDL};"))
            .unwrap();
        conn.execute("INSERT INTO kv VALUES (x'02', x'bb'), (x'01', x'aa')", [])
            .unwrap();
        let value: Vec<u8> = conn.query_row(KV_GET, [vec![2u8]], |r| r.get(0)).unwrap();
        assert_eq!(value, vec![0xbb]);
        let first: Vec<u8> = conn.query_row(KV_FIRST_KEY, [], |r| r.get(0)).unwrap();
        assert_eq!(first, vec![1]);
        assert_eq!(
            vec_index_ddl(4, Metric::DotProduct),
            "CREATE VIRTUAL TABLE vec_index USING vec0(embedding float[5] distance_metric=l2)"
        );
        assert_eq!(
            vec_index_ivf_ddl(4, Metric::Cosine, 16),
            "CREATE VIRTUAL TABLE vec_index USING vec0(embedding float[4] distance_metric=cosine, \
             cell integer partition key, chunk_size=16)"
        );
    }
}
