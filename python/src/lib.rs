//! `edgeshard._native`: the Python binding of runtime-native's reader (pyo3). The `edgeshard`
//! package (python/python/edgeshard) re-exports it with its docs and types.
//!
//! Answers are the CLI's objects (builder/src/output.rs) as plain Python values; reads release
//! the GIL; errors are exceptions by kind (`edgeshard.EdgeshardError` and one subclass per
//! kind), each with `kind` and `retryable`.

use edgeshard_builder::output::{self, SearchRequest};
use edgeshard_native::{AccessMode, OpenOptions, Snapshot as NativeSnapshot};
use edgeshard_shared::{routing, ErrorKind, Key, KeyEncoding};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyList};
use serde_json::Value;
use std::time::Instant;

create_exception!(_native, EdgeshardError, PyException, "Any edgeshard error.");
create_exception!(
    _native,
    InvalidInputError,
    EdgeshardError,
    "The request is wrong."
);
create_exception!(
    _native,
    NotFoundError,
    EdgeshardError,
    "Something needed is absent."
);
create_exception!(
    _native,
    CorruptError,
    EdgeshardError,
    "Stored data is damaged."
);
create_exception!(
    _native,
    UnavailableError,
    EdgeshardError,
    "Retryable: storage failed."
);
create_exception!(
    _native,
    ChangedError,
    EdgeshardError,
    "An object changed while read."
);
create_exception!(
    _native,
    UnsupportedError,
    EdgeshardError,
    "Not supported by this reader."
);
create_exception!(
    _native,
    PermissionDeniedError,
    EdgeshardError,
    "Access refused."
);
create_exception!(
    _native,
    InternalError,
    EdgeshardError,
    "A bug in edgeshard."
);

/// The exception of `kind` carrying `message`, with `kind` and `retryable` set.
fn error(py: Python<'_>, kind: ErrorKind, message: String) -> PyErr {
    let err = match kind {
        ErrorKind::InvalidInput => InvalidInputError::new_err(message),
        ErrorKind::NotFound => NotFoundError::new_err(message),
        ErrorKind::Corrupt => CorruptError::new_err(message),
        ErrorKind::Unavailable => UnavailableError::new_err(message),
        ErrorKind::Changed => ChangedError::new_err(message),
        ErrorKind::Unsupported => UnsupportedError::new_err(message),
        ErrorKind::PermissionDenied => PermissionDeniedError::new_err(message),
        ErrorKind::Internal => InternalError::new_err(message),
    };
    let value = err.value(py);
    // Setting attributes on a fresh exception object cannot fail in practice; if it did, the
    // exception still says what went wrong.
    let _ = value.setattr("kind", kind.as_str());
    let _ = value.setattr("retryable", kind == ErrorKind::Unavailable);
    err
}

fn native_error(py: Python<'_>, e: edgeshard_native::Error) -> PyErr {
    error(py, e.kind(), e.to_string())
}

fn builder_error(py: Python<'_>, e: edgeshard_builder::Error) -> PyErr {
    error(py, e.kind(), e.to_string())
}

fn invalid(py: Python<'_>, message: String) -> PyErr {
    error(py, ErrorKind::InvalidInput, message)
}

