//! The endpoints: request parsing and checks, the error body, and the answers (built by
//! [`crate::output`], the functions the CLI prints with).

use super::state::Versions;
use super::App;
use crate::error::Error;
use crate::output::{self, SearchRequest};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use edgeshard_native::Snapshot;
use edgeshard_shared::{ErrorKind, Key, KeyEncoding};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// An error answer: `{"error": {"code", "message", "retryable"}}`. `code` is the error's kind
/// (`shared::ErrorKind`, the vocabulary of every edgeshard component) and `retryable` follows
/// from it; the status says who must act (400/401/404/413: the client; 503: try again or
/// another replica; 500: a bug).
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: ErrorKind,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidInput, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Internal,
            format!(
                "internal error (a bug in edgeshard, please report it): {}",
                message.into()
            ),
        )
    }

    /// No version is open yet (the store is unreachable, or the first open failed).
    fn not_ready(versions: &Versions) -> Self {
        let why = versions
            .status()
            .error
            .unwrap_or_else(|| "the first open has not finished".into());
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Unavailable,
            format!("no snapshot version is open yet: {why}"),
        )
    }

    pub(crate) fn body(&self) -> Value {
        json!({"error": {
            "code": self.kind.as_str(),
            "message": self.message,
            "retryable": self.kind.is_retryable(),
        }})
    }
}

/// The status of an error of `kind` raised while answering: the client's fault is 400; trouble
/// with the store or the stored data is 503 (the request was fine: retry later or on another
/// replica; `retryable` says whether the same replica can help), a missing feature 501, a bug
/// 500. The server's own 401/404/413 are built where they happen.
fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound
        | ErrorKind::Corrupt
        | ErrorKind::Unavailable
        | ErrorKind::Changed
        | ErrorKind::PermissionDenied => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let kind = e.kind();
        Self::new(status_of(kind), kind, e.to_string())
    }
}

impl From<edgeshard_native::Error> for ApiError {
    fn from(e: edgeshard_native::Error) -> Self {
        Error::from(e).into()
    }
}

impl From<edgeshard_shared::Error> for ApiError {
    fn from(e: edgeshard_shared::Error) -> Self {
        Error::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        // For `/metrics`' errors by kind (read by the tracking middleware).
        response.extensions_mut().insert(self.kind);
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// What a read does, for where it runs (see [`read`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadKind {
    /// Key lookups: microseconds of work on a local root.
    Lookup,
    /// Searches and listings: milliseconds or more.
    Heavy,
}

/// Runs `work` on the version served now, holding one of the server's read permits until it
/// ends. On a remote root, on tokio's blocking pool (storage reads wait on the network). On a
/// local root, lookups run on the request's own worker thread (microseconds of CPU work:
/// handing them to the blocking pool cost more than they do, and capped throughput at 29,000
/// gets/s on 2 cores against 39,000), and heavier reads on the blocking pool but at most one per
/// core at a time (more only contend for the cores: search throughput was 17-26% below the
/// library's at 16-64 connections, 3-5% with the cap). On the blocking pool a request that timed
/// out still holds its permit while its read finishes, so reads in progress never exceed
/// `--max-concurrency`.
async fn read<T: Send + 'static>(
    app: &Arc<App>,
    kind: ReadKind,
    work: impl FnOnce(&Snapshot) -> crate::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let snap = app
        .versions
        .current()
        .ok_or_else(|| ApiError::not_ready(&app.versions))?;
    let permit = app
        .reads
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::internal("the read semaphore was closed"))?;
    let core = match &app.local_cores {
        Some(_) if kind == ReadKind::Lookup => {
            let _permit = permit;
            return work(&snap).map_err(ApiError::from);
        }
        Some(cores) => Some(
            cores
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ApiError::internal("the core semaphore was closed"))?,
        ),
        None => None,
    };
    let joined = tokio::task::spawn_blocking(move || {
        let _permits = (permit, core);
        work(&snap)
    })
    .await;
    match joined {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(format!("a read task failed: {e}"))),
    }
}

