//! Snapshot roots on S3 (any S3-compatible store) or a static HTTP(S) host, through
//! `object_store`.
//!
//! The reader's API is synchronous (SQLite's VFS is), so each remote root owns a small tokio
//! runtime and waits for its futures; several ranges of one round are fetched concurrently.

use crate::error::{Error, Result};
use crate::range::RangeSource;
use bytes::Bytes;
use edgeshard_shared::ErrorKind;
use object_store::path::Path as StorePath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
pub use object_store::{PutMode, UpdateVersion};
use std::sync::{Arc, LazyLock};

/// One runtime for all remote roots: two worker threads are plenty for I/O-bound waiting.
static RUNTIME: LazyLock<std::io::Result<tokio::runtime::Runtime>> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("edgeshard-io")
        .enable_all()
        .build()
});

/// Runs `future` on the I/O runtime and waits for it, from any thread (also from inside
/// another tokio runtime, where `block_on` would panic).
pub(crate) fn wait<T: Send + 'static>(
    future: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T> {
    let runtime = RUNTIME.as_ref().map_err(|e| Error::Io {
        location: "edgeshard I/O runtime".into(),
        source: std::io::Error::new(e.kind(), e.to_string()),
    })?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(future.await);
    });
    // The sender is dropped without sending only when the task panicked (tokio catches it).
    rx.recv()
        .map_err(|_| Error::Internal("an I/O task panicked or was dropped".into()))
}

/// A snapshot root in an object store.
#[derive(Clone)]
pub struct RemoteRoot {
    /// The root as given (`s3://bucket/prefix`, `https://host/dir`).
    url: String,
    store: Arc<dyn ObjectStore>,
    /// The root's path inside the store.
    prefix: StorePath,
    /// S3 settings as object_store keys (explicit options, plus the endpoint from the
    /// environment), so LanceDB can open tables under this root with the same settings.
    #[cfg_attr(not(feature = "lancedb"), allow(dead_code))]
    s3_options: Vec<(String, String)>,
}

impl std::fmt::Debug for RemoteRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteRoot")
            .field("url", &self.url)
            .finish()
    }
}

impl PartialEq for RemoteRoot {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

impl Eq for RemoteRoot {}

impl RemoteRoot {
    /// `s3://bucket/prefix`: credentials, region and endpoint come from the usual AWS
    /// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...). An `http://` endpoint is allowed, and
    /// path-style requests are used, when an endpoint is set (S3-compatible servers).
    /// `http(s)://host/dir`: a static host; only GET and HEAD are used.
    pub fn parse(url: &str) -> Result<Self> {
        Self::parse_with(url, &[])
    }

    /// As [`RemoteRoot::parse`], with explicit S3 settings that override the environment:
    /// object_store's keys (`aws_endpoint`, `aws_region`, `aws_access_key_id`,
    /// `aws_secret_access_key`, `aws_allow_http`, `aws_virtual_hosted_style_request`, ...).
    pub fn parse_with(url: &str, storage_options: &[(String, String)]) -> Result<Self> {
        Self::parse_inner(url, storage_options, None)
    }

