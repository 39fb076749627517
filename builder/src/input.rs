//! Input readers (JSONL, CSV, Parquet) and the conversion of a raw row into a [`Record`].
//!
//! Every reader yields [`RawRecord`]s: numbered rows of named fields. [`FieldMapping`] then turns
//! a raw row into a typed record, refusing anything unusable with the record number and field.

use crate::error::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use base64::Engine;
use edgeshard_shared::json::{to_string_sorted, Style};
use edgeshard_shared::{Key, KeyEncoding};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    Jsonl,
    Csv,
    Parquet,
}

impl InputFormat {
    /// From the file extension: `.jsonl`/`.ndjson`/`.json`, `.csv`, `.parquet`/`.pq`.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" | "json" => Some(Self::Jsonl),
            "csv" => Some(Self::Csv),
            "parquet" | "pq" => Some(Self::Parquet),
            _ => None,
        }
    }
}

/// One field of a raw row.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Json(Value),
    Bytes(Vec<u8>),
    Floats(Vec<f32>),
}

impl FieldValue {
    fn is_null(&self) -> bool {
        matches!(self, FieldValue::Json(Value::Null))
    }

    /// The JSON form used in payloads and default values (bytes become base64 text).
    fn to_json(&self) -> Value {
        match self {
            FieldValue::Json(v) => v.clone(),
            FieldValue::Bytes(b) => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            FieldValue::Floats(f) => Value::from(f.iter().map(|x| *x as f64).collect::<Vec<_>>()),
        }
    }
}

/// A numbered input row (record numbers start at 1, header lines not counted).
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub number: u64,
    pub fields: BTreeMap<String, FieldValue>,
}

/// A validated record, ready to be routed and written.
#[derive(Debug, Clone)]
pub struct Record {
    pub number: u64,
    pub key: Key,
    /// The key as stored, per the snapshot's key encoding.
    pub encoded_key: Vec<u8>,
    pub value: Vec<u8>,
    pub vector: Option<Vec<f32>>,
    pub payload: Option<Value>,
}

/// Opens `path` and returns its rows. `-` reads JSONL or CSV from standard input.
pub fn read_records(
    path: &Path,
    format: InputFormat,
    needed_columns: Option<&[String]>,
) -> Result<Box<dyn Iterator<Item = Result<RawRecord>>>> {
    let location = path.display().to_string();
    let open = || -> Result<Box<dyn BufRead>> {
        if path.as_os_str() == "-" {
            return Ok(Box::new(BufReader::new(std::io::stdin())));
        }
        let file = std::fs::File::open(path).map_err(Error::io(&location))?;
        Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
    };
    match format {
        InputFormat::Jsonl => Ok(Box::new(jsonl_records(open()?, location))),
        InputFormat::Csv => csv_records(open()?, location),
        InputFormat::Parquet => parquet_records(path, needed_columns),
    }
}

fn jsonl_records(
    reader: Box<dyn BufRead>,
    location: String,
) -> impl Iterator<Item = Result<RawRecord>> {
    let mut number = 0u64;
    reader
        .lines()
        .enumerate()
        .filter_map(move |(line_index, line)| {
            let line = match line {
                Ok(line) => line,
                Err(e) => return Some(Err(Error::io(&location)(e))),
            };
            if line.trim().is_empty() {
                return None;
            }
            number += 1;
            let parsed = match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(map)) => Ok(RawRecord {
                    number,
                    fields: map
                        .into_iter()
                        .map(|(k, v)| (k, FieldValue::Json(v)))
                        .collect(),
                }),
                Ok(_) => Err(Error::InvalidInput {
                    location: format!("{location}:{}", line_index + 1),
                    reason: format!("record {number} is not a JSON object"),
                }),
                Err(e) => Err(Error::InvalidInput {
                    location: format!("{location}:{}", line_index + 1),
                    reason: format!("record {number} is not valid JSON: {e}"),
                }),
            };
            Some(parsed)
        })
}

