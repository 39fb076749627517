//! Moving `_CURRENT` between published versions: `rollback` points it at an older manifest, after
//! checking that readers can open that version (on S3, only if nobody published in between).

use crate::error::{Error, Result};
use edgeshard_native::{current_manifest_path, ManifestVersion, Root, Snapshot};
use edgeshard_shared::current::CurrentPointer;
use edgeshard_shared::layout;

/// Which older version to roll back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackTarget {
    /// This many versions before the current one (1: the previous one).
    Offset(usize),
    /// The manifest of this run id.
    RunId(String),
    /// This manifest: a full URL or a root-relative `manifests/...` path.
    ManifestRef(String),
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    /// The run now current.
    pub run_id: String,
    /// Its manifest, relative to the root.
    pub manifest: String,
    /// The manifest that was current before, relative to the root.
    pub previous: String,
}

/// Points `_CURRENT` of the root at `root_url` at an older manifest. Refuses a version whose
/// manifest does not parse or whose shard files are not all there, of their recorded size (and
/// content hash, locally): readers are never pointed at something they cannot open. On an
/// object store the swap is conditional on `_CURRENT` being what it was when the rollback
/// started.
pub fn rollback(
    root_url: &str,
    storage_options: &[(String, String)],
    target: &RollbackTarget,
) -> Result<RolledBack> {
    let root = Root::parse_with(root_url, storage_options)?;
    // On an object store, remember _CURRENT's version before deciding: the rollback replaces
    // it only if nobody published in between.
    let remote = match &root {
        Root::Local(_) => None,
        Root::Remote(_) => {
            let remote =
                edgeshard_native::remote::RemoteRoot::parse_for_publish(root_url, storage_options)?;
            let seen = crate::remote_publish::read_current_version(&remote)?;
            Some((remote, seen))
        }
    };
    let history = root.list_manifests()?;
    let current = current_manifest_path(&root)?;
    let current_index = history
        .iter()
        .position(|m| m.manifest_path == current)
        .ok_or_else(|| {
            Error::Usage(format!(
                "the current manifest {current} is not listed under manifests/"
            ))
        })?;
    let chosen = find_manifest(&history, current_index, target)?;
    Snapshot::open_manifest(root.clone(), &chosen.manifest_path)?
        .verify_shards()
        .map_err(|e| {
            Error::Usage(format!(
                "refusing to roll back to {}: {e}",
                chosen.manifest_path
            ))
        })?;
    let pointer = CurrentPointer {
        manifest_ref: layout::join(&root.url(), &chosen.manifest_path),
        run_id: chosen.run_id.clone(),
        updated_at: layout::format_timestamp(crate::build::unix_micros()),
    };
    match (&root, remote) {
        (Root::Local(root_dir), _) => {
            let temp = root_dir.join(format!(".{}.rollback.tmp", layout::CURRENT));
            crate::publish::write_current(root_dir, &temp, &pointer)?;
        }
        (_, Some((remote, seen))) => {
            crate::remote_publish::publish_current_if(&remote, &pointer, seen.as_deref())?;
        }
        (Root::Remote(_), None) => {
            return Err(Error::Internal("remote root without a publisher".into()));
        }
    }
    Ok(RolledBack {
        run_id: chosen.run_id.clone(),
        manifest: chosen.manifest_path.clone(),
        previous: current,
    })
}

/// The listed manifest `target` names. `history` is newest first (as [`Root::list_manifests`]
/// gives it) and `current_index` is the position of the manifest `_CURRENT` names, which only
/// [`RollbackTarget::Offset`] counts from. Shared by `rollback` and by `serve --run-id / --ref`,
/// so a version is named the same way everywhere.
pub fn find_manifest<'a>(
    history: &'a [ManifestVersion],
    current_index: usize,
    target: &RollbackTarget,
) -> Result<&'a ManifestVersion> {
    match target {
        RollbackTarget::ManifestRef(wanted) => {
            // A full URL or a root-relative path: compare from `manifests/` on, normalised as
            // the listed paths are.
            let relative = layout::manifest_ref_relative(wanted)?;
            history
                .iter()
                .find(|m| m.manifest_path == relative)
                .ok_or_else(|| Error::Usage(format!("no manifest {wanted:?} under this root")))
        }
        RollbackTarget::Offset(n) => history.get(current_index + n).ok_or_else(|| {
            Error::Usage(format!(
                "no manifest {n} versions before the current one ({} older exist)",
                history.len().saturating_sub(current_index + 1)
            ))
        }),
        RollbackTarget::RunId(id) => history
            .iter()
            .find(|m| &m.run_id == id)
            .ok_or_else(|| Error::Usage(format!("no manifest with run id {id:?}"))),
    }
}
