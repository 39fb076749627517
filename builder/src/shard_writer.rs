//! Writes one shard: a SQLite file with the `kv` table and, for unified and vector-only
//! snapshots, the sqlite-vec tables (`vec_index`, `vec_payloads`, `vec_id_map`), with exactly the
//! schema of the format spec. Vector-only shards leave `kv` empty.
//!
//! dot_product has no sqlite-vec distance: its vectors are stored augmented for L2 (one extra
//! dimension, see [`DotReduction`]), in a `vec0` index of `dim + 1` dimensions with
//! `distance_metric=l2`.

use crate::error::{Error, Result};
use crate::input::Record;
use edgeshard_shared::json::{to_string_sorted, Style};
use edgeshard_shared::query::VectorId;
use edgeshard_shared::vector::DotReduction;
use edgeshard_shared::{codes, integrity};
use edgeshard_shared::{vector, Key, Metric};
use rusqlite::{params, Connection, FileControl};
use std::path::Path;
use std::time::Instant;

use edgeshard_shared::ivf::{self, Cells};
pub use edgeshard_shared::shard_schema::{
    vec_index_ddl, vec_index_ivf_ddl, KV_DDL, VEC_ID_MAP_DDL, VEC_IVF_CENTROIDS_DDL,
    VEC_IVF_CHUNKS_INDEX_DDL, VEC_PAYLOADS_DDL,
};

/// What the manifest records about a written shard.
#[derive(Debug, Clone)]
pub struct ShardStats {
    pub rows: u64,
    pub bytes: u64,
    pub checkpoint_id: String,
    pub min_key: Option<Key>,
    pub max_key: Option<Key>,
    pub duration_ms: u64,
    /// The seed of the page checksums every page of the SQLite file carries
    /// ([`edgeshard_shared::integrity::seal_pages`]); `None` when there is no SQLite file.
    pub page_seed: Option<u64>,
    /// IVF shards: how many cells and the `vec0` chunk size (recorded in `writer_info`).
    pub ivf: Option<IvfStats>,
    /// The binary codes file written beside the shard (`--quantization binary`).
    pub codes: Option<CodesStats>,
}

/// The codes file a shard got ([`edgeshard_shared::codes`]).
#[derive(Debug, Clone)]
pub struct CodesStats {
    pub bytes: u64,
    /// xxh3-128 of the file, hex.
    pub hash: String,
}

/// The IVF index a shard got.
#[derive(Debug, Clone, Copy)]
pub struct IvfStats {
    pub cells: usize,
    pub chunk_size: usize,
}

pub struct VectorLayout {
    pub dim: usize,
    pub metric: Metric,
    /// dot_product: how vectors are augmented for the L2 index (required for that metric).
    pub dot: Option<DotReduction>,
    /// Write the `kv` rows (false for vector-only snapshots: the table stays empty).
    pub kv: bool,
    /// Split the vectors into IVF cells ([`ivf`]).
    pub ivf: bool,
    /// Write binary codes of the vectors beside the shard ([`codes`]; flat index only).
    pub binary_codes: bool,
}

