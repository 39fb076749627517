//! The one error type of the wasm reader. Every variant has a stable `code` (what JS callers
//! branch on, set as the `code` property of the thrown `Error`), a [`kind`](Error::kind) from
//! the vocabulary every edgeshard crate shares (the `kind` property) and says whether retrying
//! the same call can help ([`Error::is_retryable`], the `retryable` property, from the kind).

use edgeshard_shared::ErrorKind;
use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq)]
pub enum Error {
    /// The call itself is wrong: a key that does not fit the key encoding, a vector of the
    /// wrong dimension, k out of range, an unknown option, a shard id that does not exist.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An object the snapshot needs is absent (HTTP 404 / 410).
    #[error("not found: {what} at {url} (HTTP {status})")]
    NotFound {
        what: String,
        url: String,
        status: u16,
    },
    /// The server answered with an error status. 5xx and 429 are retried before this is
    /// returned; they stay retryable, other statuses are not.
    #[error("HTTP {status} from {url}")]
    Http { status: u16, url: String },
    /// `fetch` itself failed (connection refused or reset, DNS, CORS, an aborted body). Retried
    /// before this is returned; retrying later may still help.
    #[error("network error fetching {url}: {detail}")]
    Network { url: String, detail: String },
    /// A Range request was answered with the whole body (200) instead of 206 Partial Content:
    /// the host cannot serve this reader.
    #[error(
        "{url}: the server ignored the Range request (HTTP {status} instead of 206 Partial \
         Content); serve the snapshot from a host that supports byte ranges"
    )]
    RangeNotSupported { url: String, status: u16 },
    /// The body came with a `Content-Encoding` (gzip, br...): compressed bytes cannot be sliced
    /// by byte ranges.
    #[error(
        "{url}: the server sent Content-Encoding: {encoding}; serve snapshot files \
         uncompressed (turn off on-the-fly compression for .db and .sidecar files)"
    )]
    CompressedResponse { url: String, encoding: String },
    /// A 206 answer that does not match what was asked (another range, a missing or garbled
    /// Content-Range, a short body).
    #[error("{url}: unusable range response: {detail}")]
    BadRangeResponse { url: String, detail: String },
    /// An object changed while the snapshot was open (its ETag or size differs from the one
    /// pinned at open). Mixing bytes of two versions would corrupt answers: reopen instead.
    #[error("{url} changed while the snapshot was open: {detail}; open the snapshot again")]
    Changed { url: String, detail: String },
    /// `_CURRENT`, the manifest or a routing artifact is malformed or breaks a format rule.
    #[error("invalid snapshot at {url}: {detail}")]
    InvalidSnapshot { url: String, detail: String },
    /// A shard is not a usable SQLite / sqlite-vec database.
    #[error("shard {db_id} ({url}) is corrupt or unreadable: {detail}")]
    CorruptShard {
        db_id: u32,
        url: String,
        detail: String,
    },
    /// The snapshot uses something this reader does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// One statement kept needing pages the cache could not hold or the server did not return:
    /// the memory budget is too small for it, or the server misbehaves.
    #[error("{0}")]
    TooManyRounds(String),
}

impl Error {
    /// The stable machine-readable code (`err.code` in JS).
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::NotFound { .. } => "NOT_FOUND",
            Error::Http { .. } => "HTTP_ERROR",
            Error::Network { .. } => "NETWORK_ERROR",
            Error::RangeNotSupported { .. } => "RANGE_NOT_SUPPORTED",
            Error::CompressedResponse { .. } => "COMPRESSED_RESPONSE",
            Error::BadRangeResponse { .. } => "BAD_RANGE_RESPONSE",
            Error::Changed { .. } => "OBJECT_CHANGED",
            Error::InvalidSnapshot { .. } => "INVALID_SNAPSHOT",
            Error::CorruptShard { .. } => "CORRUPT_SHARD",
            Error::Unsupported(_) => "UNSUPPORTED",
            Error::TooManyRounds(_) => "TOO_MANY_ROUNDS",
        }
    }

    /// What kind of failure this is (`err.kind` in JS; see [`ErrorKind`] for what to do).
    ///
    /// - HTTP 401 / 403 are permission denied (retrying with the same credentials does not
    ///   help); 5xx, 429 and 408 unavailable; 404 / 410 not found; 412 / 416 changed (the
    ///   object is not the one opened); any other status unsupported (the host refuses requests
    ///   of this shape: use another host or option).
    /// - A host that ignores Range, compresses bodies or answers ranges it was not asked
    ///   (`BadRangeResponse`: another range, a Content-Range hidden by CORS, a body of another
    ///   length) is unsupported; `TooManyRounds` too (a larger memory budget is the fix).
    /// - A failed `fetch` is unavailable.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) => ErrorKind::InvalidInput,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Http { status, .. } => status_kind(*status),
            Error::Network { .. } => ErrorKind::Unavailable,
            Error::RangeNotSupported { .. }
            | Error::CompressedResponse { .. }
            | Error::BadRangeResponse { .. }
            | Error::Unsupported(_)
            | Error::TooManyRounds(_) => ErrorKind::Unsupported,
            Error::Changed { .. } => ErrorKind::Changed,
            Error::InvalidSnapshot { .. } | Error::CorruptShard { .. } => ErrorKind::Corrupt,
        }
    }

    /// Whether the same call may succeed when tried again later (transient server or network
    /// trouble: [`ErrorKind::Unavailable`]). Everything else needs a fix: another argument,
    /// other credentials, another host, a reopen.
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn invalid_argument(e: edgeshard_shared::Error) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

