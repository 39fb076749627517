//! Publishing to a local snapshot root, in the order that keeps readers safe:
//! shards first, then the manifest, then `_CURRENT` (each step an atomic rename).
//!
//! A build stages everything under `<root>/.edgeshard-staging/<run_id>/`. Until `_CURRENT` is
//! renamed into place, readers see the previous snapshot; a build killed at any point leaves at
//! most unreferenced files behind, never a changed `_CURRENT`.
//!
//! A build that fails removes only what it wrote itself (its manifest first, so `history` never
//! lists a version without shards, then its routing artifact and shards), and nothing at all once
//! `_CURRENT` points at its manifest: from then on those files are what readers serve.

use crate::error::{Error, Result};
use edgeshard_shared::current::CurrentPointer;
use edgeshard_shared::layout;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const STAGING_DIR: &str = ".edgeshard-staging";

pub struct LocalPublisher {
    root: PathBuf,
    staging: PathBuf,
    run_id: String,
    /// Root-relative folders of the shards handed out by [`Self::staged_shard_path`] (a
    /// folder, not `shard.db`: a vector-only LanceDB shard holds only its table): each must be
    /// in place before the manifest that names it is written.
    /// (Behind a lock: shards are written in parallel.)
    staged_shards: Mutex<Vec<String>>,
    /// Set once shards have been moved out of staging, so a later failure removes them.
    published_shards: Option<PathBuf>,
    /// Set once a routing artifact is written under `vector_meta/run_id=<RUN>/` (removed on
    /// failure, like the shards).
    published_vector_meta: Option<PathBuf>,
    /// Set once the manifest folder `manifests/<TS>_run_id=<RUN>/` is created (removed on
    /// failure, before the shards).
    published_manifest: Option<PathBuf>,
    /// The manifest's root-relative path, once written.
    manifest_relative: Option<String>,
    /// Set once `_CURRENT` names this run: nothing this build wrote may be removed any more.
    committed: bool,
}

impl LocalPublisher {
    /// `root` must exist; it is resolved to its canonical path, so every path below is inside
    /// it whatever the caller's working directory or spelling (`''`, `.`, symlinks).
    pub fn new(root: &Path, run_id: &str) -> Result<Self> {
        // The run id becomes a path segment: never let it name the root or a parent.
        layout::validate_run_id(run_id)?;
        let root = fs::canonicalize(root).map_err(Error::io(root.display()))?;
        let staging_parent = root.join(STAGING_DIR);
        if fs::symlink_metadata(&staging_parent).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::Usage(format!(
                "{} is a symlink: edgeshard stages builds only in a folder of the root itself \
                 (remove the link)",
                staging_parent.display()
            )));
        }
        let staging = staging_parent.join(run_id);
        if exists(&staging)? {
            return Err(Error::Usage(format!(
                "run id {run_id:?} is already being built (staging folder {} exists)",
                staging.display()
            )));
        }
        if exists(
            &root
                .join(layout::SHARDS_DIR)
                .join(format!("run_id={run_id}")),
        )? {
            return Err(Error::Usage(format!(
                "run id {run_id:?} already exists under {}",
                root.display()
            )));
        }
        fs::create_dir_all(&staging).map_err(Error::io(staging.display()))?;
        Ok(Self {
            root,
            staging,
            run_id: run_id.to_string(),
            staged_shards: Mutex::default(),
            published_shards: None,
            published_vector_meta: None,
            published_manifest: None,
            manifest_relative: None,
            committed: false,
        })
    }

    /// The canonical root this publisher writes under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a shard's `shard.db` is written while staged (its folder is created).
    pub fn staged_shard_path(&self, db_id: u32) -> Result<PathBuf> {
        let relative = layout::shard_dir(&self.run_id, db_id, 0);
        let dir = self.staging.join(&relative);
        fs::create_dir_all(&dir).map_err(Error::io(dir.display()))?;
        self.staged_shards
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(relative.clone());
        Ok(dir.join(layout::SHARD_DB_FILE))
    }

    /// Moves every staged shard into place with one directory rename.
    pub fn publish_shards(&mut self) -> Result<()> {
        let relative = format!("{}/run_id={}", layout::SHARDS_DIR, self.run_id);
        let staged = self.staging.join(&relative);
        let target = self.root.join(&relative);
        let shards_dir = self.root.join(layout::SHARDS_DIR);
        fs::create_dir_all(&shards_dir).map_err(Error::io(shards_dir.display()))?;
        // A failed check is an error, never "no shards": skipping the move while the manifest
        // goes ahead published a snapshot without its shards.
        let staged_shards = self.staged_shards();
        if !staged_shards.is_empty() {
            sync_tree(&staged)?;
            fs::rename(&staged, &target).map_err(Error::io(target.display()))?;
            self.published_shards = Some(target);
            sync_dir(&shards_dir)?;
        }
        self.check_in_place(&staged_shards)
    }

    fn staged_shards(&self) -> Vec<String> {
        self.staged_shards
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Every root-relative path in `relative` is in place (an error names the first that is
    /// not, or that cannot be checked).
    fn check_in_place<'a>(&self, relative: impl IntoIterator<Item = &'a String>) -> Result<()> {
        for path in relative {
            let full = self.root.join(path);
            if !exists(&full)? {
                return Err(Error::Conflict(format!(
                    "{} vanished while run {} was being published (another process removed \
                     it: a cleanup, or a build of the same run id?); _CURRENT is unchanged",
                    full.display(),
                    self.run_id
                )));
            }
        }
        Ok(())
    }

    /// Writes a vector routing artifact at `vector_meta/run_id=<RUN>/<file>` (after the shards,
    /// before the manifest that references it); returns its root-relative path.
    pub fn publish_vector_meta(&mut self, file: &str, bytes: &[u8]) -> Result<String> {
        let relative = layout::vector_meta_path(&self.run_id, file);
        let target = self.root.join(&relative);
        let dir = target
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        fs::create_dir_all(&dir).map_err(Error::io(dir.display()))?;
        self.published_vector_meta = Some(dir);
        write_atomically(&self.staging.join(file), &target, bytes)?;
        Ok(relative)
    }

    /// Writes the manifest at `manifests/<TS>_run_id=<RUN>/manifest` (returned, root-relative).
    pub fn publish_manifest(&mut self, timestamp: &str, bytes: &[u8]) -> Result<String> {
        let relative = layout::manifest_path(timestamp, &self.run_id);
        let target = self.root.join(&relative);
        let parent = self
            .root
            .join(layout::manifest_dir(timestamp, &self.run_id));
        fs::create_dir_all(&parent).map_err(Error::io(parent.display()))?;
        self.published_manifest = Some(parent);
        write_atomically(&self.staging.join("manifest"), &target, bytes)?;
        self.manifest_relative = Some(relative.clone());
        Ok(relative)
    }

    /// The commit point: replaces `_CURRENT`, once the manifest and every shard are checked to
    /// be in place (a `_CURRENT` naming a removed manifest would break every reader).
    pub fn publish_current(&mut self, pointer: &CurrentPointer) -> Result<()> {
        let mut published = self.staged_shards();
        published.extend(self.manifest_relative.clone());
        self.check_in_place(&published)?;
        let written = write_current(&self.root, &self.staging.join(layout::CURRENT), pointer);
        // The rename may have happened even if a step after it (the directory fsync) failed:
        // what counts is what `_CURRENT` says now. Once it names this run, the build has
        // published: reporting a failure would make a caller retry or roll back a build that
        // readers already serve.
        self.committed = written.is_ok() || self.current_names_this_run();
        match written {
            Err(e) if self.committed => {
                crate::error::warn(&format!(
                    "warning: _CURRENT names run {}, but a step after the switch failed ({e}): \
                     the switch may not survive a power loss",
                    self.run_id
                ));
                Ok(())
            }
            other => other,
        }
    }

    /// After the commit: removes the staging folder. Best effort, since the snapshot is
    /// published whatever happens here; a leftover staging folder is removed by `cleanup`.
    pub fn finish(self) {
        // Drop does the work; with `committed` set it leaves every published file alone.
    }

    /// Whether `<root>/_CURRENT` currently points at this run (unreadable counts as no).
    fn current_names_this_run(&self) -> bool {
        fs::read(self.root.join(layout::CURRENT))
            .ok()
            .and_then(|bytes| CurrentPointer::parse(&bytes).ok())
            .is_some_and(|pointer| pointer.run_id == self.run_id)
    }
}

