use edgeshard_shared::ErrorKind;
use thiserror::Error;

/// Errors of the builder and CLI. [`Error::kind`] says what kind of failure it is;
/// [`Error::is_retryable`] whether running again unchanged can help (input errors never do).
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
    /// A bug in the builder: a panicked task, a lock poisoned by a panic.
    #[error("internal error (a bug in edgeshard, please report it): {0}")]
    Internal(String),
    #[error(transparent)]
    Format(#[from] edgeshard_shared::Error),
    #[error(transparent)]
    Read(#[from] edgeshard_native::Error),
}

impl Error {
    /// What kind of failure this is (see [`ErrorKind`] for what to do about each).
    ///
    /// - Bad records, input, duplicate keys and flags are invalid input, and so is every error
    ///   of `shared` ([`Error::Format`]): the builder only validates what it was given with it
    ///   (records, vectors, options), never a stored snapshot, whatever the shared variant.
    /// - A lost conditional publish is [`ErrorKind::Changed`]: run again on the new version.
    /// - I/O follows the OS error ([`ErrorKind::from_io`]); reader and publish errors keep the
    ///   kind of their cause.
    /// - SQLite: a full disk, an I/O failure or a busy/locked file is unavailable (free space or
    ///   wait, then run again), refused permissions are permission denied; anything else is
    ///   internal (the builder writes its own SQL to its own new files, so a failure there is
    ///   a bug). LanceDB failures carry no structure here and are internal.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidRecord { .. }
            | Error::InvalidInput { .. }
            | Error::DuplicateKey { .. }
            | Error::Usage(_)
            | Error::Format(_) => ErrorKind::InvalidInput,
            Error::Io { source, .. } => ErrorKind::from_io(source.kind()),
            Error::Sqlite { source, .. } => sqlite_kind(source),
            Error::LanceDb { .. } | Error::Internal(_) => ErrorKind::Internal,
            Error::Conflict(_) => ErrorKind::Changed,
            Error::Publish { source, .. } => source.kind(),
            Error::Read(e) => e.kind(),
        }
    }

    /// Whether running again unchanged can help (only [`ErrorKind::Unavailable`]).
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// What the CLI prints on stderr for this error: `error: <message>`, then a line saying what
    /// kind of failure it is and what to do about it.
    pub fn report(&self) -> String {
        format!("error: {self}\n({})", hint(self.kind()))
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

/// The CLI's second stderr line for an error of `kind`: the kind's code and what to do.
pub fn hint(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput => "invalid input: fix the arguments or the input, then run again",
        ErrorKind::NotFound => "not found: check the root, path or key",
        ErrorKind::Corrupt => {
            "corrupt: the stored data is damaged or not what its manifest records; rebuild or \
             re-upload it"
        }
        ErrorKind::Unavailable => "transient (unavailable): retrying can help",
        ErrorKind::Changed => {
            "the snapshot changed while it was read or written: run again to use the new version"
        }
        ErrorKind::Unsupported => "unsupported: use another reader, host or option",
        ErrorKind::PermissionDenied => {
            "permission denied: check the credentials and permissions (AWS_* variables, \
             --storage-option, file modes); retrying as is will not help"
        }
        ErrorKind::Internal => "internal error: a bug in edgeshard; please report it",
    }
}

/// See [`Error::kind`].
fn sqlite_kind(e: &rusqlite::Error) -> ErrorKind {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::OutOfMemory
            | ErrorCode::CannotOpen,
        ) => ErrorKind::Unavailable,
        Some(ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => ErrorKind::PermissionDenied,
        _ => ErrorKind::Internal,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Writes one line on stderr, ignoring failure: a message about the outcome must never change
/// it (`eprintln!` panics when stderr is full or closed, turning any exit into 101).
pub fn warn(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_hints() {
        let usage = Error::Usage("--out is empty".into());
        assert_eq!(usage.kind(), ErrorKind::InvalidInput);
        assert!(!usage.is_retryable());
        assert_eq!(Error::Conflict("lost".into()).kind(), ErrorKind::Changed);
        let forbidden = Error::Publish {
            context: "nothing was published".into(),
            source: Box::new(Error::Read(edgeshard_native::Error::Remote {
                location: "s3://b/_CURRENT".into(),
                detail: "HTTP 403".into(),
                kind: ErrorKind::PermissionDenied,
            })),
        };
        assert_eq!(forbidden.kind(), ErrorKind::PermissionDenied);
        let report = forbidden.report();
        assert!(
            report.starts_with("error: nothing was published: "),
            "{report}"
        );
        assert!(report.contains("permission denied"), "{report}");
        assert!(!report.contains("retrying can help"), "{report}");
        let full = Error::Sqlite {
            location: "shard.db".into(),
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            ),
        };
        assert!(full.is_retryable());
        assert!(full.report().contains("retrying can help"));
        // Every kind has its own hint, naming it.
        let hints: std::collections::HashSet<&str> =
            ErrorKind::ALL.iter().map(|k| hint(*k)).collect();
        assert_eq!(hints.len(), ErrorKind::ALL.len());
    }
}
