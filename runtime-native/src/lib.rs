//! Native reader of edgeshard snapshots (also shardyfusion's: same format).
//!
//! ```no_run
//! use edgeshard_native::Snapshot;
//! use edgeshard_shared::Key;
//! let snap = Snapshot::open("/data/snapshots/users")?;
//! let value = snap.get(&Key::Int(42))?;
//! let hits = snap.search(&[0.1, 0.2, 0.3, 0.4], 10, None)?;
//! # Ok::<(), edgeshard_native::Error>(())
//! ```

mod error;
#[cfg(feature = "lancedb")]
pub mod lance;
mod live;
pub mod range;
pub mod remote;
mod root;
mod snapshot;
pub mod sqlite_vec_ext;

pub use edgeshard_shared::vector::AnnParams;
pub use edgeshard_shared::ErrorKind;
pub use error::{Error, Result};
pub use live::{LiveSnapshot, Refresh};
pub use range::StatsSnapshot;
pub use root::{ManifestVersion, Root};
pub use snapshot::{
    current_manifest_path, AccessMode, OpenOptions, SearchHit, SearchOptions, SearchResponse,
    ShardCheck, Snapshot, SnapshotInfo, VectorId, FALLBACK_MANIFESTS,
};
