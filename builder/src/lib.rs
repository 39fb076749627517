//! The edgeshard builder and CLI.
//!
//! - [`input`]: JSONL / CSV / Parquet readers and record validation;
//! - [`build`]: routing, sorting, duplicate handling, parallel shard writing;
//! - [`shard_writer`]: one shard's SQLite (+ sqlite-vec) file;
//! - [`sidecar_writer`]: the page-cache sidecar (`shard.sidecar`) of a shard, and binding it to
//!   a static host's ETags;
//! - [`vector_index`]: which vector index a LanceDB shard gets; `lance_writer` (feature
//!   `lancedb`) writes LanceDB shards;
//! - [`publish`]: staged, atomic publication to a local root;
//! - [`remote_publish`]: publication to an `s3://` root (uploads, conditional `_CURRENT`);
//! - [`versions`]: rollback to an older published version;
//! - [`output`]: the JSON objects of the read commands, one source for the CLI and the server;
//! - [`serve`]: `edgeshard serve`, the HTTP JSON API over a snapshot root;
//! - [`cli`]: the `edgeshard` command line (arguments and output; the work is in the modules
//!   above).

pub mod build;
pub mod cleanup;
pub mod cli;
pub mod error;
pub mod input;
#[cfg(feature = "lancedb")]
pub mod lance_writer;
pub mod output;
pub mod publish;
pub mod remote_publish;
pub mod serve;
pub mod shard_writer;
pub mod sidecar_writer;
pub mod vector_index;
pub mod versions;

pub use error::{Error, Result};
