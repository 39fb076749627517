use thiserror::Error;

/// Errors of the builder and CLI. [`Error::is_retryable`] says whether running again unchanged
/// can help; input errors never do.
#[derive(Debug, Error)]
pub enum Error {
    /// A record is unusable; nothing was published.
    #[error("record {record}, field {field:?}: {reason}")]
    InvalidRecord {
        record: u64,
        field: String,
        reason: String,
    },
    /// The input as a whole is unusable (unreadable file, unknown column, no records).
    #[error("input {location}: {reason}")]
    InvalidInput { location: String, reason: String },
    /// Two records share a key and `--on-duplicate error` is in force.
    #[error("duplicate key {key}: records {first} and {second} (use --on-duplicate last-wins to keep the later one)")]
    DuplicateKey {
        key: String,
        first: u64,
        second: u64,
    },
    /// A flag or argument is wrong.
    #[error("{0}")]
    Usage(String),
    /// Reading or writing the filesystem failed.
    #[error("I/O error on {location}: {source}")]
    Io {
        location: String,
        #[source]
        source: std::io::Error,
    },
    /// SQLite failed while writing a shard or manifest.
    #[error("SQLite error writing {location}: {source}")]
    Sqlite {
        location: String,
        #[source]
        source: rusqlite::Error,
    },
    /// LanceDB failed to write a shard's table or build its index (the `lancedb` feature);
    /// nothing was published.
    #[error("LanceDB error writing {location}: {detail}")]
    LanceDb { location: String, detail: String },
    /// A conditional publish lost a race: another publisher replaced `_CURRENT` first.
    #[error("{0}")]
    Conflict(String),
    /// Publishing to a remote root failed; `context` says what state the root was left in.
    #[error("{context}: {source}")]
    Publish {
        context: String,
        #[source]
        source: Box<Error>,
    },
    #[error(transparent)]
    Format(#[from] edgeshard_shared::Error),
    #[error(transparent)]
    Read(#[from] edgeshard_native::Error),
}

impl Error {
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut
            ),
            Error::Read(e) => e.is_retryable(),
            Error::Publish { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    pub(crate) fn io(location: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Self {
        let location = location.to_string();
        move |source| Error::Io { location, source }
    }

    pub(crate) fn sqlite(location: impl std::fmt::Display) -> impl FnOnce(rusqlite::Error) -> Self {
        let location = location.to_string();
        move |source| Error::Sqlite { location, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
