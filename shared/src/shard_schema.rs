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
    }
}
