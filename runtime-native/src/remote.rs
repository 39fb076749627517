//! Snapshot roots on S3 (any S3-compatible store) or a static HTTP(S) host, through
//! `object_store`.
//!
//! The reader's API is synchronous (SQLite's VFS is), so each remote root owns a small tokio
//! runtime and waits for its futures; several ranges of one round are fetched concurrently.

use crate::error::{Error, Result};
use crate::range::RangeSource;
use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
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
fn wait<T: Send + 'static>(
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
    rx.recv().map_err(|_| Error::Io {
        location: "edgeshard I/O runtime".into(),
        source: std::io::Error::other("an I/O task was dropped"),
    })
}

/// A snapshot root in an object store.
#[derive(Clone)]
pub struct RemoteRoot {
    /// The root as given (`s3://bucket/prefix`, `https://host/dir`).
    url: String,
    store: Arc<dyn ObjectStore>,
    /// The root's path inside the store.
    prefix: StorePath,
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
        let trimmed = url.trim_end_matches('/');
        let invalid = |e: object_store::Error| {
            Error::InvalidRequest(format!("cannot use snapshot root {url}: {e}"))
        };
        if let Some(rest) = trimmed.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Ok(endpoint) =
                std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT"))
            {
                builder = builder
                    .with_endpoint(endpoint.clone())
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err()
            {
                builder = builder.with_region("us-east-1");
            }
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
            let store = builder.build().map_err(invalid)?;
            return Ok(Self {
                url: trimmed.to_string(),
                store: Arc::new(store),
                prefix: StorePath::from(prefix),
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
            });
        }
        Err(Error::Unsupported(format!(
            "snapshot root {url}: expected a path, file://, s3://, http:// or https://"
        )))
    }

    pub fn url(&self) -> &str {
        &self.url
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
                let detail = if text.contains("partial") || text.contains("Partial") {
                    format!("the server ignored the Range request (answered without 206 Partial Content): {text}")
                } else {
                    text
                };
                Error::Remote { location, detail }
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
                async move {
                    let result = store.get_opts(&path, options).await?;
                    check_identity_encoding(&result.attributes)?;
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

/// A body the server compressed on the fly cannot be sliced by byte ranges; refuse it.
fn check_identity_encoding(
    attributes: &object_store::Attributes,
) -> std::result::Result<(), object_store::Error> {
    match attributes.get(&object_store::Attribute::ContentEncoding) {
        Some(encoding) if !encoding.is_empty() && encoding.as_ref() != "identity" => {
            Err(object_store::Error::Generic {
                store: "edgeshard",
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
