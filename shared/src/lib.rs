//! Pure logic shared by every edgeshard component: the builder, the native runtime and the wasm
//! runtime. Nothing in this crate performs I/O; callers hand it bytes and get bytes or values back.
//!
//! The format implemented here is shardyfusion's snapshot format v4
//! (see `README.md`, section "Snapshot format").

#![warn(missing_docs)]

pub mod btree;
pub mod codes;
pub mod current;
pub mod error;
pub mod filter;
pub mod integrity;
pub mod ivf;
pub mod json;
pub mod kernels;
pub mod key;
pub mod key_index;
pub mod layout;
pub mod manifest;
pub mod merge;
pub mod npy;
pub mod pages;
pub mod query;
pub mod routing;
pub mod search_plan;
pub mod shard_schema;
pub mod sidecar;
pub mod sqlite_vfs;
pub mod vector;
pub mod vector_routing;

pub use error::{Error, ErrorKind, Result};
pub use key::{Key, KeyEncoding};
pub use manifest::Manifest;
pub use vector::Metric;
