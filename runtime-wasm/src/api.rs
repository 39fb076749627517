//! The JavaScript API (wasm-bindgen): `Snapshot.open`, `get`, `getMany`, `search`, `info`,
//! `stats`. Calls return Promises; failures reject with an `Error` whose `code` says what went
//! wrong (see [`Error::code`]) and whose `retryable` says whether trying again can help.

use crate::error::Error;
use crate::key_from_js;
use crate::snapshot::{self, Options, SearchOptions, SearchResponse};
use edgeshard_shared::filter::Filter;
use edgeshard_shared::pages::StatsSnapshot as Counters;
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use serde_json::{json, Value};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::future_to_promise;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Options of `Snapshot.open`. */
export interface SnapshotOptions {
  /** Budget of the page cache shared by all shards, in bytes (default 64 MiB). Pages one call
   *  needs at once are kept until it ends, even over the budget. */
  cacheBytes?: number;
  /** Retries of a request after a network error or HTTP 5xx/429/408 (default 3). */
  retries?: number;
  /** First wait between retries in ms, doubled each time (default 100). */
  retryBackoffMs?: number;
}

/** A key: integer (number or bigint) for u64be/u32be snapshots, string for utf8, string or
 *  Uint8Array for raw. */
export type Key = number | bigint | string | Uint8Array;

/** Options of `Snapshot.search`. */
export interface SearchOptions {
  /** How many neighbours (1..4096, default 10). */
  k?: number;
  /** Shards to probe in a cluster/LSH-routed snapshot (default: the manifest's num_probes). */
  probes?: number;
  /** Search exactly these shard ids instead of routing. */
  shards?: number[];
  /** Only vectors whose payload matches: the CLI's `--filter` conditions (`FIELD=VALUE`,
   *  `FIELD=V1|V2`, `FIELD!=VALUE`, dotted paths), all of which must hold. */
  filter?: string | string[];
  /** Only these payload fields in each hit (`payload` is null when none is present). */
  fields?: string[];
  /** IVF-indexed shards (`--vector-index ivf`): cells to probe per shard (default: the
   *  manifest's index_params.nprobes). */
  nprobes?: number;
  /** Shards with binary codes (`--quantization binary`): candidates re-ranked exactly per
   *  result, k x refine over all shards (default: the manifest's index_params.refine_factor,
   *  4). */
  refine?: number;
  /** Search every shard exactly, ignoring any index. */
  exact?: boolean;
}

export interface SearchHit {
  /** The vector id, with the type it was written with. */
  id: number | string;
  /** Distance: lower is better (cosine: 1 - cos; l2: Euclidean). */
  score: number;
  payload: unknown | null;
  /** The shard the hit came from. */
  shard: number;
}

export interface SearchResult {
  results: SearchHit[];
  /** The shards searched (non-empty ones), ascending. */
  shards: number[];
}

export interface Counters {
  /** HTTP requests (retries included). */
  requests: number;
  /** Bytes of response bodies. */
  bytes: number;
  /** Dependent round trips: requests sent together count once. */
  rounds: number;
  /** Page reads served by the page cache. */
  cacheHits: number;
  /** Page reads served by pinned pages (sidecar, page 1). */
  pinnedHits: number;
  /** Requests retried after a transient failure. */
  retries: number;
  /** Keys looked up through a shard's key index (one page each). */
  keyIndexLookups: number;
  /** Key indexes passed over (missing, damaged, another file's): read with the sidecar. */
  keyIndexFallbacks: number;
}

export interface Stats {
  /** What the last finished call cost (open, get, getMany or search). */
  last: Counters;
  /** Everything since open (included). */
  total: Counters;
  cache: { bytes: number; pages: number; budget: number };
  /** Shards opened so far, and those reading with their sidecar. */
  openShards: number[];
  sidecarShards: number[];
}

export interface SnapshotInfo {
  root: string;
  run_id: string;
  created_at: string;
  manifest: string;
  num_dbs: number;
  non_empty_shards: number;
  rows: number;
  bytes: number;
  key_encoding: "u64be" | "u32be" | "utf8" | "raw";
  key_col: string;
  sharding: "hash" | "cel";
  vector: Record<string, unknown> | null;
  vector_routing: { strategy: string; num_probes?: number };
}

