//! Publishing to a local snapshot root, in the order that keeps readers safe:
//! shards first, then the manifest, then `_CURRENT` (each step an atomic rename).
//!
//! A build stages everything under `<root>/.edgeshard-staging/<run_id>/`. Until `_CURRENT` is
//! renamed into place, readers see the previous snapshot; a build killed at any point leaves at
//! most unreferenced files behind, never a changed `_CURRENT`.

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
}

impl LocalPublisher {
    pub fn new(root: &Path, run_id: &str) -> Result<Self> {
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
            root: root.to_path_buf(),
            staging,
            run_id: run_id.to_string(),
            published_shards: None,
            published_vector_meta: None,
        })
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
    pub fn publish_manifest(&self, timestamp: &str, bytes: &[u8]) -> Result<String> {
        let relative = layout::manifest_path(timestamp, &self.run_id);
        let target = self.root.join(&relative);
        let parent = self
            .root
            .join(layout::manifest_dir(timestamp, &self.run_id));
        fs::create_dir_all(&parent).map_err(Error::io(parent.display()))?;
        write_atomically(&self.staging.join("manifest"), &target, bytes)?;
        Ok(relative)
    }

    /// The commit point: replaces `_CURRENT`.
    pub fn publish_current(&self, pointer: &CurrentPointer) -> Result<()> {
        write_current(&self.root, &self.staging.join(layout::CURRENT), pointer)
    }

    /// Removes the staging folder after success.
    pub fn finish(mut self) -> Result<()> {
        self.published_shards = None;
        self.published_vector_meta = None;
        let staging = self.staging.clone();
        fs::remove_dir_all(&staging).map_err(Error::io(staging.display()))?;
        remove_if_empty(&self.root.join(STAGING_DIR));
        Ok(())
    }
}

impl Drop for LocalPublisher {
    /// On failure, remove what this build wrote; `_CURRENT` was never touched before the end.
    fn drop(&mut self) {
        if let Some(shards) = self.published_shards.take() {
            let _ = fs::remove_dir_all(shards);
        }
        if let Some(dir) = self.published_vector_meta.take() {
            let _ = fs::remove_dir_all(dir);
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