fn csv_records(
    reader: Box<dyn BufRead>,
    location: String,
) -> Result<Box<dyn Iterator<Item = Result<RawRecord>>>> {
    let tracker = QuoteTracker::new(reader);
    let quoting = tracker.state.clone();
    let mut csv_reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(tracker);
    let headers: Vec<String> = csv_reader
        .headers()
        .map_err(|e| Error::InvalidInput {
            location: location.clone(),
            reason: format!("cannot read the CSV header: {e}"),
        })?
        .iter()
        .map(str::to_string)
        .collect();
    // A repeated column name would make one of the two columns silently win.
    for (i, name) in headers.iter().enumerate() {
        if headers[..i].contains(name) {
            return Err(Error::InvalidInput {
                location,
                reason: format!("the CSV header names column {name:?} twice"),
            });
        }
    }
    let mut number = 0u64;
    let end_location = location.clone();
    let records = csv_reader.into_records().map(move |row| {
        number += 1;
        let row = row.map_err(|e| Error::InvalidInput {
            location: location.clone(),
            reason: format!("record {number}: {e}"),
        })?;
        Ok(RawRecord {
            number,
            fields: headers
                .iter()
                .zip(row.iter())
                .map(|(h, cell)| (h.clone(), FieldValue::Json(Value::String(cell.to_string()))))
                .collect(),
        })
    });
    // Checked once every record is read: the csv crate ends an unclosed quoted field at the
    // end of the input without an error, swallowing every line after the stray quote.
    let unclosed = std::iter::once_with(move || {
        let state = quoting.get();
        (state.position == QuotePosition::Quoted).then(|| {
            Err(Error::InvalidInput {
                location: format!("{end_location}:{}", state.quote_line),
                reason: "a quoted field opened on this line is never closed (a missing \")".into(),
            })
        })
    })
    .flatten();
    Ok(Box::new(records.chain(unclosed)))
}

/// Where a CSV reader is relative to quoting, following RFC 4180 as the csv crate reads it
/// (`"` opens a quoted field only at a field's start; `""` inside one is a quote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuotePosition {
    FieldStart,
    Unquoted,
    Quoted,
    /// A `"` inside a quoted field: it closes the field unless another `"` follows.
    QuoteInQuoted,
}

#[derive(Debug, Clone, Copy)]
struct QuoteState {
    position: QuotePosition,
    /// 1-based line where the current quoted field opened.
    quote_line: u64,
    line: u64,
}

/// Passes bytes to the csv reader while following [`QuotePosition`], so the end of the input
/// can be checked for a quoted field left open.
struct QuoteTracker<R> {
    inner: R,
    state: std::rc::Rc<std::cell::Cell<QuoteState>>,
}

impl<R> QuoteTracker<R> {
    fn new(inner: R) -> Self {
        let state = QuoteState {
            position: QuotePosition::FieldStart,
            quote_line: 0,
            line: 1,
        };
        Self {
            inner,
            state: std::rc::Rc::new(std::cell::Cell::new(state)),
        }
    }
}

impl<R: std::io::Read> std::io::Read for QuoteTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut state = self.state.get();
        for &byte in &buf[..n] {
            use QuotePosition::*;
            let separator = matches!(byte, b',' | b'\n' | b'\r');
            state.position = match (state.position, byte) {
                (FieldStart, b'"') => {
                    state.quote_line = state.line;
                    Quoted
                }
                (Quoted, b'"') => QuoteInQuoted,
                (Quoted, _) => Quoted,
                (QuoteInQuoted, b'"') => Quoted,
                (_, _) if separator => FieldStart,
                (_, _) => Unquoted,
            };
            if byte == b'\n' {
                state.line += 1;
            }
        }
        self.state.set(state);
        Ok(n)
    }
}

fn parquet_records(
    path: &Path,
    needed_columns: Option<&[String]>,
) -> Result<Box<dyn Iterator<Item = Result<RawRecord>>>> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;
    let location = path.display().to_string();
    let file = std::fs::File::open(path).map_err(Error::io(&location))?;
    let invalid = |reason: String| Error::InvalidInput {
        location: location.clone(),
        reason,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| invalid(format!("not a readable Parquet file: {e}")))?;
    let schema = builder.schema().clone();
    let builder = match needed_columns {
        Some(columns) => {
            let mut indices = Vec::new();
            for column in columns {
                let index = schema.index_of(column).map_err(|_| {
                    invalid(format!(
                        "no column {column:?}; columns are {:?}",
                        schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
                    ))
                })?;
                indices.push(index);
            }
            let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
            builder.with_projection(mask)
        }
        None => builder,
    };
    let reader = builder
        .with_batch_size(8192)
        .build()
        .map_err(|e| invalid(format!("cannot read: {e}")))?;
    let mut next_number = 1u64;
    let batches = reader.map(move |batch| {
        let batch = batch.map_err(|e| Error::InvalidInput {
            location: location.clone(),
            reason: format!("cannot decode a row group: {e}"),
        })?;
        let rows = batch_to_rows(&batch, next_number, &location)?;
        next_number += rows.len() as u64;
        Ok(rows)
    });
    Ok(Box::new(batches.flat_map(
        |batch: Result<Vec<RawRecord>>| {
            let items: Vec<Result<RawRecord>> = match batch {
                Ok(rows) => rows.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            items
        },
    )))
}

