//! LanceDB vector shards (the `lancedb` feature): a shard's table `vector_index`, opened in place
//! on a local disk or S3 (no download: LanceDB reads the columns and index pages it needs with
//! ranged GETs), searched with the snapshot's metric passed explicitly every time.
//!
//! Table columns (format spec section 5, plus what edgeshard adds):
//! - `id` (utf8): the vector id as text, as shardyfusion writes it;
//! - `id_type` (utf8, `"int"` | `"str"`; edgeshard only): so ids come back with their type;
//! - `vector` (fixed_size_list<float32>[dim]);
//! - `payload` (utf8 JSON, nullable);
//! - `payload_<field>` (utf8 | float64 | bool; edgeshard only): one column per plain top-level
//!   payload field whose values share one type, so payload filters run inside LanceDB as
//!   prefilters ([`Filter::to_sql`]).
//!
//! LanceDB's `_distance` is converted to edgeshard's one convention per metric (lower is
//! better): cosine `1 - cos` and dot `1 - q.v` as they are, l2 from squared to Euclidean.

use crate::error::{Error, Result};
use crate::remote::store_error_kind;
use arrow_array::{Array, Float32Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use edgeshard_shared::filter::{ColumnKind, Filter};
use edgeshard_shared::query::VectorId;
use edgeshard_shared::vector::AnnParams;
use edgeshard_shared::{ErrorKind, Metric};
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::DistanceType;
use serde_json::Value;

/// The table and column names, defined once beside the shard DDL (the builder writes them).
pub use edgeshard_shared::shard_schema::lance::{
    FILTER_COLUMN_PREFIX, ID_COLUMN, ID_TYPE_COLUMN, PAYLOAD_COLUMN, TABLE, VECTOR_COLUMN,
};
const DISTANCE_COLUMN: &str = "_distance";

/// The LanceDB distance type of a snapshot metric.
pub fn distance_type(metric: Metric) -> DistanceType {
    match metric {
        Metric::Cosine => DistanceType::Cosine,
        Metric::L2 => DistanceType::L2,
        Metric::DotProduct => DistanceType::Dot,
    }
}

/// LanceDB's `_distance` in edgeshard's convention for `metric`.
pub fn score_from_distance(metric: Metric, distance: f32) -> f64 {
    let d = f64::from(distance);
    match metric {
        // Squared Euclidean; rounding can make it a hair below zero.
        Metric::L2 => d.max(0.0).sqrt(),
        Metric::Cosine | Metric::DotProduct => d,
    }
}

/// One search against one shard.
pub struct LanceQuery<'a> {
    pub vector: &'a [f32],
    pub metric: Metric,
    pub k: usize,
    pub filter: Option<&'a Filter>,
    /// ANN knobs (indexed shards only; flat shards are searched exactly).
    pub ann: AnnParams,
}

pub struct LanceHit {
    pub id: VectorId,
    pub score: f64,
    pub payload: Option<Value>,
}

/// An opened LanceDB shard.
pub struct LanceShard {
    table: lancedb::Table,
    db_id: u32,
    /// Where it lives, for errors.
    location: String,
    rows: usize,
    has_index: bool,
    has_id_type: bool,
    /// (payload field, column name, kind) of every filter column.
    filter_columns: Vec<(String, String, ColumnKind)>,
}