    /// As [`RemoteRoot::parse_with`], for publishing (`s3://` only: a static HTTP host cannot be
    /// written). Conditional puts are enabled (`aws_conditional_put` = `etag`, i.e.
    /// `S3ConditionalPut::ETagMatch`, unless the options say otherwise), so [`RemoteRoot::put`]
    /// can honour [`PutMode::Create`] (`If-None-Match: *`) and [`PutMode::Update`] (`If-Match`).
    ///
    /// Transient failures (5xx, 429, timeouts, dropped connections) are retried by
    /// object_store's client with exponential backoff: here at most [`PUBLISH_MAX_RETRIES`]
    /// retries per request, 100 ms doubling up to 15 s between them, none started after 3
    /// minutes. Unconditional PUTs are idempotent, so retrying them is safe; a conditional
    /// PUT whose first attempt succeeded but whose answer was lost comes back as a
    /// precondition failure, which callers can recognise by reading the object back.
    pub fn parse_for_publish(url: &str, storage_options: &[(String, String)]) -> Result<Self> {
        if !url.starts_with("s3://") {
            return Err(Error::Unsupported(format!(
                "publishing to {url}: only s3:// (and local) roots can be written"
            )));
        }
        let mut options = storage_options.to_vec();
        if !options
            .iter()
            .any(|(k, _)| k == "aws_conditional_put" || k == "conditional_put")
        {
            options.push(("aws_conditional_put".into(), "etag".into()));
        }
        let retry = object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: std::time::Duration::from_millis(100),
                max_backoff: std::time::Duration::from_secs(15),
                base: 2.0,
            },
            max_retries: PUBLISH_MAX_RETRIES,
            retry_timeout: std::time::Duration::from_secs(180),
        };
        Self::parse_inner(url, &options, Some(retry))
    }

    fn parse_inner(
        url: &str,
        storage_options: &[(String, String)],
        retry: Option<object_store::RetryConfig>,
    ) -> Result<Self> {
        let trimmed = url.trim_end_matches('/');
        let invalid = |e: object_store::Error| {
            Error::InvalidRequest(format!("cannot use snapshot root {url}: {e}"))
        };
        if let Some(rest) = trimmed.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            let mut s3_options: Vec<(String, String)> = Vec::new();
            if let Ok(endpoint) =
                std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT"))
            {
                s3_options.push(("aws_endpoint".into(), endpoint.clone()));
                builder = builder
                    .with_endpoint(endpoint.clone())
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err()
            {
                builder = builder.with_region("us-east-1");
                s3_options.push(("aws_region".into(), "us-east-1".into()));
            }
            s3_options.extend(storage_options.iter().cloned());
            for (key, value) in storage_options {
                let config_key = key
                    .parse::<object_store::aws::AmazonS3ConfigKey>()
                    .map_err(|_| {
                        Error::InvalidRequest(format!("unknown S3 storage option {key:?}"))
                    })?;
                if matches!(config_key, object_store::aws::AmazonS3ConfigKey::Endpoint) {
                    // An explicit endpoint is an S3-compatible server: path-style requests.
                    builder = builder
                        .with_virtual_hosted_style_request(false)
                        .with_allow_http(value.starts_with("http://"));
                }
                builder = builder.with_config(config_key, value.clone());
            }
            if let Some(retry) = retry {
                builder = builder.with_retry(retry);
            }
            let store = builder.build().map_err(invalid)?;
            return Ok(Self {
                url: trimmed.to_string(),
                store: Arc::new(store),
                prefix: StorePath::from(prefix),
                s3_options,
            });
        }
        if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
            let store = object_store::http::HttpBuilder::new()
                .with_url(trimmed)
                .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
                .build()
                .map_err(invalid)?;
            return Ok(Self {
                url: trimmed.to_string(),
                store: Arc::new(store),
                prefix: StorePath::from(""),
                s3_options: Vec::new(),
            });
        }
        Err(Error::Unsupported(format!(
            "snapshot root {url}: expected a path, file://, s3://, http:// or https://"
        )))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL and LanceDB storage options of a LanceDB database folder under this root
    /// (`s3://` only: LanceDB lists a table's versions, which a static HTTP host cannot do).
    #[cfg(feature = "lancedb")]
    pub fn lance_location(&self, relative: &str) -> Result<(String, Vec<(String, String)>)> {
        if !self.url.starts_with("s3://") {
            return Err(Error::Unsupported(format!(
                "LanceDB shards are read from a local directory or S3; {} is a static HTTP \
                 host, which cannot list a table's versions (copy the snapshot to S3 or disk)",
                self.url
            )));
        }
        let mut options: Vec<(String, String)> = Vec::new();
        let mut plain_http = false;
        for (key, value) in &self.s3_options {
            // Lance's commits make their own conditional requests; the publish setting for
            // `_CURRENT` does not apply to it.
            if key == "aws_conditional_put" || key == "conditional_put" {
                continue;
            }
            if key == "aws_endpoint" || key == "endpoint" {
                plain_http = value.starts_with("http://");
                options.push(("aws_virtual_hosted_style_request".into(), "false".into()));
            }
            options.push((key.clone(), value.clone()));
        }
        if plain_http {
            options.push(("allow_http".into(), "true".into()));
        }
        Ok((edgeshard_shared::layout::join(&self.url, relative), options))
    }

    fn path(&self, relative: &str) -> StorePath {
        let mut path = self.prefix.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.clone().join(part);
        }
        path
    }

    fn location(&self, relative: &str) -> String {
        format!("{}/{}", self.url, relative)
    }

    fn error(&self, relative: &str, e: object_store::Error) -> Error {
        let location = self.location(relative);
        let kind = store_error_kind(&e);
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound {
                what: relative.to_string(),
                location,
            },
            object_store::Error::Precondition { .. } => Error::Changed {
                location,
                detail: "the object changed while it was being read (ETag mismatch)".into(),
            },
            other => {
                let text = other.to_string();
                let detail = if is_range_ignored(&other) {
                    format!(
                        "the server ignored the Range request (answered without 206 Partial \
                         Content): {text}"
                    )
                } else {
                    text
                };
                Error::Remote {
                    location,
                    detail,
                    kind,
                }
            }
        }
    }

    /// The whole object.
    pub fn read(&self, relative: &str) -> Result<Vec<u8>> {
        let store = self.store.clone();
        let path = self.path(relative);
        let got = wait(async move {
            let result = store.get(&path).await?;
            check_identity_encoding(&result.attributes)?;
            result.bytes().await
        })?;
        got.map(|b| b.to_vec()).map_err(|e| self.error(relative, e))
    }

    /// Size and ETag of an object.
    pub fn head(&self, relative: &str) -> Result<(u64, Option<String>)> {
        let store = self.store.clone();
        let path = self.path(relative);
        let meta =
            wait(async move { store.head(&path).await })?.map_err(|e| self.error(relative, e))?;
        Ok((meta.size, meta.e_tag))
    }

    /// Names of the immediate "folders" under `relative` (S3 common prefixes). Plain HTTP hosts
    /// cannot list; that is reported as unsupported.
    pub fn list_dirs(&self, relative: &str) -> Result<Vec<String>> {
        if !self.url.starts_with("s3://") {
            return Err(Error::Unsupported(format!(
                "{} is a plain HTTP host, which cannot list {relative}/",
                self.url
            )));
        }
        let store = self.store.clone();
        let path = self.path(relative);
        let listed = wait(async move { store.list_with_delimiter(Some(&path)).await })?
            .map_err(|e| self.error(relative, e))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Every object under `relative/` (recursively): root-relative paths and sizes.
    pub fn list_objects(&self, relative: &str) -> Result<Vec<(String, u64)>> {
        use futures::TryStreamExt;
        let store = self.store.clone();
        let path = self.path(relative);
        let metas = wait(async move { store.list(Some(&path)).try_collect::<Vec<_>>().await })?
            .map_err(|e| self.error(relative, e))?;
        let prefix = self.prefix.as_ref();
        Ok(metas
            .into_iter()
            .map(|m| {
                let full = m.location.as_ref();
                let rel = full
                    .strip_prefix(prefix)
                    .map(|r| r.trim_start_matches('/'))
                    .unwrap_or(full);
                (rel.to_string(), m.size)
            })
            .collect())
    }

    /// Deletes objects (root-relative paths). Missing ones are fine: the goal is their absence.
    pub fn delete(&self, relatives: &[String]) -> Result<()> {
        for relative in relatives {
            let store = self.store.clone();
            let path = self.path(relative);
            match wait(async move { store.delete(&path).await })? {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error(relative, e)),
            }
        }
        Ok(())
    }

    /// A [`RangeSource`] over one object, pinned to `etag` when given (every ranged read is
    /// conditional on it, so a replaced object is an error, never mixed bytes).
    pub fn range_source(
        &self,
        relative: &str,
        size: u64,
        etag: Option<String>,
    ) -> RemoteRangeSource {
        RemoteRangeSource {
            root: self.clone(),
            relative: relative.to_string(),
            size,
            etag,
        }
    }
}

