//! The edgeshard builder and CLI.
//!
//! - [`input`]: JSONL / CSV / Parquet readers and record validation;
//! - [`build`]: routing, sorting, duplicate handling, parallel shard writing;
//! - [`shard_writer`]: one shard's SQLite (+ sqlite-vec) file;
//! - [`sidecar_writer`]: the page-cache sidecar (`shard.sidecar`) of a shard;
//! - [`publish`]: staged, atomic publication to a local root;
//! - [`remote_publish`]: publication to an `s3://` root (uploads, conditional `_CURRENT`);
//! - [`cli`]: the `edgeshard` command line.

pub mod build;
pub mod cleanup;
pub mod cli;
pub mod error;
pub mod input;
pub mod publish;
pub mod remote_publish;
pub mod shard_writer;
pub mod sidecar_writer;

pub use error::{Error, Result};