impl Drop for LocalPublisher {
    /// On failure, remove what this build wrote, manifest first (so no listed version ever lacks
    /// its shards). Never once `_CURRENT` names this run: readers are using those files.
    fn drop(&mut self) {
        let committed = self.committed || self.current_names_this_run();
        if !committed {
            for dir in [
                self.published_manifest.take(),
                self.published_vector_meta.take(),
                self.published_shards.take(),
            ]
            .into_iter()
            .flatten()
            {
                // Only this run's own folders, which are inside the canonical root by
                // construction; checked again because removing is irreversible.
                if dir.starts_with(&self.root) && dir != self.root {
                    let _ = fs::remove_dir_all(dir);
                }
            }
        }
        if exists(&self.staging).unwrap_or(true) {
            let _ = fs::remove_dir_all(&self.staging);
            remove_if_empty(&self.root.join(STAGING_DIR));
        }
    }
}

/// Atomically replaces `<root>/_CURRENT` (temp file + fsync + rename). Used by builds and
/// rollbacks.
pub fn write_current(root: &Path, temp: &Path, pointer: &CurrentPointer) -> Result<()> {
    write_atomically(temp, &root.join(layout::CURRENT), &pointer.to_json_bytes())
}

fn write_atomically(temp: &Path, target: &Path, bytes: &[u8]) -> Result<()> {
    {
        let mut file = fs::File::create(temp).map_err(Error::io(temp.display()))?;
        file.write_all(bytes).map_err(Error::io(temp.display()))?;
        file.sync_all().map_err(Error::io(temp.display()))?;
    }
    fs::rename(temp, target).map_err(Error::io(target.display()))?;
    if let Some(parent) = target.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(Error::io(dir.display()))? {
        let path = entry.map_err(Error::io(dir.display()))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(Error::io(path.display()))?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(Error::io(dir.display()))
}

fn remove_if_empty(dir: &Path) {
    let _ = fs::remove_dir(dir);
}

/// Whether `path` exists (a link counts, whatever it points at); an error other than "not
/// found" is an error, never "absent".
pub(crate) fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path.display())(e)),
    }
}
