//! The version a server answers from, and how it moves: the first open, refreshes (polled and
//! asked for), pins.
//!
//! Why not `edgeshard_native::LiveSnapshot`: a server must start and answer `/readyz` before any
//! version opens (the store may be down), must check a new version's shard files before it
//! serves it (a published manifest whose shards are missing or cut would otherwise fail every
//! request after the swap), and may be pinned to one version. The swap itself is the same: one
//! `Arc<Snapshot>` behind a lock, cloned per request, so requests in flight finish on the
//! version they started on and the old version closes when its last request ends.

use crate::error::{Error, Result};
use crate::versions::{find_manifest, RollbackTarget};
use edgeshard_native::{current_manifest_path, OpenOptions, Root, Snapshot};
use serde::Serialize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the versions come from: the root, how to open it, and an optional pin.
pub(crate) struct Source {
    pub(crate) root: String,
    pub(crate) options: OpenOptions,
    /// `--run-id` / `--ref`: serve this version only, never follow `_CURRENT`.
    pub(crate) pin: Option<RollbackTarget>,
}

/// The outcome of the latest open or refresh, for `/readyz` and `/metrics`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct RefreshStatus {
    /// Whether the latest attempt succeeded (a swap or nothing to do).
    pub(crate) ok: bool,
    /// Unix seconds of the latest attempt (0: none yet).
    pub(crate) at: u64,
    /// Why the latest attempt failed: the old version (if any) is still served.
    pub(crate) error: Option<String>,
    /// The failed attempt's error kind (`shared::ErrorKind` code).
    pub(crate) kind: Option<&'static str>,
    /// Attempts so far, failed attempts so far, swaps so far.
    pub(crate) attempts: u64,
    pub(crate) failures: u64,
    pub(crate) swaps: u64,
}

/// What one refresh did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum Refreshed {
    /// The version to serve is the one served.
    Unchanged { run_id: String, manifest: String },
    /// Now serving `manifest` (`previous`: what was served before, if anything).
    Swapped {
        run_id: String,
        manifest: String,
        previous: Option<String>,
    },
}

pub(crate) struct Versions {
    source: Source,
    current: RwLock<Option<Arc<Snapshot>>>,
    status: Mutex<RefreshStatus>,
    /// One refresh at a time (the poller and `POST /v1/admin/refresh` may meet): two would
    /// open and verify the same version twice.
    refreshing: Mutex<()>,
}

impl Versions {
    pub(crate) fn new(source: Source) -> Self {
        Self {
            source,
            current: RwLock::new(None),
            status: Mutex::new(RefreshStatus::default()),
            refreshing: Mutex::new(()),
        }
    }

    /// The version to answer one request from; `None` until a version opened.
    pub(crate) fn current(&self) -> Option<Arc<Snapshot>> {
        // A poisoned lock only means a writer panicked after or before the one-line store;
        // the value is a whole Arc either way.
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn status(&self) -> RefreshStatus {
        match self.status.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn is_pinned(&self) -> bool {
        self.source.pin.is_some()
    }

    /// Opens the version to serve if it is not the one served, checks its shard files, and
    /// swaps it in. Blocking (storage I/O): call it off the async runtime. On any error the
    /// version served stays in service and the error is recorded for `/readyz`.
    pub(crate) fn refresh(&self) -> Result<Refreshed> {
        let _one = self
            .refreshing
            .lock()
            .map_err(|_| Error::Internal("the refresh lock was poisoned by a panic".into()))?;
        let outcome = self.refresh_locked();
        let mut status = match self.status.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        status.attempts += 1;
        status.at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        match &outcome {
            Ok(done) => {
                status.ok = true;
                status.error = None;
                status.kind = None;
                if matches!(done, Refreshed::Swapped { .. }) {
                    status.swaps += 1;
                }
            }
            Err(e) => {
                status.ok = false;
                status.failures += 1;
                status.error = Some(e.to_string());
                status.kind = Some(e.kind().as_str());
            }
        }
        outcome
    }

    fn refresh_locked(&self) -> Result<Refreshed> {
        let source = &self.source;
        let root = Root::parse_with(&source.root, &source.options.storage_options)?;
        let served = self.current();
        let previous = served.as_ref().map(|s| s.manifest_path().to_string());
        let next = match (&source.pin, &served) {
            // A pinned version never moves once open.
            (Some(_), Some(snap)) => return Ok(unchanged(snap)),
            (Some(pin), None) => {
                let history = root.list_manifests()?;
                let chosen = find_manifest(&history, 0, pin)?;
                Snapshot::open_manifest_with(root, &chosen.manifest_path, source.options.clone())?
            }
            (None, Some(snap)) => {
                let target = current_manifest_path(&root)?;
                if target == snap.manifest_path() {
                    return Ok(unchanged(snap));
                }
                // Exactly the published version: no fallback to an older one here, since
                // one is already served and a broken publish must show as an error.
                Snapshot::open_manifest_with(root, &target, source.options.clone())?
            }
            // The first open falls back to an older manifest when the current one is corrupt,
            // as every reader does on a cold start (`Snapshot::open_with`).
            (None, None) => Snapshot::open_with(&source.root, source.options.clone())?,
        };
        // Every shard file present and of its recorded size (locally also its content hash)
        // before a request sees the version.
        next.verify_shards()?;
        let next = Arc::new(next);
        let done = Refreshed::Swapped {
            run_id: next.manifest().meta.run_id.clone(),
            manifest: next.manifest_path().to_string(),
            previous,
        };
        let mut guard = self
            .current
            .write()
            .map_err(|_| Error::Internal("the served version's lock was poisoned".into()))?;
        *guard = Some(next);
        Ok(done)
    }
}

fn unchanged(snap: &Snapshot) -> Refreshed {
    Refreshed::Unchanged {
        run_id: snap.manifest().meta.run_id.clone(),
        manifest: snap.manifest_path().to_string(),
    }
}
