//! Writes the LanceDB half of a shard (the `lancedb` feature): the table `vector_index` in a
//! LanceDB database folder (the shard folder for vector-only snapshots, its `vector/` for
//! composite ones), then the vector index the shard's size calls for.
//!
//! Columns: `id` (utf8, as shardyfusion writes it), `id_type` (`"int"` | `"str"`, so ids come
//! back typed), `vector` (fixed_size_list<float32>[dim]), `payload` (JSON text or null) and one
//! `payload_<field>` column per filterable payload field (the names are
//! `edgeshard_shared::shard_schema::lance`'s, which the reader queries). The metric is given explicitly at index build, as at query.
//!
//! The index each shard gets is [`IndexPlan::for_rows`]'s choice.

use crate::error::{Error, Result};
use crate::input::Record;
use crate::vector_index::{IndexKind, IndexPlan};
use arrow_array::types::Float32Type;
use arrow_array::{
    ArrayRef, BooleanArray, FixedSizeListArray, Float64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema};
use edgeshard_native::lance::distance_type;
use edgeshard_shared::filter::{is_plain_field_name, ColumnKind};
use edgeshard_shared::json::{to_string_sorted, Style};
use edgeshard_shared::shard_schema::lance::{
    FILTER_COLUMN_PREFIX, ID_COLUMN, ID_TYPE_COLUMN, PAYLOAD_COLUMN, TABLE, VECTOR_COLUMN,
};
use edgeshard_shared::{Key, Metric};
use lancedb::index::vector::{IvfHnswSqIndexBuilder, IvfPqIndexBuilder};
use lancedb::index::Index;
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

/// Rows per record batch handed to LanceDB.
const BATCH_ROWS: usize = 16_384;

/// One runtime for every shard writer thread (LanceDB is async; `block_on` is called from
/// the builder's worker threads).
static RUNTIME: LazyLock<std::io::Result<tokio::runtime::Runtime>> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("edgeshard-lance")
        .enable_all()
        .build()
});

/// The columns of a snapshot's LanceDB tables (the same in every shard).
#[derive(Debug, Clone)]
pub struct LanceLayout {
    pub dim: usize,
    pub metric: Metric,
    /// `(field, kind)` of each `payload_<field>` filter column.
    pub filter_columns: Vec<(String, ColumnKind)>,
    pub index: IndexKind,
}

impl LanceLayout {
    /// Filter columns for every plain top-level payload field whose values, over all records,
    /// share one scalar type.
    pub fn filter_columns_of<'a>(
        records: impl Iterator<Item = &'a Record> + Clone,
    ) -> Vec<(String, ColumnKind)> {
        let mut fields: Vec<String> = records
            .clone()
            .filter_map(|r| {
                r.payload
                    .as_ref()?
                    .as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>())
            })
            .flatten()
            .filter(|f| is_plain_field_name(f))
            .collect();
        fields.sort();
        fields.dedup();
        fields
            .into_iter()
            .filter_map(|field| {
                let values = records
                    .clone()
                    .filter_map(|r| r.payload.as_ref()?.get(&field));
                match ColumnKind::of_values(values) {
                    Some(Some(kind)) => Some((field, kind)),
                    _ => None,
                }
            })
            .collect()
    }

    fn schema(&self) -> Arc<Schema> {
        let mut fields = vec![
            Field::new(ID_COLUMN, DataType::Utf8, false),
            Field::new(ID_TYPE_COLUMN, DataType::Utf8, false),
            Field::new(
                VECTOR_COLUMN,
                DataType::FixedSizeList(
                    Arc::new(Field::new("item", DataType::Float32, true)),
                    self.dim as i32,
                ),
                false,
            ),
            Field::new(PAYLOAD_COLUMN, DataType::Utf8, true),
        ];
        for (field, kind) in &self.filter_columns {
            let data_type = match kind {
                ColumnKind::Text => DataType::Utf8,
                ColumnKind::Number => DataType::Float64,
                ColumnKind::Bool => DataType::Boolean,
            };
            fields.push(Field::new(
                format!("{FILTER_COLUMN_PREFIX}{field}"),
                data_type,
                true,
            ));
        }
        Arc::new(Schema::new(fields))
    }
}

#[derive(Debug, Clone)]
pub struct LanceShardStats {
    pub rows: u64,
    /// Bytes of every file of the table.
    pub bytes: u64,
    /// xxh3-128 over the table's files (relative path, then content), as the checkpoint id.
    pub checkpoint_id: String,
    pub plan: IndexPlan,
    pub duration_ms: u64,
    pub index_ms: u64,
}