impl LanceShard {
    /// Opens the table `vector_index` of the LanceDB database at `uri` (a local directory or an
    /// `s3://` URL; `storage_options` as LanceDB takes them). A table that is missing or does
    /// not open is an error, never an empty shard.
    pub async fn open(
        db_id: u32,
        uri: &str,
        storage_options: Vec<(String, String)>,
    ) -> Result<Self> {
        let location = format!("{uri}/{TABLE}.lance");
        let failed = |e: lancedb::Error| lance_error(db_id, &location, e);
        let db = lancedb::connect(uri)
            .storage_options(storage_options)
            .execute()
            .await
            .map_err(failed)?;
        let table = db.open_table(TABLE).execute().await.map_err(failed)?;
        let schema = table.schema().await.map_err(failed)?;
        for required in [ID_COLUMN, VECTOR_COLUMN] {
            if schema.field_with_name(required).is_err() {
                return Err(Error::CorruptShard {
                    db_id,
                    location,
                    detail: format!("table {TABLE} has no column {required:?}"),
                });
            }
        }
        let filter_columns = schema
            .fields()
            .iter()
            .filter_map(|f| {
                let field = f.name().strip_prefix(FILTER_COLUMN_PREFIX)?;
                let kind = match f.data_type() {
                    DataType::Utf8 => ColumnKind::Text,
                    DataType::Float64 => ColumnKind::Number,
                    DataType::Boolean => ColumnKind::Bool,
                    _ => return None,
                };
                Some((field.to_string(), f.name().clone(), kind))
            })
            .collect();
        let rows = table.count_rows(None).await.map_err(failed)?;
        let has_index = !table.list_indices().await.map_err(failed)?.is_empty();
        Ok(Self {
            has_id_type: schema.field_with_name(ID_TYPE_COLUMN).is_ok(),
            table,
            db_id,
            location,
            rows,
            has_index,
            filter_columns,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn has_index(&self) -> bool {
        self.has_index
    }

    /// The `k` best rows for the query, scores in edgeshard's convention, best first.
    ///
    /// A filter that [`Filter::to_sql`] can state over this table's filter columns runs inside
    /// LanceDB as a prefilter (exact top-k among matching rows). Any other filter is applied to
    /// the payloads after the search, over-fetching `4k` and doubling until `k` rows match or
    /// the table is exhausted; on an indexed table the last resort is an exact scan
    /// (`bypass_vector_index`), so `k` results come back whenever `k` rows match.
    pub async fn search(&self, q: &LanceQuery<'_>) -> Result<Vec<LanceHit>> {
        if self.rows == 0 {
            return Ok(Vec::new());
        }
        let pushed = q.filter.and_then(|f| {
            f.to_sql(|field| {
                self.filter_columns
                    .iter()
                    .find(|(name, _, _)| name == field)
                    .map(|(_, column, kind)| (column.clone(), *kind))
            })
        });
        let post_filter = match (q.filter, &pushed) {
            (Some(filter), None) => Some(filter),
            _ => None,
        };
        let Some(filter) = post_filter else {
            return self.run(q, q.k, pushed.as_deref(), false).await;
        };
        let mut fetch = q.k.saturating_mul(4).min(self.rows);
        loop {
            let exact = fetch >= self.rows && self.has_index;
            let rows = self.run(q, fetch, None, exact).await?;
            let fetched = rows.len();
            let mut matched: Vec<LanceHit> = rows
                .into_iter()
                .filter(|hit| filter.matches(hit.payload.as_ref()))
                .collect();
            if matched.len() >= q.k || fetch >= self.rows || (fetched < fetch && exact) {
                matched.truncate(q.k);
                return Ok(matched);
            }
            fetch = fetch.saturating_mul(2).min(self.rows);
        }
    }

    async fn run(
        &self,
        q: &LanceQuery<'_>,
        limit: usize,
        only_if: Option<&str>,
        exact: bool,
    ) -> Result<Vec<LanceHit>> {
        let failed = |e: lancedb::Error| lance_error(self.db_id, &self.location, e);
        let mut columns = vec![ID_COLUMN.to_string(), PAYLOAD_COLUMN.to_string()];
        if self.has_id_type {
            columns.push(ID_TYPE_COLUMN.to_string());
        }
        let mut query = self
            .table
            .query()
            .nearest_to(q.vector)
            .map_err(failed)?
            // Always explicit: LanceDB's default is L2 whatever the index was built with.
            .distance_type(distance_type(q.metric))
            .limit(limit)
            .select(Select::Columns(columns));
        if let Some(sql) = only_if {
            query = query.only_if(sql);
        }
        if exact || q.ann.exact || !self.has_index {
            query = query.bypass_vector_index();
        } else {
            if let Some(nprobes) = q.ann.nprobes {
                query = query.nprobes(nprobes).map_err(failed)?;
            }
            if let Some(ef) = q.ann.ef {
                query = query.ef(ef);
            }
            if let Some(refine) = q.ann.refine_factor {
                query = query.refine_factor(refine);
            }
        }
        let batches: Vec<RecordBatch> = query
            .execute()
            .await
            .map_err(failed)?
            .try_collect()
            .await
            .map_err(failed)?;
        let mut hits = Vec::with_capacity(limit);
        for batch in &batches {
            self.read_batch(batch, q.metric, &mut hits)?;
        }
        // LanceDB returns rows best first; keep ties in a stable order by id text so every
        // reader agrees.
        hits.sort_by(|a, b| a.score.total_cmp(&b.score));
        Ok(hits)
    }

    fn read_batch(
        &self,
        batch: &RecordBatch,
        metric: Metric,
        out: &mut Vec<LanceHit>,
    ) -> Result<()> {
        let corrupt = |detail: String| Error::CorruptShard {
            db_id: self.db_id,
            location: self.location.clone(),
            detail,
        };
        let text_column = |name: &str| -> Result<Option<&StringArray>> {
            match batch.column_by_name(name) {
                None => Ok(None),
                Some(c) => c
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .map(Some)
                    .ok_or_else(|| corrupt(format!("column {name:?} is not utf8"))),
            }
        };
        let ids = text_column(ID_COLUMN)?
            .ok_or_else(|| corrupt(format!("no {ID_COLUMN:?} column in the result")))?;
        let payloads = text_column(PAYLOAD_COLUMN)?;
        let id_types = text_column(ID_TYPE_COLUMN)?;
        let distances = batch
            .column_by_name(DISTANCE_COLUMN)
            .and_then(|c| c.as_any().downcast_ref::<Float32Array>())
            .ok_or_else(|| corrupt(format!("no float32 {DISTANCE_COLUMN:?} in the result")))?;
        for row in 0..batch.num_rows() {
            let text = ids.value(row);
            let id = match id_types.filter(|t| t.is_valid(row)).map(|t| t.value(row)) {
                Some("int") => VectorId::Int(
                    text.parse()
                        .map_err(|_| corrupt(format!("id {text:?} is typed int but is not one")))?,
                ),
                // shardyfusion's tables carry no type: their ids are text (it stringifies ints).
                Some("str") | None => VectorId::Str(text.to_string()),
                Some(other) => return Err(corrupt(format!("unknown id_type {other:?}"))),
            };
            let payload = match payloads.filter(|p| p.is_valid(row)) {
                None => None,
                Some(p) => Some(
                    serde_json::from_str::<Value>(p.value(row))
                        .map_err(|e| corrupt(format!("payload of id {text:?} is not JSON: {e}")))?,
                ),
            };
            if distances.is_null(row) {
                return Err(corrupt(format!("no distance for id {text:?}")));
            }
            out.push(LanceHit {
                id,
                score: score_from_distance(metric, distances.value(row)),
                payload: payload.filter(|p| !p.is_null()),
            });
        }
        Ok(())
    }
}

/// A LanceDB failure as the reader's error: a missing table is [`Error::NotFound`], object
/// store trouble is [`Error::Remote`] of the store error's kind (a 403 is permission denied, a
/// server error unavailable: see [`store_error_kind`]), a timeout is unavailable, anything else
/// means the shard is unusable.
fn lance_error(db_id: u32, location: &str, e: lancedb::Error) -> Error {
    match e {
        lancedb::Error::TableNotFound { .. } | lancedb::Error::DatabaseNotFound { .. } => {
            Error::NotFound {
                what: format!("LanceDB table {TABLE}"),
                location: location.to_string(),
            }
        }
        // (`Http` / `Retry` exist only for LanceDB Cloud, the `remote` feature we do not use.)
        lancedb::Error::ObjectStore { ref source } => Error::Remote {
            location: location.to_string(),
            kind: store_error_kind(source),
            detail: e.to_string(),
        },
        lancedb::Error::Timeout { .. } => Error::Remote {
            location: location.to_string(),
            kind: ErrorKind::Unavailable,
            detail: e.to_string(),
        },
        other => Error::CorruptShard {
            db_id,
            location: location.to_string(),
            detail: format!("LanceDB: {other}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_follow_the_one_convention() {
        assert_eq!(score_from_distance(Metric::L2, 9.0), 3.0);
        assert_eq!(score_from_distance(Metric::L2, -1e-7), 0.0);
        assert_eq!(score_from_distance(Metric::Cosine, 0.25), 0.25);
        assert_eq!(score_from_distance(Metric::DotProduct, -2.0), -2.0);
        assert!(matches!(
            distance_type(Metric::DotProduct),
            DistanceType::Dot
        ));
    }
}