/// The version served now, for answers that need no I/O (info, shards, route).
fn served(app: &App) -> ApiResult<Arc<Snapshot>> {
    app.versions
        .current()
        .ok_or_else(|| ApiError::not_ready(&app.versions))
}

/// A JSON body of type `T`. Unknown fields, wrong types and missing fields are 400s naming the
/// field (serde's message); a body over `--max-body-bytes` is 413.
fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> ApiResult<T> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorKind::InvalidInput,
                format!(
                    "the request body is larger than the limit of {limit} bytes (--max-body-bytes)"
                ),
            )
        } else {
            ApiError::bad_request(format!(
                "cannot read the request body: {}",
                rejection.body_text()
            ))
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "request body does not fit the endpoint",
            _ => "request body is not JSON",
        };
        // JSON has no NaN or infinities; name them, since serde only sees a bad token.
        let hint = match e.is_syntax() && contains_non_finite(&bytes) {
            true => " (NaN and Infinity are not JSON numbers, and vectors must be finite)",
            false => "",
        };
        ApiError::bad_request(format!("{what}: {e}{hint}"))
    })
}

fn contains_non_finite(body: &[u8]) -> bool {
    [b"NaN".as_slice(), b"Infinity".as_slice()]
        .iter()
        .any(|word| body.windows(word.len()).any(|w| w == *word))
}

/// A key from a URL path segment, read as the CLI reads a typed key.
fn path_key(snap: &Snapshot, key: Result<Path<String>, PathRejection>) -> ApiResult<Key> {
    let Path(text) =
        key.map_err(|e| ApiError::bad_request(format!("bad key in the URL: {}", e.body_text())))?;
    Ok(snap.manifest().meta.key_encoding.parse_key_text(&text)?)
}

/// The key at `keys[index]` of a JSON body: a JSON integer for integer encodings, a string
/// otherwise (a raw snapshot's string stands for its UTF-8 bytes, as on the command line).
fn json_key(encoding: KeyEncoding, index: usize, value: &Value) -> ApiResult<Key> {
    let wrong = |expected: &str| {
        ApiError::bad_request(format!(
            "keys[{index}]: this snapshot's keys are {} ({expected}), got {value}",
            encoding.as_str()
        ))
    };
    let key = match (encoding, value) {
        (KeyEncoding::U64Be | KeyEncoding::U32Be, Value::Number(n)) => {
            n.as_i64().map(Key::Int).ok_or_else(|| wrong("integers"))?
        }
        (KeyEncoding::U64Be | KeyEncoding::U32Be, _) => return Err(wrong("integers")),
        (KeyEncoding::Utf8, Value::String(s)) => Key::Str(s.clone()),
        (KeyEncoding::Raw, Value::String(s)) => Key::Bytes(s.as_bytes().to_vec()),
        (KeyEncoding::Utf8 | KeyEncoding::Raw, _) => return Err(wrong("strings")),
    };
    encoding
        .encode(&key)
        .map_err(|e| ApiError::bad_request(format!("keys[{index}]: {}", e.detail())))?;
    Ok(key)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetRequest {
    keys: Vec<Value>,
}

/// `POST /v1/get`: `{"keys": [...]}` -> `{"results": [...]}` in input order.
pub(crate) async fn get_many(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let request: GetRequest = parse_body(body, app.limits.max_body_bytes)?;
    if request.keys.len() > app.limits.max_keys {
        return Err(ApiError::bad_request(format!(
            "keys: {} keys, more than the limit of {} per request (--max-keys)",
            request.keys.len(),
            app.limits.max_keys
        )));
    }
    let encoding = served(&app)?.manifest().meta.key_encoding;
    let keys = request
        .keys
        .iter()
        .enumerate()
        .map(|(i, v)| json_key(encoding, i, v))
        .collect::<ApiResult<Vec<Key>>>()?;
    let rows = read(&app, ReadKind::Lookup, move |snap| {
        output::get_rows(snap, &keys)
    })
    .await?;
    Ok(Json(json!({ "results": rows })))
}

/// `GET /v1/get/{key}`: the key's row; 404 with the same row when the key is absent.
pub(crate) async fn get_one(
    State(app): State<Arc<App>>,
    key: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let key = path_key(&*served(&app)?, key)?;
    let mut rows = read(&app, ReadKind::Lookup, move |snap| {
        output::get_rows(snap, &[key])
    })
    .await?;
    let row = rows
        .pop()
        .ok_or_else(|| ApiError::internal("a lookup of one key answered nothing"))?;
    let status = match row["found"] {
        Value::Bool(true) => StatusCode::OK,
        _ => StatusCode::NOT_FOUND,
    };
    Ok((status, Json(row)).into_response())
}

/// `POST /v1/search`: the CLI's search object.
pub(crate) async fn search(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let request: SearchRequest = parse_body(body, app.limits.max_body_bytes)?;
    let (query, options) = request.to_query().map_err(ApiError::from)?;
    let answer = read(&app, ReadKind::Heavy, move |snap| {
        let started = Instant::now();
        let response = snap.search_with(&query, &options)?;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(output::search_object(&response, latency_ms))
    })
    .await?;
    Ok(Json(answer))
}

/// `GET /v1/info`: the CLI's info object.
pub(crate) async fn info(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    Ok(Json(output::info_object(&served(&app)?.info())?))
}

/// `GET /v1/shards`: `{"shards": [...]}`, the CLI's rows.
pub(crate) async fn shards(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({ "shards": output::shard_rows(&*served(&app)?) }),
    ))
}