/** What every rejected call rejects with. */
export interface EdgeshardError extends Error {
  code: "INVALID_ARGUMENT" | "NOT_FOUND" | "HTTP_ERROR" | "NETWORK_ERROR"
    | "RANGE_NOT_SUPPORTED" | "COMPRESSED_RESPONSE" | "BAD_RANGE_RESPONSE" | "OBJECT_CHANGED"
    | "INVALID_SNAPSHOT" | "CORRUPT_SHARD" | "UNSUPPORTED" | "TOO_MANY_ROUNDS";
  /** What kind of failure, shared by every edgeshard reader and the CLI: fix the input,
   * it is absent, replace the data, retry later (the only retryable kind), reopen the
   * snapshot, use another host or option, fix the credentials (HTTP 401/403), report a bug. */
  kind: "invalid_input" | "not_found" | "corrupt" | "unavailable" | "changed" | "unsupported"
    | "permission_denied" | "internal";
  /** `kind === "unavailable"`. */
  retryable: boolean;
}
"#;

/// The `Error` a call rejects with: the message, plus `code`, `kind` and `retryable` properties.
pub fn js_error(e: &Error) -> JsValue {
    let error = js_sys::Error::new(&e.to_string());
    error.set_name("EdgeshardError");
    let _ = Reflect::set(&error, &"code".into(), &e.code().into());
    let _ = Reflect::set(&error, &"kind".into(), &e.kind().as_str().into());
    let _ = Reflect::set(&error, &"retryable".into(), &e.is_retryable().into());
    error.into()
}

fn json_to_js(value: &Value) -> JsValue {
    js_sys::JSON::parse(&value.to_string()).unwrap_or(JsValue::NULL)
}

fn counters_json(c: Counters) -> Value {
    json!({
        "requests": c.requests,
        "bytes": c.bytes,
        "rounds": c.rounds,
        "cacheHits": c.cache_hits,
        "pinnedHits": c.pinned_hits,
        "retries": c.retries,
        "keyIndexLookups": c.key_index_lookups,
        "keyIndexFallbacks": c.key_index_fallbacks,
    })
}

/// A non-negative integer option, or an error naming it.
/// A string-array option (`null`/absent: `None`); with `one_or_many`, a single string is taken
/// as a one-element array.
fn strings_option(
    options: &JsValue,
    name: &str,
    one_or_many: bool,
) -> Result<Option<Vec<String>>, Error> {
    let value = Reflect::get(options, &name.into()).unwrap_or(JsValue::UNDEFINED);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    if let (true, Some(text)) = (one_or_many, value.as_string()) {
        return Ok(Some(vec![text]));
    }
    let not_strings = || {
        Error::InvalidArgument(format!(
            "search option {name} must be {}",
            match one_or_many {
                true => "a string or an array of strings",
                false => "an array of strings",
            }
        ))
    };
    let array = value.dyn_ref::<Array>().ok_or_else(not_strings)?;
    array
        .iter()
        .map(|v| v.as_string().ok_or_else(not_strings))
        .collect::<Result<Vec<String>, Error>>()
        .map(Some)
}

fn integer_option(options: &JsValue, name: &str) -> Result<Option<u64>, Error> {
    let value = Reflect::get(options, &name.into()).unwrap_or(JsValue::UNDEFINED);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    match value.as_f64() {
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 => {
            Ok(Some(n as u64))
        }
        _ => Err(Error::InvalidArgument(format!(
            "option {name} must be a non-negative integer"
        ))),
    }
}