/// Writes `records` (sorted by encoded key, no duplicates) to a new SQLite file at `path`, every
/// page of it carrying a checksum of `page_seed` = (seed, db_id) (see [`integrity`]).
/// `on_rows` is called as rows are written, for progress reporting.
///
/// [`integrity`]: edgeshard_shared::integrity
pub fn write_shard(
    path: &Path,
    records: &[Record],
    vectors: Option<&VectorLayout>,
    page_size: u32,
    page_seed: (u64, u32),
    on_rows: &(dyn Fn(u64) + Sync),
) -> Result<ShardStats> {
    let started = Instant::now();
    let location = path.display().to_string();
    let sql = Error::sqlite(&location);
    edgeshard_native::sqlite_vec_ext::register();
    let mut conn = Connection::open(path).map_err(Error::sqlite(&location))?;
    // The file is private until published and rebuilt from scratch on failure, so no journal
    // or fsync is needed while filling it.
    conn.execute_batch(&format!(
        "PRAGMA page_size = {page_size};
         PRAGMA journal_mode = OFF;
         PRAGMA synchronous = OFF;
         PRAGMA locking_mode = EXCLUSIVE;
         PRAGMA cache_size = -65536;"
    ))
    .map_err(Error::sqlite(&location))?;
    // Room for the page checksums, set while the database is still empty (SQLite fixes it when
    // the first page is written). Part of the file format: every SQLite reader honours it.
    let mut reserve = integrity::PAGE_CHECKSUM_BYTES as std::ffi::c_int;
    conn.file_control(Some("main"), FileControl::ReserveBytes(&mut reserve))
        .map_err(Error::sqlite(&location))?;
    if let Some(v) = vectors {
        if (v.metric == Metric::DotProduct) != v.dot.is_some() {
            return Err(Error::Usage(
                "internal: dot_product vectors need their L2 reduction (and only they)".into(),
            ));
        }
    }
    // Each vector as the index stores it (dot_product: its L2 reduction), by rowid.
    let stored: Vec<(i64, Vec<f32>)> = match vectors {
        Some(layout) => records
            .iter()
            .enumerate()
            .filter_map(|(row, r)| r.vector.as_ref().map(|v| (row as i64, v)))
            .map(|(rowid, v)| {
                let stored = match &layout.dot {
                    Some(dot) => dot.augment(v),
                    None => v.clone(),
                };
                (rowid, stored)
            })
            .collect(),
        None => Vec::new(),
    };
    let ivf_plan = match vectors {
        Some(layout) if layout.ivf && !stored.is_empty() => {
            Some(plan_cells(&stored, layout.metric, page_seed.1)?)
        }
        _ => None,
    };
    // The centroids first: their pages then sit at the start of the file, read with the header.
    if ivf_plan.is_some() {
        conn.execute_batch(VEC_IVF_CENTROIDS_DDL)
            .map_err(Error::sqlite(&location))?;
    }
    conn.execute_batch(KV_DDL)
        .map_err(Error::sqlite(&location))?;
    if let Some(v) = vectors {
        let index_ddl = match &ivf_plan {
            Some(plan) => vec_index_ivf_ddl(v.dim, v.metric, plan.stats.chunk_size),
            None => vec_index_ddl(v.dim, v.metric),
        };
        conn.execute_batch(&format!(
            "{index_ddl}; {VEC_PAYLOADS_DDL}; {VEC_ID_MAP_DDL};"
        ))
        .map_err(Error::sqlite(&location))?;
        // Before the rows: sqlite-vec finds a cell's open chunk on every insert with the same
        // `partition00 = ?` lookup a search makes (without the index, a scan of all chunks).
        if ivf_plan.is_some() {
            conn.execute_batch(VEC_IVF_CHUNKS_INDEX_DDL)
                .map_err(Error::sqlite(&location))?;
        }
    }
    let write_kv = vectors.is_none_or(|v| v.kv);
    let tx = conn.transaction().map_err(Error::sqlite(&location))?;
    // One table at a time, so each table's pages are contiguous in the file: a range reader's
    // read-ahead then turns a scan (a vector chunk table, a kv walk) into few large reads.
    {
        let mut kv = tx
            .prepare("INSERT INTO kv (k, v) VALUES (?1, ?2)")
            .map_err(Error::sqlite(&location))?;
        let mut pending = 0u64;
        for record in records.iter().filter(|_| write_kv) {
            kv.execute(params![record.encoded_key, record.value])
                .map_err(Error::sqlite(&location))?;
            pending += 1;
            if pending == 1024 {
                on_rows(pending);
                pending = 0;
            }
        }
        on_rows(pending);
        if !write_kv {
            on_rows(records.len() as u64);
        }
    }
    if vectors.is_some() {
        // In a unified snapshot the vector id is the record key; rowids are 0.. per shard.
        let with_rowids = || {
            records
                .iter()
                .enumerate()
                .filter_map(|(row, r)| r.vector.as_ref().map(|v| (row as i64, r, v)))
        };
        match &ivf_plan {
            None => {
                let mut index = tx
                    .prepare("INSERT INTO vec_index (rowid, embedding) VALUES (?1, ?2)")
                    .map_err(Error::sqlite(&location))?;
                for (rowid, v) in &stored {
                    index
                        .execute(params![rowid, vector::to_le_bytes(v)])
                        .map_err(Error::sqlite(&location))?;
                }
            }
            Some(plan) => {
                let mut centroids = tx
                    .prepare("INSERT INTO vec_ivf_centroids (cell, centroid) VALUES (?1, ?2)")
                    .map_err(Error::sqlite(&location))?;
                for cell in 0..plan.cells.len() {
                    centroids
                        .execute(params![cell as i64, plan.cells.centroid_bytes(cell)])
                        .map_err(Error::sqlite(&location))?;
                }
                // Cell by cell, so each cell's vectors fill chunks of their own in order.
                let mut index = tx
                    .prepare("INSERT INTO vec_index (rowid, embedding, cell) VALUES (?1, ?2, ?3)")
                    .map_err(Error::sqlite(&location))?;
                for &(cell, at) in &plan.order {
                    let (rowid, v) = &stored[at];
                    index
                        .execute(params![rowid, vector::to_le_bytes(v), cell as i64])
                        .map_err(Error::sqlite(&location))?;
                }
            }
        }
        let mut id_map = tx
            .prepare("INSERT INTO vec_id_map (internal_id, original_id) VALUES (?1, ?2)")
            .map_err(Error::sqlite(&location))?;
        for (rowid, record, _) in with_rowids() {
            id_map
                .execute(params![
                    rowid,
                    original_id_json(&record.key, record.number)?
                ])
                .map_err(Error::sqlite(&location))?;
        }
        let mut payloads = tx
            .prepare("INSERT INTO vec_payloads (rowid, payload) VALUES (?1, ?2)")
            .map_err(Error::sqlite(&location))?;
        for (rowid, record, _) in with_rowids() {
            if let Some(payload) = &record.payload {
                payloads
                    .execute(params![rowid, to_string_sorted(payload, Style::Python)])
                    .map_err(Error::sqlite(&location))?;
            }
        }
    }
    tx.commit().map_err(Error::sqlite(&location))?;
    // Where each vector sits in vec0's chunks, for the codes file's map (read before the file
    // is closed; the page positions come from the sealed image below).
    let slots = match vectors {
        Some(layout) if layout.binary_codes && !stored.is_empty() => {
            if ivf_plan.is_some() {
                return Err(Error::Usage(
                    "--quantization binary works with the flat sqlite-vec index only, not with \
                     --vector-index ivf"
                        .into(),
                ));
            }
            Some(vector_slots(&conn).map_err(Error::sqlite(&location))?)
        }
        _ => None,
    };
    conn.close().map_err(|(_, e)| sql(e))?;

    let (image, checkpoint_id, sealed_seed) = seal_file(path, page_seed)?;
    let bytes = image.len() as u64;
    let codes = match (slots, vectors) {
        (Some(slots), Some(layout)) => Some(write_codes(
            path, &image, &slots, &stored, layout, page_size,
        )?),
        _ => None,
    };
    Ok(ShardStats {
        rows: records.len() as u64,
        bytes,
        checkpoint_id,
        min_key: records.first().map(|r| r.key.clone()),
        max_key: records.last().map(|r| r.key.clone()),
        duration_ms: started.elapsed().as_millis() as u64,
        page_seed: Some(sealed_seed),
        codes,
        ivf: ivf_plan.map(|plan| plan.stats),
    })
}