/// Retries per request when publishing (see [`RemoteRoot::parse_for_publish`]).
pub const PUBLISH_MAX_RETRIES: usize = 5;

/// Files up to this size are uploaded with one PUT (their ETag is then the MD5 of the bytes);
/// larger ones as a multipart upload of 16 MiB parts.
pub const SINGLE_PUT_MAX: u64 = 64 << 20;
const MULTIPART_CHUNK: usize = 16 << 20;
/// Parts of one multipart upload in flight at once.
const MULTIPART_CONCURRENCY: usize = 4;

impl RemoteRoot {
    /// Writes `bytes` at `relative` with `mode` and returns the new object's ETag (quotes
    /// included, as HEAD reports it). A refused condition ([`PutMode::Create`] on an existing
    /// object, [`PutMode::Update`] on a changed or deleted one) is [`Error::Changed`].
    pub fn put(
        &self,
        relative: &str,
        bytes: Vec<u8>,
        mode: PutMode,
        content_type: Option<&str>,
    ) -> Result<Option<String>> {
        let store = self.store.clone();
        let path = self.path(relative);
        let mut attributes = object_store::Attributes::new();
        if let Some(content_type) = content_type {
            attributes.insert(
                object_store::Attribute::ContentType,
                content_type.to_string().into(),
            );
        }
        let options = object_store::PutOptions {
            mode,
            attributes,
            ..Default::default()
        };
        let result = wait(async move {
            store
                .put_opts(&path, object_store::PutPayload::from(bytes), options)
                .await
        })?;
        result
            .map(|r| r.e_tag)
            .map_err(|e| self.put_error(relative, e))
    }