fn batch_to_rows(batch: &RecordBatch, first_number: u64, location: &str) -> Result<Vec<RawRecord>> {
    let mut rows: Vec<RawRecord> = (0..batch.num_rows())
        .map(|i| RawRecord {
            number: first_number + i as u64,
            fields: BTreeMap::new(),
        })
        .collect();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        for (i, row) in rows.iter_mut().enumerate() {
            let value = arrow_cell(column.as_ref(), i).map_err(|reason| Error::InvalidInput {
                location: location.to_string(),
                reason: format!("column {:?}: {reason}", field.name()),
            })?;
            row.fields.insert(field.name().clone(), value);
        }
    }
    Ok(rows)
}

fn arrow_cell(col: &dyn Array, row: usize) -> std::result::Result<FieldValue, String> {
    if col.is_null(row) {
        return Ok(FieldValue::Json(Value::Null));
    }
    let json = |v: Value| Ok(FieldValue::Json(v));
    match col.data_type() {
        DataType::Boolean => json(Value::Bool(col.as_boolean().value(row))),
        DataType::Int8 => json(col.as_primitive::<Int8Type>().value(row).into()),
        DataType::Int16 => json(col.as_primitive::<Int16Type>().value(row).into()),
        DataType::Int32 => json(col.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => json(col.as_primitive::<Int64Type>().value(row).into()),
        DataType::UInt8 => json(col.as_primitive::<UInt8Type>().value(row).into()),
        DataType::UInt16 => json(col.as_primitive::<UInt16Type>().value(row).into()),
        DataType::UInt32 => json(col.as_primitive::<UInt32Type>().value(row).into()),
        DataType::UInt64 => json(col.as_primitive::<UInt64Type>().value(row).into()),
        DataType::Float32 => json(float_json(
            col.as_primitive::<Float32Type>().value(row) as f64
        )),
        DataType::Float64 => json(float_json(col.as_primitive::<Float64Type>().value(row))),
        DataType::Utf8 => json(col.as_string::<i32>().value(row).into()),
        DataType::LargeUtf8 => json(col.as_string::<i64>().value(row).into()),
        DataType::Utf8View => json(col.as_string_view().value(row).into()),
        DataType::Binary => Ok(FieldValue::Bytes(
            col.as_binary::<i32>().value(row).to_vec(),
        )),
        DataType::LargeBinary => Ok(FieldValue::Bytes(
            col.as_binary::<i64>().value(row).to_vec(),
        )),
        DataType::FixedSizeList(_, _) => float_list(col.as_fixed_size_list().value(row).as_ref()),
        DataType::List(_) => float_list(col.as_list::<i32>().value(row).as_ref()),
        DataType::LargeList(_) => float_list(col.as_list::<i64>().value(row).as_ref()),
        other => Err(format!("unsupported column type {other}")),
    }
}

/// NaN and infinities have no JSON form; keep them as strings so a payload never silently
/// loses them (a vector with them is refused separately).
fn float_json(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(v.to_string()))
}

fn float_list(values: &dyn Array) -> std::result::Result<FieldValue, String> {
    if values.null_count() > 0 {
        return Err("a list element is null".into());
    }
    match values.data_type() {
        DataType::Float32 => Ok(FieldValue::Floats(
            values.as_primitive::<Float32Type>().values().to_vec(),
        )),
        DataType::Float64 => Ok(FieldValue::Floats(
            values
                .as_primitive::<Float64Type>()
                .values()
                .iter()
                .map(|v| *v as f32)
                .collect(),
        )),
        other => Err(format!("list of {other} is not a float vector")),
    }
}

/// Which input fields become the key, value, vector and payload.
#[derive(Debug, Clone)]
pub struct FieldMapping {
    pub key_field: String,
    /// `None`: the value is the whole record (minus the vector) as compact JSON.
    pub value_field: Option<String>,
    pub vector_field: Option<String>,
    pub payload_fields: Vec<String>,
}

