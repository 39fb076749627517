use thiserror::Error;

/// Errors of the native reader. [`Error::is_retryable`] says whether trying again can help.
#[derive(Debug, Error)]
pub enum Error {
    /// An object the snapshot needs is absent (no `_CURRENT`, a missing shard file).
    #[error("not found: {what} at {location}")]
    NotFound { what: String, location: String },
    /// Reading storage failed; transient failures may succeed on retry.
    #[error("I/O error on {location}: {source}")]
    Io {
        location: String,
        #[source]
        source: std::io::Error,
    },
    /// `_CURRENT` or the manifest is malformed or breaks a format rule.
    #[error("{location}: {source}")]
    Format {
        location: String,
        #[source]
        source: edgeshard_shared::Error,
    },
    /// A remote store or HTTP server failed or answered in a way that cannot be read safely
    /// (an error status, a Range request answered without 206, a compressed body).
    #[error("remote read of {location} failed: {detail}")]
    Remote { location: String, detail: String },
    /// An object changed while being read (its ETag no longer matches): reopen the snapshot.
    #[error("{location}: {detail}")]
    Changed { location: String, detail: String },
    /// A shard file is not a usable SQLite / sqlite-vec database.
    #[error("shard {db_id} ({location}) is corrupt or unreadable: {detail}")]
    CorruptShard {
        db_id: u32,
        location: String,
        detail: String,
    },
    /// The request itself is wrong (a key that does not fit the key encoding, a vector of the
    /// wrong dimension, k out of range, a shard id that does not exist).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The snapshot uses something this reader does not implement (yet).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Error {
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            ),
            // Network trouble often passes; a server that ignores Range or compresses bodies
            // does not, but the message says which it is.
            Error::Remote { detail, .. } => {
                !detail.contains("Range") && !detail.contains("Content-Encoding")
            }
            _ => false,
        }
    }

    pub(crate) fn invalid_request(e: edgeshard_shared::Error) -> Self {
        Error::InvalidRequest(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