    /// Uploads a local file to `relative` (overwriting) and returns its ETag: one PUT up to
    /// [`SINGLE_PUT_MAX`], else a multipart upload (aborted on failure).
    pub fn put_file(&self, relative: &str, file: &std::path::Path) -> Result<Option<String>> {
        let io = |source: std::io::Error| Error::Io {
            location: file.display().to_string(),
            source,
        };
        let size = std::fs::metadata(file).map_err(io)?.len();
        if size <= SINGLE_PUT_MAX {
            let bytes = std::fs::read(file).map_err(io)?;
            return self.put(relative, bytes, PutMode::Overwrite, None);
        }
        let store = self.store.clone();
        let path = self.path(relative);
        let upload = wait(async move { store.put_multipart(&path).await })?
            .map_err(|e| self.put_error(relative, e))?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, MULTIPART_CHUNK);
        let mut reader = std::fs::File::open(file).map_err(io)?;
        let mut buf = vec![0u8; MULTIPART_CHUNK];
        loop {
            // File reads happen on this thread, not on the I/O runtime.
            let n = match read_full(&mut reader, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = wait(writer.abort());
                    return Err(io(e));
                }
            };
            if n == 0 {
                break;
            }
            let chunk = Bytes::copy_from_slice(&buf[..n]);
            let (returned, result) = wait(async move {
                let result = writer.wait_for_capacity(MULTIPART_CONCURRENCY).await;
                if result.is_ok() {
                    writer.put(chunk);
                }
                (writer, result)
            })?;
            writer = returned;
            if let Err(e) = result {
                let _ = wait(writer.abort());
                return Err(self.put_error(relative, e));
            }
        }
        wait(writer.finish())?
            .map(|r| r.e_tag)
            .map_err(|e| self.put_error(relative, e))
    }

    fn put_error(&self, relative: &str, e: object_store::Error) -> Error {
        let location = self.location(relative);
        match e {
            object_store::Error::Precondition { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::NotModified { .. } => Error::Changed {
                location,
                detail: format!("conditional write refused: {e}"),
            },
            other => Error::Remote {
                location,
                kind: store_error_kind(&other),
                detail: format!("write (PUT) failed: {other}"),
            },
        }
    }
}

/// Fills `buf` as far as the file allows; returns the bytes read (0 at the end).
fn read_full(reader: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A ranged-read source over one remote object.
pub struct RemoteRangeSource {
    root: RemoteRoot,
    relative: String,
    size: u64,
    etag: Option<String>,
}

impl RangeSource for RemoteRangeSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_ranges(&self, ranges: &[(u64, u64)]) -> Result<Vec<Vec<u8>>> {
        let store = self.root.store.clone();
        let path = self.root.path(&self.relative);
        let etag = self.etag.clone();
        let ranges = ranges.to_vec();
        let results: Vec<std::result::Result<Bytes, object_store::Error>> = wait(async move {
            let fetches = ranges.into_iter().map(|(offset, length)| {
                let store = store.clone();
                let path = path.clone();
                let options = GetOptions {
                    if_match: etag.clone(),
                    range: Some(GetRange::Bounded(offset..offset + length)),
                    ..Default::default()
                };
                let expected = etag.clone();
                async move {
                    let result = store.get_opts(&path, options).await?;
                    check_identity_encoding(&result.attributes)?;
                    // `If-Match` asks the server to refuse another version, but not every
                    // server honours it (static hosts, some CDNs): check the answer's tag too,
                    // or a read could mix pages of two objects.
                    if let (Some(expected), Some(got)) = (&expected, &result.meta.e_tag) {
                        if expected != got {
                            return Err(object_store::Error::Precondition {
                                path: path.to_string(),
                                source: format!("ETag {got}, the object opened had {expected}")
                                    .into(),
                            });
                        }
                    }
                    result.bytes().await
                }
            });
            futures::future::join_all(fetches).await
        })?;
        results
            .into_iter()
            .map(|r| {
                r.map(|b| b.to_vec())
                    .map_err(|e| self.root.error(&self.relative, e))
            })
            .collect()
    }

    fn location(&self) -> String {
        self.root.location(&self.relative)
    }
}

/// A body the server compressed on the fly cannot be sliced by byte ranges; refuse it (as
/// `NotSupported`, so it is reported as [`ErrorKind::Unsupported`], not as a transient failure).
fn check_identity_encoding(
    attributes: &object_store::Attributes,
) -> std::result::Result<(), object_store::Error> {
    match attributes.get(&object_store::Attribute::ContentEncoding) {
        Some(encoding) if !encoding.is_empty() && encoding.as_ref() != "identity" => {
            Err(object_store::Error::NotSupported {
                source: format!(
                    "the server sent Content-Encoding: {}; serve snapshot files uncompressed",
                    encoding.as_ref()
                )
                .into(),
            })
        }
        _ => Ok(()),
    }
}

