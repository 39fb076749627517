use edgeshard_shared::ErrorKind;
use thiserror::Error;

/// Errors of the native reader. [`Error::kind`] says what kind of failure it is (and so what to
/// do about it); [`Error::is_retryable`] whether trying again can help.
#[derive(Debug, Error)]
pub enum Error {
    /// An object the snapshot needs is absent (no `_CURRENT`, a missing shard file).
    #[error("not found: {what} at {location}")]
    NotFound { what: String, location: String },
    /// Reading storage failed; its kind follows the I/O error's ([`ErrorKind::from_io`]).
    #[error("I/O error on {location}: {source}")]
    Io {
        location: String,
        #[source]
        source: std::io::Error,
    },
    /// `_CURRENT`, the manifest or a routing artifact is malformed or breaks a format rule:
    /// always [`ErrorKind::Corrupt`] (it is stored data, whatever the shared error's variant).
    #[error("{location}: {source}")]
    Format {
        location: String,
        #[source]
        source: edgeshard_shared::Error,
    },
    /// A remote store or HTTP server failed or answered in a way that cannot be read safely
    /// (an error status, a Range request answered without 206, a compressed body). `kind` is
    /// decided where the error is built, from the store's error variant: 401/403 are
    /// [`ErrorKind::PermissionDenied`], a host that cannot serve ranges is
    /// [`ErrorKind::Unsupported`], server errors and network failures (already retried by the
    /// store client) are [`ErrorKind::Unavailable`].
    #[error("remote read of {location} failed: {detail}")]
    Remote {
        location: String,
        detail: String,
        kind: ErrorKind,
    },
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
    /// A bug in the reader: a panicked thread or task, a lock poisoned by an earlier panic, a
    /// broken invariant. Please report it.
    #[error("internal error (a bug in edgeshard, please report it): {0}")]
    Internal(String),
}

impl Error {
    /// What kind of failure this is (see [`ErrorKind`] for what to do about each).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Io { source, .. } => ErrorKind::from_io(source.kind()),
            Error::Format { .. } | Error::CorruptShard { .. } => ErrorKind::Corrupt,
            Error::Remote { kind, .. } => *kind,
            Error::Changed { .. } => ErrorKind::Changed,
            Error::InvalidRequest(_) => ErrorKind::InvalidInput,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Whether trying the same call again later can help (only [`ErrorKind::Unavailable`]).
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    pub(crate) fn invalid_request(e: edgeshard_shared::Error) -> Self {
        Error::InvalidRequest(e.to_string())
    }

    /// A lock poisoned by a panic on another thread, as an internal error.
    pub(crate) fn poisoned(what: &str) -> Self {
        Error::Internal(format!("{what} lock poisoned by an earlier panic"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_variant_and_never_the_message() {
        let remote = |kind| Error::Remote {
            location: "http://h/x".into(),
            // A message that mentions Range must not make a retryable error final, nor the
            // other way round.
            detail: "the server ignored the Range request".into(),
            kind,
        };
        assert!(remote(ErrorKind::Unavailable).is_retryable());
        assert!(!remote(ErrorKind::PermissionDenied).is_retryable());
        assert!(!remote(ErrorKind::Unsupported).is_retryable());
        let io = |kind| Error::Io {
            location: "f".into(),
            source: std::io::Error::from(kind),
        };
        assert!(io(std::io::ErrorKind::TimedOut).is_retryable());
        assert_eq!(
            io(std::io::ErrorKind::PermissionDenied).kind(),
            ErrorKind::PermissionDenied
        );
        assert_eq!(io(std::io::ErrorKind::NotFound).kind(), ErrorKind::NotFound);
        assert_eq!(
            Error::Format {
                location: "m".into(),
                // An "invalid argument" found in stored data is still corrupt data.
                source: edgeshard_shared::Error::InvalidArgument("x".into()),
            }
            .kind(),
            ErrorKind::Corrupt
        );
        assert_eq!(Error::poisoned("shard").kind(), ErrorKind::Internal);
        assert_eq!(
            Error::InvalidRequest("k".into()).kind(),
            ErrorKind::InvalidInput
        );
    }
}