/// A shard's cells and the order its vectors are written in.
struct CellPlan {
    cells: Cells,
    /// `(cell, index into the stored vectors)`, by cell then rowid.
    order: Vec<(usize, usize)>,
    stats: IvfStats,
}

/// Trains the shard's cells (seeded by its db_id: builds are reproducible) and assigns every
/// vector to its nearest.
fn plan_cells(stored: &[(i64, Vec<f32>)], metric: Metric, db_id: u32) -> Result<CellPlan> {
    let refs: Vec<&[f32]> = stored.iter().map(|(_, v)| v.as_slice()).collect();
    let seed = edgeshard_shared::vector_routing::DEFAULT_SEED ^ u64::from(db_id);
    let cells = Cells::train(&refs, metric, seed).map_err(|e| {
        Error::Usage(format!(
            "internal: training the IVF cells of shard {db_id} failed: {e}"
        ))
    })?;
    let mut order: Vec<(usize, usize)> = refs
        .iter()
        .enumerate()
        .map(|(at, v)| (cells.assign(v), at))
        .collect();
    order.sort_unstable();
    let stats = IvfStats {
        cells: cells.len(),
        chunk_size: ivf::chunk_size_for(stored.len(), cells.len()),
    };
    Ok(CellPlan {
        cells,
        order,
        stats,
    })
}

/// `vec_id_map.original_id`, in shardyfusion's exact form: `{"v": 7, "t": "int"}`.
fn original_id_json(key: &Key, record: u64) -> Result<String> {
    let id = VectorId::from_key(key).ok_or_else(|| Error::InvalidRecord {
        record,
        field: "key".into(),
        reason: "a vector id must be an integer or UTF-8 text; this raw key is neither".into(),
    })?;
    Ok(id.to_stored())
}

/// Seals the finished file's pages (gaps zeroed, checksums written, see
/// [`integrity::seal_pages`]) and returns its size, content hash (xxh3-128, hex: the shard's
/// `checkpoint_id`, a cache identity that changes whenever the bytes do) and page-checksum seed.
fn seal_file(path: &Path, (seed, db_id): (u64, u32)) -> Result<(Vec<u8>, String, u64)> {
    let location = path.display().to_string();
    let mut image = std::fs::read(path).map_err(Error::io(&location))?;
    let sealed_seed = integrity::seal_pages(&mut image, seed, db_id).map_err(|e| {
        Error::Usage(format!(
            "internal: sealing the pages of {location} failed: {e}"
        ))
    })?;
    std::fs::write(path, &image).map_err(Error::io(&location))?;
    let hash = integrity::content_hash(&image);
    Ok((image, hash, sealed_seed))
}

