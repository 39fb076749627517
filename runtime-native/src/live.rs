//! A snapshot that follows `_CURRENT`: [`LiveSnapshot::refresh`] swaps in the newly published
//! version atomically. Readers take an `Arc<Snapshot>` per request, so reads in flight finish on
//! the version they started on; a refresh onto a corrupt manifest keeps serving the old one.

use crate::error::{Error, Result};
use crate::root::Root;
use crate::snapshot::{current_manifest_path, OpenOptions, Snapshot};
use std::sync::{Arc, RwLock};

pub struct LiveSnapshot {
    root: String,
    options: OpenOptions,
    current: RwLock<Arc<Snapshot>>,
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Refresh {
    /// `_CURRENT` still names the manifest being served.
    Unchanged,
    /// Now serving this manifest (root-relative path).
    Swapped { manifest: String },
}

impl LiveSnapshot {
    pub fn open(root: &str, options: OpenOptions) -> Result<Self> {
        let snapshot = Snapshot::open_with(root, options.clone())?;
        Ok(Self {
            root: root.to_string(),
            options,
            current: RwLock::new(Arc::new(snapshot)),
        })
    }

    /// The version to serve one request from.
    pub fn current(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Follows `_CURRENT` if it moved. On any error (unreadable pointer, corrupt manifest) the
    /// current version stays in service and the error is returned for reporting.
    pub fn refresh(&self) -> Result<Refresh> {
        let root = Root::parse_with(&self.root, &self.options.storage_options)?;
        let target = current_manifest_path(&root)?;
        if target == self.current().manifest_path() {
            return Ok(Refresh::Unchanged);
        }
        let next = Snapshot::open_manifest_with(root, &target, self.options.clone())?;
        let mut guard = self
            .current
            .write()
            .map_err(|_| Error::poisoned("live snapshot"))?;
        *guard = Arc::new(next);
        Ok(Refresh::Swapped { manifest: target })
    }
}