impl FieldMapping {
    /// The columns a columnar reader must load (`None` = all of them).
    pub fn needed_columns(&self) -> Option<Vec<String>> {
        let value = self.value_field.as_ref()?;
        let mut cols = vec![self.key_field.clone(), value.clone()];
        cols.extend(self.vector_field.iter().cloned());
        cols.extend(self.payload_fields.iter().cloned());
        cols.sort();
        cols.dedup();
        Some(cols)
    }

    /// The key encoding to use when none was asked for: integers -> u64be, bytes -> raw,
    /// anything else utf8 (CSV cells are text, so CSV input defaults to utf8).
    pub fn infer_key_encoding(&self, first: &RawRecord) -> KeyEncoding {
        match first.fields.get(&self.key_field) {
            Some(FieldValue::Json(Value::Number(n))) if n.is_i64() || n.is_u64() => {
                KeyEncoding::U64Be
            }
            Some(FieldValue::Bytes(_)) => KeyEncoding::Raw,
            _ => KeyEncoding::Utf8,
        }
    }

    pub fn to_record(&self, raw: RawRecord, encoding: KeyEncoding) -> Result<Record> {
        let number = raw.number;
        let invalid = |field: &str, reason: String| Error::InvalidRecord {
            record: number,
            field: field.to_string(),
            reason,
        };
        let key = self.key(&raw, encoding)?;
        let encoded_key = encoding
            .encode(&key)
            .map_err(|e| invalid(&self.key_field, e.to_string()))?;
        let value = match &self.value_field {
            Some(field) => match raw.fields.get(field) {
                None => return Err(invalid(field, "missing value".into())),
                Some(v) if v.is_null() => return Err(invalid(field, "value is null".into())),
                Some(FieldValue::Json(Value::String(s))) => s.clone().into_bytes(),
                Some(FieldValue::Bytes(b)) => b.clone(),
                Some(other) => to_string_sorted(&other.to_json(), Style::Compact).into_bytes(),
            },
            None => {
                let rest: Map<String, Value> = raw
                    .fields
                    .iter()
                    .filter(|(name, _)| Some(*name) != self.vector_field.as_ref())
                    .map(|(name, v)| (name.clone(), v.to_json()))
                    .collect();
                to_string_sorted(&Value::Object(rest), Style::Compact).into_bytes()
            }
        };
        let vector = match &self.vector_field {
            None => None,
            Some(field) => {
                Some(parse_vector(raw.fields.get(field)).map_err(|r| invalid(field, r))?)
            }
        };
        let payload = if self.payload_fields.is_empty() {
            None
        } else {
            let map: Map<String, Value> = self
                .payload_fields
                .iter()
                .filter_map(|f| raw.fields.get(f).map(|v| (f.clone(), v.to_json())))
                .collect();
            (!map.is_empty()).then_some(Value::Object(map))
        };
        Ok(Record {
            number,
            key,
            encoded_key,
            value,
            vector,
            payload,
        })
    }

    fn key(&self, raw: &RawRecord, encoding: KeyEncoding) -> Result<Key> {
        let invalid = |reason: String| Error::InvalidRecord {
            record: raw.number,
            field: self.key_field.clone(),
            reason,
        };
        match raw.fields.get(&self.key_field) {
            None => Err(invalid("missing key".into())),
            Some(v) if v.is_null() => Err(invalid("key is null".into())),
            Some(FieldValue::Json(Value::Number(n))) => match n.as_i64() {
                Some(i) if encoding.is_integer() => Ok(Key::Int(i)),
                Some(i) => Err(invalid(format!(
                    "key {i} is a number, but key encoding {} needs a string (use --key-encoding u64be or u32be)",
                    encoding.as_str()
                ))),
                None => Err(invalid(format!("key {n} is not an integer in -2^63..2^63-1"))),
            },
            Some(FieldValue::Json(Value::String(s))) => {
                if encoding.is_integer() {
                    s.trim().parse::<i64>().map(Key::Int).map_err(|_| {
                        invalid(format!(
                            "key {s:?} is not an integer, but key encoding {} needs one",
                            encoding.as_str()
                        ))
                    })
                } else if encoding == KeyEncoding::Raw {
                    Ok(Key::Bytes(s.as_bytes().to_vec()))
                } else {
                    Ok(Key::Str(s.clone()))
                }
            }
            Some(FieldValue::Bytes(b)) => match encoding {
                KeyEncoding::Raw => Ok(Key::Bytes(b.clone())),
                KeyEncoding::Utf8 => String::from_utf8(b.clone())
                    .map(Key::Str)
                    .map_err(|_| invalid("binary key is not UTF-8 (use --key-encoding raw)".into())),
                other => Err(invalid(format!("binary key does not fit key encoding {}", other.as_str()))),
            },
            Some(other) => Err(invalid(format!(
                "key must be an integer or a string, got {}",
                other.to_json()
            ))),
        }
    }
}

