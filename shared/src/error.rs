//! The errors of `shared` ([`Error`](enum@Error)) and the error vocabulary every edgeshard
//! crate maps its own errors to ([`ErrorKind`]).

use thiserror::Error;

/// What kind of failure an error is, and so what the user should do about it: the one error
/// vocabulary of every edgeshard crate. Each crate's error type has a `kind()`; the CLI's hint,
/// the JS API's `kind` and `retryable` properties and any server's status derive from it, never
/// from an error's message.
///
/// | kind | what to do |
/// |---|---|
/// | `invalid_input` | fix the call: the argument, option or input record |
/// | `not_found` | the object is absent: check the root, key or path |
/// | `corrupt` | the stored data is bad: replace it (rebuild, re-upload) |
/// | `unavailable` | transient: retry later (the only retryable kind) |
/// | `changed` | the snapshot changed underneath: reopen it (or run again) |
/// | `unsupported` | this reader or host cannot do it: use another reader, host or option |
/// | `permission_denied` | the credentials were refused: fix them (retrying does not help) |
/// | `internal` | a bug (a panic, a poisoned lock): report it |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request itself is wrong (a key that does not fit the encoding, a vector of the wrong
    /// dimension, a bad option or input record). Fix the input; retrying unchanged never helps.
    InvalidInput,
    /// Something the request needs is absent (no `_CURRENT`, a missing shard file, an unknown
    /// root). It is not there: check the root, path or key.
    NotFound,
    /// Stored data is malformed or does not match what the manifest records for it (a damaged
    /// shard, a bad manifest or routing artifact). Replace the data: rebuild or re-upload.
    Corrupt,
    /// Storage or the network failed in a way that may pass (5xx, timeouts, dropped
    /// connections, a truncated body). Retry later: the only retryable kind.
    Unavailable,
    /// An object changed while it was being read, or a conditional write lost a race. Reopen the
    /// snapshot (or run again) to read one consistent version.
    Changed,
    /// The snapshot or the host uses something this reader does not implement (a host that
    /// ignores Range requests or compresses bodies, a backend built without its feature). Use
    /// another reader, host or option.
    Unsupported,
    /// The store refused the credentials (HTTP 401 / 403, a file without read permission).
    /// Fix the credentials or permissions; retrying unchanged does not help.
    PermissionDenied,
    /// A bug in edgeshard (a panic, a poisoned lock, an invariant broken). Report it.
    Internal,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::InvalidInput,
        ErrorKind::NotFound,
        ErrorKind::Corrupt,
        ErrorKind::Unavailable,
        ErrorKind::Changed,
        ErrorKind::Unsupported,
        ErrorKind::PermissionDenied,
        ErrorKind::Internal,
    ];

    /// The stable snake_case code of the kind (the JS `kind` property, the CLI's hint).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Changed => "changed",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Internal => "internal",
        }
    }

    /// Whether trying the same thing again later can help: only for [`ErrorKind::Unavailable`].
    pub fn is_retryable(self) -> bool {
        self == ErrorKind::Unavailable
    }

    /// The kind of a failed I/O operation (local files, the network below object_store).
    ///
    /// - `NotFound` -> not found; `PermissionDenied` and `ReadOnlyFilesystem` -> permission
    ///   denied.
    /// - Interruptions, timeouts and dropped connections -> unavailable (they pass), and so is
    ///   a full disk or quota (free space, then run again) and any other I/O failure (a failing
    ///   device or a network error with no better description: the environment failed, not
    ///   edgeshard, and such failures are often transient).
    /// - `InvalidData` / `UnexpectedEof` (a file shorter or other than expected) -> corrupt.
    /// - `InvalidInput` (a path the OS refuses) -> invalid input; `Unsupported` -> unsupported.
    pub fn from_io(kind: std::io::ErrorKind) -> ErrorKind {
        use std::io::ErrorKind as Io;
        match kind {
            Io::NotFound => ErrorKind::NotFound,
            Io::PermissionDenied | Io::ReadOnlyFilesystem => ErrorKind::PermissionDenied,
            Io::InvalidData | Io::UnexpectedEof => ErrorKind::Corrupt,
            Io::InvalidInput => ErrorKind::InvalidInput,
            Io::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Unavailable,
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything `shared` can reject. Every variant describes bad *data* (a manifest, a key, a file
/// body), so none of them is worth retrying: the caller must fix or replace the input.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// The manifest (its database, `build_meta`, `shards` or `custom`) breaks the format or
    /// contradicts itself.
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    /// `_CURRENT` is not a valid pointer: not JSON, another format version or content type, or a
    /// missing field.
    #[error("invalid _CURRENT pointer: {0}")]
    InvalidCurrent(String),
    /// A key the snapshot's [`KeyEncoding`](crate::KeyEncoding) cannot represent, or stored key
    /// bytes that do not decode under it.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A vector a snapshot or query cannot use: wrong dimension, a non-finite component, a norm
    /// outside the supported range, or a zero vector under cosine.
    #[error("invalid vector: {0}")]
    InvalidVector(String),
    /// A routing artifact (`centroids.npy`, `hyperplanes.npy`) that is not a finite 2-D float
    /// array of the vectors' dimension.
    #[error("invalid NPY file: {0}")]
    InvalidNpy(String),
    /// A caller's option or input that is malformed or out of range (an encoding or metric name,
    /// k, probes, a filter, shard ids) or a malformed sidecar.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Bytes that do not match what the manifest records for them (size, content hash).
    #[error("integrity check failed: {0}")]
    Integrity(String),
}

impl Error {
    /// The kind of the error when nothing else is known about where the data came from.
    ///
    /// `shared` is called both on stored snapshot data and on what a caller passed, and some
    /// variants serve both (`InvalidArgument` also rejects a malformed sidecar or routing
    /// artifact; `InvalidNpy` a stored centroid file or a user's input file). The variant says
    /// which is typical:
    /// - `InvalidManifest`, `InvalidCurrent`, `InvalidNpy`, `Integrity` -> [`ErrorKind::Corrupt`]:
    ///   they parse or check what a snapshot stores.
    /// - `InvalidKey`, `InvalidVector`, `InvalidArgument` -> [`ErrorKind::InvalidInput`]: they
    ///   check what a caller passed (a key, a query vector, k, probes, shard ids, a filter).
    ///
    /// Callers that know the origin decide instead: the native reader reports every shared error
    /// about a snapshot's files as corrupt and every one about a request as invalid input,
    /// whatever the variant; the builder reports every shared error as invalid input (it only
    /// validates what it was given).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidManifest(_)
            | Error::InvalidCurrent(_)
            | Error::InvalidNpy(_)
            | Error::Integrity(_) => ErrorKind::Corrupt,
            Error::InvalidKey(_) | Error::InvalidVector(_) | Error::InvalidArgument(_) => {
                ErrorKind::InvalidInput
            }
        }
    }

    /// Data errors never heal by themselves; always `false` (no kind of this error is
    /// [`ErrorKind::Unavailable`]). Present so every edgeshard error type answers the same
    /// question.
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// What went wrong, without the kind's prefix (for callers that name the kind their own way).
    pub fn detail(&self) -> &str {
        match self {
            Error::InvalidManifest(m)
            | Error::InvalidCurrent(m)
            | Error::InvalidKey(m)
            | Error::InvalidVector(m)
            | Error::InvalidNpy(m)
            | Error::InvalidArgument(m)
            | Error::Integrity(m) => m,
        }
    }
}