/// Writes `records` (their vectors; records without one are skipped) as the table
/// `vector_index` of a new LanceDB database at `db_dir`, then builds its index.
pub fn write_lance_shard(
    db_dir: &Path,
    records: &[Record],
    layout: &LanceLayout,
) -> Result<LanceShardStats> {
    let started = Instant::now();
    let location = db_dir.display().to_string();
    let lance = |e: lancedb::Error| Error::LanceDb {
        location: location.clone(),
        detail: e.to_string(),
    };
    let arrow = |e: arrow_schema::ArrowError| Error::LanceDb {
        location: location.clone(),
        detail: format!("building record batches: {e}"),
    };
    std::fs::create_dir_all(db_dir).map_err(Error::io(db_dir.display()))?;
    let schema = layout.schema();
    let with_vectors: Vec<(&Record, &Vec<f32>)> = records
        .iter()
        .filter_map(|r| r.vector.as_ref().map(|v| (r, v)))
        .collect();
    let mut batches = Vec::with_capacity(with_vectors.len().div_ceil(BATCH_ROWS));
    for chunk in with_vectors.chunks(BATCH_ROWS) {
        batches.push(batch(&schema, layout, chunk).map_err(arrow)??);
    }
    let rows = with_vectors.len();
    let plan = IndexPlan::for_rows(layout.index, rows, layout.dim);
    let runtime = RUNTIME.as_ref().map_err(|e| Error::LanceDb {
        location: location.clone(),
        detail: format!("cannot start the async runtime: {e}"),
    })?;
    let uri = location.clone();
    let metric = layout.metric;
    let index_ms = runtime.block_on(async {
        let db = lancedb::connect(&uri).execute().await.map_err(lance)?;
        let table = db
            .create_table(TABLE, batches)
            .execute()
            .await
            .map_err(lance)?;
        let index_started = Instant::now();
        let index = match plan {
            IndexPlan::Flat => None,
            IndexPlan::IvfHnswSq { partitions } => Some(Index::IvfHnswSq(
                IvfHnswSqIndexBuilder::default()
                    .distance_type(distance_type(metric))
                    .num_partitions(partitions),
            )),
            IndexPlan::IvfPq {
                partitions,
                sub_vectors,
            } => Some(Index::IvfPq(
                IvfPqIndexBuilder::default()
                    .distance_type(distance_type(metric))
                    .num_partitions(partitions)
                    .num_sub_vectors(sub_vectors),
            )),
        };
        if let Some(index) = index {
            table
                .create_index(&[VECTOR_COLUMN], index)
                .execute()
                .await
                .map_err(lance)?;
        }
        Ok::<_, Error>(index_started.elapsed().as_millis() as u64)
    })?;
    let (bytes, checkpoint_id) = hash_tree(db_dir)?;
    Ok(LanceShardStats {
        rows: rows as u64,
        bytes,
        checkpoint_id,
        plan,
        duration_ms: started.elapsed().as_millis() as u64,
        index_ms,
    })
}

/// One record batch; the inner error is a record that cannot be written (a bytes id).
fn batch(
    schema: &Arc<Schema>,
    layout: &LanceLayout,
    rows: &[(&Record, &Vec<f32>)],
) -> std::result::Result<Result<RecordBatch>, arrow_schema::ArrowError> {
    let mut ids = Vec::with_capacity(rows.len());
    let mut id_types = Vec::with_capacity(rows.len());
    for (record, _) in rows {
        let (text, kind) = match &record.key {
            Key::Int(i) => (i.to_string(), "int"),
            Key::Str(s) => (s.clone(), "str"),
            Key::Bytes(_) => {
                return Ok(Err(Error::InvalidRecord {
                    record: record.number,
                    field: "key".into(),
                    reason: "LanceDB vector ids are integers or text, not bytes (use \
                             --key-encoding utf8 or u64be, or --vector-backend sqlite-vec)"
                        .into(),
                }))
            }
        };
        ids.push(text);
        id_types.push(kind);
    }
    let vectors = FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
        rows.iter()
            .map(|(_, v)| Some(v.iter().copied().map(Some).collect::<Vec<_>>())),
        layout.dim as i32,
    );
    let payloads: StringArray = rows
        .iter()
        .map(|(r, _)| {
            r.payload
                .as_ref()
                .filter(|p| !p.is_null())
                .map(|p| to_string_sorted(p, Style::Python))
        })
        .collect();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ids)),
        Arc::new(StringArray::from(id_types)),
        Arc::new(vectors),
        Arc::new(payloads),
    ];
    for (field, kind) in &layout.filter_columns {
        let values = rows
            .iter()
            .map(|(r, _)| r.payload.as_ref().and_then(|p| p.get(field)));
        let column: ArrayRef = match kind {
            ColumnKind::Text => Arc::new(
                values
                    .map(|v| v.and_then(Value::as_str).map(str::to_string))
                    .collect::<StringArray>(),
            ),
            ColumnKind::Number => Arc::new(
                values
                    .map(|v| v.and_then(Value::as_f64))
                    .collect::<Float64Array>(),
            ),
            ColumnKind::Bool => Arc::new(
                values
                    .map(|v| v.and_then(Value::as_bool))
                    .collect::<BooleanArray>(),
            ),
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema.clone(), columns).map(Ok)
}

/// Total size and a content hash of every file under `dir` (sorted by relative path).
fn hash_tree(dir: &Path) -> Result<(u64, String)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).map_err(Error::io(current.display()))? {
            let entry = entry.map_err(Error::io(current.display()))?;
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut bytes = 0u64;
    for file in &files {
        let relative = file.strip_prefix(dir).unwrap_or(file);
        hasher.update(relative.to_string_lossy().as_bytes());
        let content = std::fs::read(file).map_err(Error::io(file.display()))?;
        bytes += content.len() as u64;
        hasher.update(&content);
    }
    Ok((bytes, format!("{:032x}", hasher.digest128())))
}