fn parse_vector(field: Option<&FieldValue>) -> std::result::Result<Vec<f32>, String> {
    let from_json_array = |items: &[Value]| {
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_f64()
                    .map(|x| x as f32)
                    .ok_or_else(|| format!("component {i} is {v}, not a number"))
            })
            .collect::<std::result::Result<Vec<f32>, String>>()
    };
    match field {
        None => Err("missing vector".into()),
        Some(FieldValue::Floats(v)) => Ok(v.clone()),
        Some(FieldValue::Json(Value::Array(items))) => from_json_array(items),
        Some(FieldValue::Json(Value::String(text))) => {
            // CSV cells carry vectors as JSON array text. Python writes NaN/Infinity bare;
            // accept those spellings so they are reported as non-finite, not as a parse error.
            // (serde_json refuses out-of-range literals such as 1e999, so these become tokens.)
            let normalised = text
                .replace("-Infinity", "\"-inf\"")
                .replace("Infinity", "\"inf\"")
                .replace("NaN", "\"NaN\"");
            match serde_json::from_str::<Value>(&normalised) {
                Ok(Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::String(s) if s == "NaN" => Ok(f32::NAN),
                        Value::String(s) if s == "inf" => Ok(f32::INFINITY),
                        Value::String(s) if s == "-inf" => Ok(f32::NEG_INFINITY),
                        v => v
                            .as_f64()
                            .map(|x| x as f32)
                            .ok_or_else(|| format!("component {i} is {v}, not a number")),
                    })
                    .collect(),
                _ => Err(format!("{text:?} is not a JSON array of numbers")),
            }
        }
        Some(FieldValue::Json(Value::Null)) => Err("vector is null".into()),
        Some(other) => Err(format!(
            "expected an array of numbers, got {}",
            other.to_json()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(fields: Value) -> RawRecord {
        let Value::Object(map) = fields else { panic!() };
        RawRecord {
            number: 7,
            fields: map
                .into_iter()
                .map(|(k, v)| (k, FieldValue::Json(v)))
                .collect(),
        }
    }

    fn mapping() -> FieldMapping {
        FieldMapping {
            key_field: "id".into(),
            value_field: Some("text".into()),
            vector_field: Some("emb".into()),
            payload_fields: vec!["tag".into()],
        }
    }

    #[test]
    fn converts_a_good_record() {
        let r = mapping()
            .to_record(
                raw(serde_json::json!({"id": 5, "text": "hi", "emb": [1, 2.5], "tag": "x"})),
                KeyEncoding::U64Be,
            )
            .unwrap();
        assert_eq!(r.key, Key::Int(5));
        assert_eq!(r.encoded_key, 5u64.to_be_bytes());
        assert_eq!(r.value, b"hi");
        assert_eq!(r.vector, Some(vec![1.0, 2.5]));
        assert_eq!(r.payload, Some(serde_json::json!({"tag": "x"})));
    }

    #[test]
    fn errors_name_record_and_field() {
        let err = mapping()
            .to_record(
                raw(serde_json::json!({"text": "hi", "emb": [1]})),
                KeyEncoding::U64Be,
            )
            .unwrap_err()
            .to_string();
        assert_eq!(err, "record 7, field \"id\": missing key");
        let err = mapping()
            .to_record(
                raw(serde_json::json!({"id": "a", "text": "t", "emb": [1]})),
                KeyEncoding::U64Be,
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an integer"), "{err}");
        let err = mapping()
            .to_record(
                raw(serde_json::json!({"id": 1, "text": "t", "emb": "[1, NaN]"})),
                KeyEncoding::U64Be,
            )
            .map(|r| r.vector)
            .unwrap();
        assert!(
            err.unwrap()[1].is_nan(),
            "NaN text parses to NaN for the dimension/finite check"
        );
    }

    #[test]
    fn default_value_is_record_without_vector() {
        let m = FieldMapping {
            value_field: None,
            ..mapping()
        };
        let r = m
            .to_record(
                raw(serde_json::json!({"id": "k", "emb": [1], "b": 2, "a": 1})),
                KeyEncoding::Utf8,
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(r.value).unwrap(),
            r#"{"a":1,"b":2,"id":"k"}"#
        );
    }
}
