use thiserror::Error;

/// Everything `shared` can reject. Every variant describes bad *data* (a manifest, a key, a file
/// body), so none of them is worth retrying: the caller must fix or replace the input.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    #[error("invalid _CURRENT pointer: {0}")]
    InvalidCurrent(String),
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("invalid vector: {0}")]
    InvalidVector(String),
    #[error("invalid NPY file: {0}")]
    InvalidNpy(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Bytes that do not match what the manifest records for them (size, content hash).
    #[error("integrity check failed: {0}")]
    Integrity(String),
}

impl Error {
    /// Data errors never heal by themselves; always `false`. Present so every edgeshard error type
    /// answers the same question.
    pub fn is_retryable(&self) -> bool {
        false
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

pub type Result<T, E = Error> = std::result::Result<T, E>;