/// `GET /v1/route/{key}`: the CLI's route object.
pub(crate) async fn route(
    State(app): State<Arc<App>>,
    key: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let snap = served(&app)?;
    let key = path_key(&snap, key)?;
    let shard = snap.route(&key)?;
    Ok(Json(output::route_object(&key, shard)))
}

/// `GET /v1/history`: `{"history": [...]}`, the CLI's rows (`current` is what `_CURRENT`
/// names, which a pinned or not yet refreshed server may not serve: see `/readyz`).
pub(crate) async fn history(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    let rows = read(&app, ReadKind::Heavy, |snap| {
        output::history_rows(snap.root())
    })
    .await?;
    Ok(Json(json!({ "history": rows })))
}

/// `POST /v1/admin/refresh`: follow `_CURRENT` now (a pinned server stays where it is).
pub(crate) async fn refresh(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    let done = super::refresh_now(&app).await?;
    serde_json::to_value(done)
        .map(Json)
        .map_err(|e| ApiError::internal(format!("cannot serialise the refresh: {e}")))
}

/// `GET /healthz`: the process answers.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 while a version is served, else 503; either way the version served and
/// the latest refresh (a failed refresh leaves the old version serving and shows here).
pub(crate) async fn readyz(State(app): State<Arc<App>>) -> Response {
    let versions = &app.versions;
    let status = versions.status();
    match versions.current() {
        Some(snap) => Json(json!({
            "ready": true,
            "run_id": snap.manifest().meta.run_id,
            "manifest": snap.manifest_path(),
            "pinned": versions.is_pinned(),
            "last_refresh": status,
        }))
        .into_response(),
        None => {
            let error = ApiError::not_ready(versions);
            let mut body = error.body();
            body["ready"] = Value::Bool(false);
            body["pinned"] = Value::Bool(versions.is_pinned());
            body["last_refresh"] = serde_json::to_value(&status).unwrap_or(Value::Null);
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text.
pub(crate) async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(&app.versions),
    )
        .into_response()
}

/// Any path that is no endpoint.
pub(crate) async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorKind::NotFound,
        format!(
            "no endpoint at {}; the API is described at /openapi.json",
            uri.path()
        ),
    )
}

/// An endpoint asked with another method.
pub(crate) async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::InvalidInput,
        format!(
            "{method} is not allowed on {}; see /openapi.json",
            uri.path()
        ),
    )
}