/// A JSON value as the plain Python value `json.loads` would give.
fn to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u), _) => u.into_pyobject(py)?.into_any(),
            (_, _, Some(f)) => f.into_pyobject(py)?.into_any(),
            _ => py.None().into_bound(py),
        },
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, to_python(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

/// A Python key (int, str or bytes) as a key of `encoding`, checked against it.
fn to_key(py: Python<'_>, encoding: KeyEncoding, key: &Bound<'_, PyAny>) -> PyResult<Key> {
    let key = if let Ok(bytes) = key.cast::<PyBytes>() {
        Key::Bytes(bytes.as_bytes().to_vec())
    } else if let Ok(text) = key.extract::<String>() {
        match encoding {
            KeyEncoding::Raw => Key::Bytes(text.into_bytes()),
            _ => Key::Str(text),
        }
    } else if key.is_instance_of::<PyBool>() {
        return Err(invalid(
            py,
            "a key must be an int, str or bytes, got bool".into(),
        ));
    } else if key.is_instance_of::<PyInt>() {
        let int = key.extract::<i64>().map_err(|_| {
            invalid(
                py,
                format!("integer key {key} is out of range (-2^63..2^63-1)"),
            )
        })?;
        Key::Int(int)
    } else {
        return Err(invalid(
            py,
            format!(
                "a key must be an int, str or bytes, got {}",
                key.get_type().name()?
            ),
        ));
    };
    encoding
        .encode(&key)
        .map_err(|e| invalid(py, format!("invalid key: {}", e.detail())))?;
    Ok(key)
}

/// An open snapshot (see the `edgeshard.Snapshot` docs).
#[pyclass(frozen, module = "edgeshard._native")]
struct Snapshot {
    snap: NativeSnapshot,
}

#[pymethods]
impl Snapshot {
    /// Opens the snapshot at `root` (a directory, file://, s3:// or http(s):// URL).
    #[staticmethod]
    #[pyo3(signature = (root, access="auto", cache_dir=None, cache_pages=None, storage_options=None))]
    fn open(
        py: Python<'_>,
        root: String,
        access: &str,
        cache_dir: Option<String>,
        cache_pages: Option<usize>,
        storage_options: Option<Vec<(String, String)>>,
    ) -> PyResult<Self> {
        let access = match access {
            "auto" => AccessMode::Auto,
            "download" => AccessMode::Download,
            "range" => AccessMode::Range,
            other => {
                return Err(invalid(
                    py,
                    format!("access must be \"auto\", \"download\" or \"range\", got {other:?}"),
                ))
            }
        };
        let mut options = OpenOptions {
            access,
            cache_dir: cache_dir.map(Into::into),
            storage_options: storage_options.unwrap_or_default(),
            ..OpenOptions::default()
        };
        if let Some(pages) = cache_pages {
            options.cache_pages = pages;
        }
        let opened = py.detach(|| NativeSnapshot::open_with(&root, options));
        Ok(Self {
            snap: opened.map_err(|e| native_error(py, e))?,
        })
    }

    /// The value stored under `key` (bytes), or None.
    fn get<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Option<Vec<u8>>> {
        let key = to_key(py, self.snap.manifest().meta.key_encoding, key)?;
        py.detach(|| self.snap.get(&key))
            .map_err(|e| native_error(py, e))
    }

    /// Values for `keys` in input order (None for absent keys).
    fn multi_get<'py>(
        &self,
        py: Python<'py>,
        keys: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Vec<Option<Vec<u8>>>> {
        let encoding = self.snap.manifest().meta.key_encoding;
        let keys = keys
            .iter()
            .map(|k| to_key(py, encoding, k))
            .collect::<PyResult<Vec<Key>>>()?;
        py.detach(|| self.snap.multi_get(&keys))
            .map_err(|e| native_error(py, e))
    }

    /// The CLI's search object for `vector` (see `edgeshard.Snapshot.search`).
    #[pyo3(signature = (vector, k=10, filter=None, fields=None, probes=None, nprobes=None,
                        ef=None, refine=None, exact=false, shards=None))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        vector: Vec<f64>,
        k: usize,
        filter: Option<Vec<String>>,
        fields: Option<Vec<String>>,
        probes: Option<usize>,
        nprobes: Option<usize>,
        ef: Option<usize>,
        refine: Option<u32>,
        exact: bool,
        shards: Option<Vec<u32>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = SearchRequest {
            vector,
            k: Some(k),
            filter: filter.map(output::FilterSpec::All),
            fields,
            probes,
            nprobes,
            ef,
            refine,
            shards,
            exact,
        };
        let (query, options) = request.to_query().map_err(|e| builder_error(py, e))?;
        let started = Instant::now();
        let response = py
            .detach(|| self.snap.search_with(&query, &options))
            .map_err(|e| native_error(py, e))?;
        let object = output::search_object(&response, started.elapsed().as_secs_f64() * 1e3);
        to_python(py, &object)
    }

    /// The snapshot's summary (the CLI's `info` object).
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let info = output::info_object(&self.snap.info()).map_err(|e| builder_error(py, e))?;
        to_python(py, &info)
    }

    /// The published versions under the root (the CLI's `history` rows).
    fn history<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let rows = py
            .detach(|| output::history_rows(self.snap.root()))
            .map_err(|e| builder_error(py, e))?;
        to_python(py, &Value::Array(rows))
    }

    /// The shard `key` routes to.
    fn route<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<u32> {
        let key = to_key(py, self.snap.manifest().meta.key_encoding, key)?;
        self.snap.route(&key).map_err(|e| native_error(py, e))
    }
}

/// The shard of each key for `num_dbs` shards under `key_encoding` (byte-exact with the Rust
/// router and shardyfusion's).
#[pyfunction]
#[pyo3(signature = (keys, num_dbs, key_encoding="u64be"))]
fn route<'py>(
    py: Python<'py>,
    keys: Vec<Bound<'py, PyAny>>,
    num_dbs: u32,
    key_encoding: &str,
) -> PyResult<Vec<u32>> {
    let encoding =
        KeyEncoding::parse(key_encoding).map_err(|e| invalid(py, e.detail().to_string()))?;
    keys.iter()
        .map(|k| {
            let key = to_key(py, encoding, k)?;
            routing::shard_for_key(&key, num_dbs).map_err(|e| invalid(py, e.detail().to_string()))
        })
        .collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Snapshot>()?;
    m.add_function(wrap_pyfunction!(route, m)?)?;
    m.add("EdgeshardError", py.get_type::<EdgeshardError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("CorruptError", py.get_type::<CorruptError>())?;
    m.add("UnavailableError", py.get_type::<UnavailableError>())?;
    m.add("ChangedError", py.get_type::<ChangedError>())?;
    m.add("UnsupportedError", py.get_type::<UnsupportedError>())?;
    m.add(
        "PermissionDeniedError",
        py.get_type::<PermissionDeniedError>(),
    )?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    Ok(())
}