/// Where vec0 keeps each vector: the root page of its vector chunk table, each chunk row's
/// real rowid with its chunk id, and every vector's `(rowid, chunk id, slot)`, slot order.
struct VectorSlots {
    chunks_root: u32,
    chunk_of_row: std::collections::HashMap<i64, i64>,
    slots: Vec<(i64, i64, i64)>,
}

fn vector_slots(conn: &Connection) -> rusqlite::Result<VectorSlots> {
    let chunks_root: u32 = conn.query_row(
        "SELECT rootpage FROM sqlite_master WHERE name = 'vec_index_vector_chunks00'",
        [],
        |r| r.get(0),
    )?;
    // The chunk table declares a column named `rowid` (not an alias of the real one); `oid`
    // still names the B-tree's key.
    let mut stmt = conn.prepare("SELECT oid, rowid FROM vec_index_vector_chunks00")?;
    let chunk_of_row = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare(
        "SELECT rowid, chunk_id, chunk_offset FROM vec_index_rowids \
         ORDER BY chunk_id, chunk_offset",
    )?;
    let slots = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(VectorSlots {
        chunks_root,
        chunk_of_row,
        slots,
    })
}

/// Writes `shard.codes` beside the shard at `path` (sealed `image`): the binary codes of its
/// vectors in slot order and where each chunk's blob sits in the file.
fn write_codes(
    path: &Path,
    image: &[u8],
    slots: &VectorSlots,
    stored: &[(i64, Vec<f32>)],
    layout: &VectorLayout,
    page_size: u32,
) -> Result<CodesStats> {
    let location = path.display().to_string();
    let internal = |why: String| Error::Usage(format!("internal: codes of {location}: {why}"));
    let usable_size = page_size - integrity::PAGE_CHECKSUM_BYTES as u32;
    let rows = codes::locate_rows(image, slots.chunks_root, page_size, usable_size, 1)
        .map_err(|e| internal(e.to_string()))?;
    let blob_of_chunk: std::collections::HashMap<i64, codes::BlobLocation> = rows
        .into_iter()
        .filter_map(|(row, loc)| slots.chunk_of_row.get(&row).map(|chunk| (*chunk, loc)))
        .collect();
    let by_rowid: std::collections::HashMap<i64, &[f32]> = stored
        .iter()
        .map(|(rowid, v)| (*rowid, &v[..layout.dim]))
        .collect();
    let mut chunks: Vec<codes::ChunkLayout> = Vec::new();
    let mut vectors = Vec::with_capacity(slots.slots.len());
    for (ordinal, &(rowid, chunk_id, slot)) in slots.slots.iter().enumerate() {
        let starts_chunk = chunks.last().is_none_or(|_| slot == 0);
        if starts_chunk {
            let location = blob_of_chunk
                .get(&chunk_id)
                .cloned()
                .ok_or_else(|| internal(format!("chunk {chunk_id} has no row")))?;
            chunks.push(codes::ChunkLayout {
                first: ordinal as u32,
                count: 0,
                location,
            });
        }
        let Some(chunk) = chunks.last_mut() else {
            return Err(internal("no chunk".into()));
        };
        // vec0 fills a chunk's slots in order; the map relies on it.
        if slot != chunk.count as i64 {
            return Err(internal(format!(
                "vector {rowid} is in slot {slot} of chunk {chunk_id}, not slot {}",
                chunk.count
            )));
        }
        chunk.count += 1;
        let v = by_rowid
            .get(&rowid)
            .ok_or_else(|| internal(format!("vector {rowid} was not written")))?;
        vectors.push((rowid, *v));
    }
    let file = codes::Codes::encode(&codes::CodesInput {
        metric: layout.metric,
        vectors,
        stored_dim: stored.first().map_or(layout.dim, |(_, v)| v.len()),
        page_size,
        usable_size,
        chunks,
    })
    .map_err(|e| internal(e.to_string()))?;
    // What a reader will do with it: refuse a file that does not parse.
    let page_count = (image.len() / page_size as usize) as u32;
    codes::Codes::parse(&file, Some(page_count)).map_err(|e| internal(e.to_string()))?;
    let codes_path = path.with_file_name(codes::FILE_NAME);
    std::fs::write(&codes_path, &file).map_err(Error::io(codes_path.display()))?;
    Ok(CodesStats {
        bytes: file.len() as u64,
        hash: integrity::content_hash(&file),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_ids_match_shardyfusion_text() {
        assert_eq!(
            original_id_json(&Key::Int(0), 1).unwrap(),
            r#"{"v": 0, "t": "int"}"#
        );
        assert_eq!(
            original_id_json(&Key::Str("id-1".into()), 1).unwrap(),
            r#"{"v": "id-1", "t": "str"}"#
        );
        assert!(original_id_json(&Key::Bytes(vec![0xff]), 3).is_err());
    }
}
