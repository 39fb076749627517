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

pub const STAGING_DIR: &str = ".edgeshard-staging";

pub struct LocalPublisher {
    root: PathBuf,
    staging: PathBuf,
    run_id: String,
    /// Set once shards have been moved out of staging, so a later failure removes them.
    published_shards: Option<PathBuf>,
    /// Set once a routing artifact is written under `vector_meta/run_id=<RUN>/` (removed on
    /// failure, like the shards).
    published_vector_meta: Option<PathBuf>,
    /// Set once the manifest folder `manifests/<TS>_run_id=<RUN>/` is created (removed on
    /// failure, before the shards).
    published_manifest: Option<PathBuf>,
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
        let staging = root.join(STAGING_DIR).join(run_id);
        if staging.exists() {
            return Err(Error::Usage(format!(
                "run id {run_id:?} is already being built (staging folder {} exists)",
                staging.display()
            )));
        }
        if root
            .join(layout::SHARDS_DIR)
            .join(format!("run_id={run_id}"))
            .exists()
        {
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
            published_shards: None,
            published_vector_meta: None,
            published_manifest: None,
            committed: false,
        })
    }

    /// The canonical root this publisher writes under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a shard's `shard.db` is written while staged (its folder is created).
    pub fn staged_shard_path(&self, db_id: u32) -> Result<PathBuf> {
        let dir = self.staging.join(layout::shard_dir(&self.run_id, db_id, 0));
        fs::create_dir_all(&dir).map_err(Error::io(dir.display()))?;
        Ok(dir.join(layout::SHARD_DB_FILE))
    }

    /// Moves every staged shard into place with one directory rename.
    pub fn publish_shards(&mut self) -> Result<()> {
        let relative = format!("{}/run_id={}", layout::SHARDS_DIR, self.run_id);
        let staged = self.staging.join(&relative);
        let target = self.root.join(&relative);
        let shards_dir = self.root.join(layout::SHARDS_DIR);
        fs::create_dir_all(&shards_dir).map_err(Error::io(shards_dir.display()))?;
        if staged.exists() {
            sync_tree(&staged)?;
            fs::rename(&staged, &target).map_err(Error::io(target.display()))?;
            sync_dir(&shards_dir)?;
            self.published_shards = Some(target);
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
        Ok(relative)
    }

    /// The commit point: replaces `_CURRENT`.
    pub fn publish_current(&mut self, pointer: &CurrentPointer) -> Result<()> {
        let written = write_current(&self.root, &self.staging.join(layout::CURRENT), pointer);
        // The rename may have happened even if a step after it (the directory fsync) failed:
        // what counts is what `_CURRENT` says now.
        self.committed = written.is_ok() || self.current_names_this_run();
        written
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
        if self.staging.exists() {
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