/// `Result` with this crate's [`Error`](enum@Error) as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_codes_are_stable_and_only_unavailable_is_retryable() {
        let codes: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            codes,
            [
                "invalid_input",
                "not_found",
                "corrupt",
                "unavailable",
                "changed",
                "unsupported",
                "permission_denied",
                "internal"
            ]
        );
        for kind in ErrorKind::ALL {
            assert_eq!(kind.to_string(), kind.as_str());
            assert_eq!(
                kind.is_retryable(),
                kind == ErrorKind::Unavailable,
                "{kind}"
            );
        }
    }

    #[test]
    fn io_kinds_map_to_what_the_user_can_do() {
        use std::io::ErrorKind as Io;
        assert_eq!(ErrorKind::from_io(Io::NotFound), ErrorKind::NotFound);
        assert_eq!(
            ErrorKind::from_io(Io::PermissionDenied),
            ErrorKind::PermissionDenied
        );
        for transient in [
            Io::Interrupted,
            Io::TimedOut,
            Io::WouldBlock,
            Io::ConnectionReset,
            Io::ConnectionAborted,
            Io::Other,
        ] {
            assert!(
                ErrorKind::from_io(transient).is_retryable(),
                "{transient:?}"
            );
        }
        assert_eq!(ErrorKind::from_io(Io::UnexpectedEof), ErrorKind::Corrupt);
    }

    #[test]
    fn stored_data_is_corrupt_and_arguments_are_invalid_input() {
        assert_eq!(
            Error::InvalidManifest("x".into()).kind(),
            ErrorKind::Corrupt
        );
        assert_eq!(Error::Integrity("x".into()).kind(), ErrorKind::Corrupt);
        assert_eq!(
            Error::InvalidKey("x".into()).kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            Error::InvalidArgument("x".into()).kind(),
            ErrorKind::InvalidInput
        );
        assert!(!Error::InvalidNpy("x".into()).is_retryable());
    }
}