/// The kind of an object_store failure, from its variant.
///
/// object_store's HTTP client has already retried what can pass (5xx, 429, timeouts, dropped
/// connections) before it returns, so the rest is classified as it is:
/// - `NotFound` -> not found; `Precondition`, `NotModified`, `AlreadyExists` -> changed (an
///   ETag condition failed: another version is there now).
/// - `PermissionDenied` (403) and `Unauthenticated` (401) -> permission denied: retrying with
///   the same credentials does not help.
/// - `NotSupported`, `NotImplemented` -> unsupported (also a body with a `Content-Encoding`,
///   which [`check_identity_encoding`] reports as `NotSupported`).
/// - `InvalidPath`, `UnknownConfigurationKey` -> invalid input; `JoinError` (a panicked task)
///   -> internal.
/// - `Generic`: a server error or network failure that outlasted the retries -> unavailable,
///   except a Range request answered with the whole body ([`is_range_ignored`]): that host
///   cannot serve range reads at all -> unsupported.
pub(crate) fn store_error_kind(e: &object_store::Error) -> ErrorKind {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => ErrorKind::NotFound,
        E::Precondition { .. } | E::NotModified { .. } | E::AlreadyExists { .. } => {
            ErrorKind::Changed
        }
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => ErrorKind::PermissionDenied,
        E::NotSupported { .. } | E::NotImplemented { .. } => ErrorKind::Unsupported,
        E::InvalidPath { .. } | E::UnknownConfigurationKey { .. } => ErrorKind::InvalidInput,
        E::JoinError { .. } => ErrorKind::Internal,
        E::Generic { .. } if is_range_ignored(e) => ErrorKind::Unsupported,
        _ => ErrorKind::Unavailable,
    }
}

/// What object_store 0.14 (pinned in Cargo.toml) says when a ranged GET is answered without
/// 206 Partial Content. Its error type for this (`GetResultError::NotPartial`) is private, so
/// the exact text of that one error is the only way to tell it from a server error; it is
/// compared whole, once, here (a test against a host that ignores Range, tests/tests/http.rs,
/// notices if a new object_store words it differently).
const OBJECT_STORE_NOT_PARTIAL: &str = "Received non-partial response when range requested";

/// Whether a store error is a Range request answered with the whole object.
fn is_range_ignored(e: &object_store::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.to_string() == OBJECT_STORE_NOT_PARTIAL {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(text: &str) -> Box<dyn std::error::Error + Send + Sync> {
        text.into()
    }

    #[test]
    fn store_errors_are_classified_by_variant() {
        use object_store::Error as E;
        let path = || "p".to_string();
        let forbidden = E::PermissionDenied {
            path: path(),
            source: boxed("HTTP 403"),
        };
        assert_eq!(store_error_kind(&forbidden), ErrorKind::PermissionDenied);
        let unauthenticated = E::Unauthenticated {
            path: path(),
            source: boxed("HTTP 401"),
        };
        assert_eq!(
            store_error_kind(&unauthenticated),
            ErrorKind::PermissionDenied
        );
        let server = E::Generic {
            store: "HTTP",
            source: boxed("Server returned non-2xx status code: 503"),
        };
        assert_eq!(store_error_kind(&server), ErrorKind::Unavailable);
        let ignored = E::Generic {
            store: "HTTP",
            source: boxed(OBJECT_STORE_NOT_PARTIAL),
        };
        assert_eq!(store_error_kind(&ignored), ErrorKind::Unsupported);
        let precondition = E::Precondition {
            path: path(),
            source: boxed("412"),
        };
        assert_eq!(store_error_kind(&precondition), ErrorKind::Changed);
        let encoding = check_identity_encoding(&{
            let mut a = object_store::Attributes::new();
            a.insert(object_store::Attribute::ContentEncoding, "gzip".into());
            a
        })
        .expect_err("gzip is refused");
        assert_eq!(store_error_kind(&encoding), ErrorKind::Unsupported);
    }

    #[test]
    fn a_403_read_is_not_retryable() {
        let root = RemoteRoot::parse("http://127.0.0.1:9/root").expect("parse");
        let e = root.error(
            "_CURRENT",
            object_store::Error::PermissionDenied {
                path: "_CURRENT".into(),
                source: boxed("HTTP 403"),
            },
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(!e.is_retryable(), "{e}");
    }
}