/// Refuses keys an options object should not have (a typo must not be silently ignored).
fn check_option_names(options: &JsValue, known: &[&str], what: &str) -> Result<(), Error> {
    if options.is_undefined() || options.is_null() {
        return Ok(());
    }
    let Some(object) = options.dyn_ref::<Object>() else {
        return Err(Error::InvalidArgument(format!("{what} must be an object")));
    };
    for name in Object::keys(object).iter() {
        let name = name.as_string().unwrap_or_default();
        if !known.contains(&name.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "unknown {what} {name:?} (known: {})",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

fn parse_open_options(options: &JsValue) -> Result<Options, Error> {
    check_option_names(
        options,
        &["cacheBytes", "retries", "retryBackoffMs"],
        "option",
    )?;
    let mut out = Options::default();
    if options.is_undefined() || options.is_null() {
        return Ok(out);
    }
    if let Some(bytes) = integer_option(options, "cacheBytes")? {
        out.cache_bytes = bytes as usize;
    }
    if let Some(retries) = integer_option(options, "retries")? {
        out.retries = retries.min(20) as u32;
    }
    if let Some(ms) = integer_option(options, "retryBackoffMs")? {
        out.retry_backoff_ms = ms.min(60_000) as u32;
    }
    Ok(out)
}

/// A query vector from a `Float32Array`, `Float64Array` or array of numbers.
fn vector_from_js(value: &JsValue) -> Result<Vec<f32>, Error> {
    if let Some(array) = value.dyn_ref::<js_sys::Float32Array>() {
        return Ok(array.to_vec());
    }
    if let Some(array) = value.dyn_ref::<js_sys::Float64Array>() {
        return Ok(array.to_vec().into_iter().map(|v| v as f32).collect());
    }
    if let Some(array) = value.dyn_ref::<Array>() {
        return array
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_f64().map(|v| v as f32).ok_or_else(|| {
                    Error::InvalidArgument(format!("query vector component {i} is not a number"))
                })
            })
            .collect();
    }
    Err(Error::InvalidArgument(
        "the query vector must be a Float32Array or an array of numbers".into(),
    ))
}

fn value_to_js(value: Option<Vec<u8>>) -> JsValue {
    match value {
        Some(bytes) => Uint8Array::from(&bytes[..]).into(),
        None => JsValue::NULL,
    }
}

fn search_to_js(response: &SearchResponse) -> JsValue {
    let results: Vec<Value> = response
        .results
        .iter()
        .map(|hit| {
            json!({
                "id": hit.id.to_json(),
                "score": hit.score,
                "payload": hit.payload,
                "shard": hit.shard,
            })
        })
        .collect();
    json_to_js(&json!({"results": results, "shards": response.shards}))
}

/// An open snapshot, read lazily over HTTP Range requests.
#[wasm_bindgen(js_name = Snapshot)]
pub struct JsSnapshot {
    inner: Rc<snapshot::Snapshot>,
}

#[wasm_bindgen(js_class = Snapshot)]
impl JsSnapshot {
    /// Opens the snapshot `_CURRENT` points at under `url` (an `http(s)://` folder, or a path
    /// relative to the page): reads `_CURRENT`, the manifest and, for a cluster/LSH-routed
    /// snapshot, its routing artifact (2-3 requests). Shards are opened on first use.
    #[wasm_bindgen(unchecked_return_type = "Promise<Snapshot>")]
    pub fn open(
        url: String,
        #[wasm_bindgen(unchecked_optional_param_type = "SnapshotOptions")] options: Option<JsValue>,
    ) -> Promise {
        crate::sqlite_vec_ext::register();
        let options = parse_open_options(&options.unwrap_or(JsValue::UNDEFINED));
        future_to_promise(async move {
            let options = options.map_err(|e| js_error(&e))?;
            let inner = snapshot::Snapshot::open(&url, options)
                .await
                .map_err(|e| js_error(&e))?;
            Ok(JsSnapshot {
                inner: Rc::new(inner),
            }
            .into())
        })
    }

    /// The value stored under `key` (a `Uint8Array`), or `null` when absent.
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint8Array | null>")]
    pub fn get(&self, #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue) -> Promise {
        let inner = self.inner.clone();
        let key = key_from_js(key);
        future_to_promise(async move {
            let key = key.map_err(|why| js_error(&Error::InvalidArgument(why)))?;
            let value = inner.get(key).await.map_err(|e| js_error(&e))?;
            Ok(value_to_js(value))
        })
    }

    /// Values of `keys` in input order (`null` for absent keys). Cold shards open together and
    /// the pages all keys need are fetched together.
    #[wasm_bindgen(js_name = getMany, unchecked_return_type = "Promise<Array<Uint8Array | null>>")]
    pub fn get_many(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Key[]")] keys: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        let keys: Result<Vec<_>, Error> = match keys.dyn_ref::<Array>() {
            Some(array) => array
                .iter()
                .map(|k| key_from_js(k).map_err(Error::InvalidArgument))
                .collect(),
            None => Err(Error::InvalidArgument("keys must be an array".into())),
        };
        future_to_promise(async move {
            let keys = keys.map_err(|e| js_error(&e))?;
            let values = inner.get_many(keys).await.map_err(|e| js_error(&e))?;
            let out = Array::new();
            for value in values {
                out.push(&value_to_js(value));
            }
            Ok(out.into())
        })
    }

    /// The stored vector of id `key` (unified snapshots: the vector id is the key), or `null`.
    /// Search with it for "more like this".
    #[wasm_bindgen(js_name = getVector, unchecked_return_type = "Promise<Float32Array | null>")]
    pub fn get_vector(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        let key = key_from_js(key);
        future_to_promise(async move {
            let key = key.map_err(|why| js_error(&Error::InvalidArgument(why)))?;
            let vector = inner.get_vector(key).await.map_err(|e| js_error(&e))?;
            Ok(match vector {
                Some(v) => js_sys::Float32Array::from(&v[..]).into(),
                None => JsValue::NULL,
            })
        })
    }

    /// The `k` nearest vectors to `vector` over the routed (or given) shards, merged; lower
    /// scores are better.
    #[wasm_bindgen(unchecked_return_type = "Promise<SearchResult>")]
    pub fn search(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Float32Array | number[]")] vector: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "SearchOptions")] options: Option<JsValue>,
    ) -> Promise {
        let inner = self.inner.clone();
        let options = options.unwrap_or(JsValue::UNDEFINED);
        let parsed = (|| -> Result<_, Error> {
            let query = vector_from_js(&vector)?;
            check_option_names(
                &options,
                &[
                    "k", "probes", "shards", "filter", "fields", "nprobes", "refine", "exact",
                ],
                "search option",
            )?;
            let mut k = 10usize;
            let mut probes = None;
            let mut shards = None;
            let mut filter = None;
            let mut fields = None;
            let mut ann = edgeshard_shared::vector::AnnParams::default();
            if !options.is_undefined() && !options.is_null() {
                if let Some(v) = integer_option(&options, "k")? {
                    k = v as usize;
                }
                probes = integer_option(&options, "probes")?.map(|p| p as usize);
                let given = Reflect::get(&options, &"shards".into()).unwrap_or(JsValue::UNDEFINED);
                if !given.is_undefined() && !given.is_null() {
                    let array = given.dyn_ref::<Array>().ok_or_else(|| {
                        Error::InvalidArgument("search option shards must be an array".into())
                    })?;
                    shards = Some(
                        array
                            .iter()
                            .map(|v| match v.as_f64() {
                                Some(n) if n >= 0.0 && n.fract() == 0.0 && n < 4e9 => Ok(n as u32),
                                _ => Err(Error::InvalidArgument(
                                    "shard ids must be non-negative integers".into(),
                                )),
                            })
                            .collect::<Result<Vec<u32>, Error>>()?,
                    );
                }
                if let Some(conditions) = strings_option(&options, "filter", true)? {
                    filter = Some(
                        Filter::parse(&conditions)
                            .map_err(|e| Error::InvalidArgument(e.detail().to_string()))?,
                    );
                }
                fields = strings_option(&options, "fields", false)?;
                ann.nprobes = integer_option(&options, "nprobes")?.map(|p| p as usize);
                if ann.nprobes == Some(0) {
                    return Err(Error::InvalidArgument(
                        "search option nprobes must be at least 1".into(),
                    ));
                }
                ann.refine_factor = match integer_option(&options, "refine")? {
                    Some(0) => {
                        return Err(Error::InvalidArgument(
                            "search option refine must be at least 1".into(),
                        ))
                    }
                    Some(r) => Some(u32::try_from(r).unwrap_or(u32::MAX)),
                    None => None,
                };
                let exact = Reflect::get(&options, &"exact".into()).unwrap_or(JsValue::UNDEFINED);
                ann.exact = match exact.as_bool() {
                    Some(flag) => flag,
                    None if exact.is_undefined() || exact.is_null() => false,
                    None => {
                        return Err(Error::InvalidArgument(
                            "search option exact must be a boolean".into(),
                        ))
                    }
                };
            }
            let request = SearchOptions {
                k,
                probes,
                shard_ids: shards,
                filter,
                payload_fields: fields,
                ann,
            };
            Ok((query, request))
        })();
        future_to_promise(async move {
            let (query, request) = parsed.map_err(|e| js_error(&e))?;
            let response = inner
                .search(query, request)
                .await
                .map_err(|e| js_error(&e))?;
            Ok(search_to_js(&response))
        })
    }

    /// What the snapshot is: run, shards, rows, key encoding, vector config and routing.
    #[wasm_bindgen(unchecked_return_type = "SnapshotInfo")]
    pub fn info(&self) -> JsValue {
        json_to_js(&self.inner.info())
    }

    /// Requests, bytes, round trips and cache hits of the last call and in total.
    #[wasm_bindgen(unchecked_return_type = "Stats")]
    pub fn stats(&self) -> JsValue {
        let s = &self.inner;
        json_to_js(&json!({
            "last": counters_json(s.last_call()),
            "total": counters_json(s.total()),
            "cache": {
                "bytes": s.cache_bytes(),
                "pages": s.cache_pages(),
                "budget": s.cache_budget(),
            },
            "openShards": s.open_shards(),
            "sidecarShards": s.shards_with_sidecar(),
        }))
    }
}