/// Statuses worth retrying: server errors and rate limiting.
pub fn is_transient_status(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

/// The kind of an HTTP error status (see [`Error::kind`]).
pub fn status_kind(status: u16) -> ErrorKind {
    match status {
        401 | 403 => ErrorKind::PermissionDenied,
        404 | 410 => ErrorKind::NotFound,
        412 | 416 => ErrorKind::Changed,
        s if is_transient_status(s) => ErrorKind::Unavailable,
        _ => ErrorKind::Unsupported,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_retryability() {
        let e = Error::Http {
            status: 503,
            url: "u".into(),
        };
        assert_eq!(e.code(), "HTTP_ERROR");
        assert!(e.is_retryable());
        assert!(!Error::Http {
            status: 403,
            url: "u".into()
        }
        .is_retryable());
        let e = Error::RangeNotSupported {
            url: "u".into(),
            status: 200,
        };
        assert_eq!(e.code(), "RANGE_NOT_SUPPORTED");
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("ignored the Range request"));
        assert!(Error::Network {
            url: "u".into(),
            detail: "reset".into()
        }
        .is_retryable());
    }

    #[test]
    fn kinds_of_every_variant() {
        let http = |status| Error::Http {
            status,
            url: "u".into(),
        };
        for status in [401, 403] {
            assert_eq!(http(status).kind(), ErrorKind::PermissionDenied);
            assert!(!http(status).is_retryable(), "{status}");
            // The code JS already branches on stays.
            assert_eq!(http(status).code(), "HTTP_ERROR");
        }
        for status in [500, 502, 503, 504, 429, 408] {
            assert_eq!(http(status).kind(), ErrorKind::Unavailable, "{status}");
            assert!(http(status).is_retryable(), "{status}");
        }
        assert_eq!(http(412).kind(), ErrorKind::Changed);
        assert_eq!(http(400).kind(), ErrorKind::Unsupported);
        let cases = [
            (Error::InvalidArgument("k".into()), ErrorKind::InvalidInput),
            (
                Error::NotFound {
                    what: "w".into(),
                    url: "u".into(),
                    status: 404,
                },
                ErrorKind::NotFound,
            ),
            (
                Error::Network {
                    url: "u".into(),
                    detail: "d".into(),
                },
                ErrorKind::Unavailable,
            ),
            (
                Error::RangeNotSupported {
                    url: "u".into(),
                    status: 200,
                },
                ErrorKind::Unsupported,
            ),
            (
                Error::CompressedResponse {
                    url: "u".into(),
                    encoding: "gzip".into(),
                },
                ErrorKind::Unsupported,
            ),
            (
                Error::BadRangeResponse {
                    url: "u".into(),
                    detail: "d".into(),
                },
                ErrorKind::Unsupported,
            ),
            (
                Error::Changed {
                    url: "u".into(),
                    detail: "d".into(),
                },
                ErrorKind::Changed,
            ),
            (
                Error::InvalidSnapshot {
                    url: "u".into(),
                    detail: "d".into(),
                },
                ErrorKind::Corrupt,
            ),
            (
                Error::CorruptShard {
                    db_id: 3,
                    url: "u".into(),
                    detail: "d".into(),
                },
                ErrorKind::Corrupt,
            ),
            (Error::Unsupported("x".into()), ErrorKind::Unsupported),
            (Error::TooManyRounds("x".into()), ErrorKind::Unsupported),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
            assert_eq!(error.is_retryable(), kind == ErrorKind::Unavailable);
        }
    }
}
