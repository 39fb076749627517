//! Publishing to an `s3://` snapshot root through object_store, in the order that keeps
//! readers safe: every shard (then its sidecar), then the manifest, then `_CURRENT` last.
//!
//! Shards are written into a local staging folder outside the root (a temporary directory,
//! removed when the publisher is dropped). Each `shard.db` is uploaded first; the ETag the
//! upload returns is the tag its `shard.sidecar` is bound to (format spec section 8), so range
//! readers use the sidecar. `_CURRENT` is replaced with a conditional PUT against the ETag it
//! had when the build read it (`If-Match`; `If-None-Match: *` when there was none): of two
//! concurrent publishers, the later one fails loudly instead of silently overwriting the other.
//!
//! A failure (or a kill) before `_CURRENT` leaves `_CURRENT` unchanged, so readers keep the
//! previous snapshot; objects already uploaded under `shards/run_id=<RUN>/` (and possibly the
//! manifest) stay behind unreferenced, for a later cleanup to remove.

use crate::error::{Error, Result};
use crate::sidecar_writer::{key_index_path, sidecar_path, write_sidecar, SidecarStats};
use edgeshard_native::remote::{PutMode, RemoteRoot, UpdateVersion};
use edgeshard_shared::current::CurrentPointer;
use edgeshard_shared::{codes, layout};
use std::path::PathBuf;

/// Shards uploaded at once (each upload is one request, or a few parts for large shards).
pub const UPLOAD_CONCURRENCY: usize = 8;

pub struct RemotePublisher {
    root: RemoteRoot,
    run_id: String,
    staging: tempfile::TempDir,
    /// `_CURRENT`'s ETag when this build read it (`None`: there was no `_CURRENT`).
    current_seen: Option<String>,
}

impl RemotePublisher {
    /// Reads `_CURRENT`'s version (the base of the final conditional PUT), checks the run id is
    /// unused and creates the local staging folder.
    pub fn new(root: RemoteRoot, run_id: &str) -> Result<Self> {
        let run_dir = format!("{}/run_id={run_id}", layout::SHARDS_DIR);
        if !root.list_dirs(&run_dir)?.is_empty() {
            return Err(Error::Usage(format!(
                "run id {run_id:?} already exists under {}",
                root.url()
            )));
        }
        let current_seen = read_current_version(&root)?;
        let staging = tempfile::Builder::new()
            .prefix("edgeshard-build-")
            .tempdir_in(std::env::temp_dir())
            .map_err(Error::io(std::env::temp_dir().display()))?;
        Ok(Self {
            root,
            run_id: run_id.to_string(),
            staging,
            current_seen,
        })
    }

    pub fn root(&self) -> &RemoteRoot {
        &self.root
    }

    /// `_CURRENT`'s ETag as read when the build started.
    pub fn current_seen(&self) -> Option<&str> {
        self.current_seen.as_deref()
    }

    /// Where a shard's `shard.db` is written while staged (its folder is created).
    pub fn staged_shard_path(&self, db_id: u32) -> Result<PathBuf> {
        let dir = self
            .staging
            .path()
            .join(layout::shard_dir(&self.run_id, db_id, 0));
        std::fs::create_dir_all(&dir).map_err(Error::io(dir.display()))?;
        Ok(dir.join(layout::SHARD_DB_FILE))
    }

    /// Uploads one staged shard; with `sidecar`, then writes its sidecar bound to the ETag the
    /// upload returned and uploads that too.
    pub fn upload_shard(&self, db_id: u32, sidecar: bool) -> Result<Option<SidecarStats>> {
        let path = self.staged_shard_path(db_id)?;
        let dir = layout::shard_dir(&self.run_id, db_id, 0);
        let db_key = format!("{dir}/{}", layout::SHARD_DB_FILE);
        let etag = self.root.put_file(&db_key, &path)?;
        // Binary codes (`--quantization binary`) go up beside the shard.
        let codes_path = path.with_file_name(codes::FILE_NAME);
        if codes_path.exists() {
            self.root
                .put_file(&format!("{dir}/{}", codes::FILE_NAME), &codes_path)?;
        }
        let (true, Some(etag)) = (sidecar, etag) else {
            return Ok(None);
        };
        let stats = write_sidecar(&path, &etag)?;
        if let Some(stats) = &stats {
            let sidecar_key = format!("{dir}/{}", layout::SIDECAR_FILE);
            self.root.put_file(&sidecar_key, &sidecar_path(&path))?;
            if stats.key_index_bytes.is_some() {
                let index_key = format!("{dir}/{}", layout::KEY_INDEX_FILE);
                self.root.put_file(&index_key, &key_index_path(&path))?;
            }
        }
        Ok(stats)
    }

    /// Uploads a staged LanceDB shard: every file of its database folder (the shard folder
    /// for vector-only snapshots, `vector/` for composite ones), names unchanged, so the table
    /// opens on S3 as it did on disk. Files go up one after another; shards upload in parallel.
    pub fn upload_lance(&self, db_id: u32, vector_only: bool) -> Result<()> {
        let shard_dir = layout::shard_dir(&self.run_id, db_id, 0);
        let db_dir = layout::lance_db_dir(&shard_dir, !vector_only);
        let local = self.staging.path().join(&db_dir);
        let mut pending = vec![local.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).map_err(Error::io(dir.display()))? {
                let path = entry.map_err(Error::io(dir.display()))?.path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let relative = path.strip_prefix(&local).map_err(|_| {
                    Error::Usage(format!("{} is outside {}", path.display(), local.display()))
                })?;
                let key = format!("{db_dir}/{}", relative.to_string_lossy().replace('\\', "/"));
                self.root.put_file(&key, &path)?;
            }
        }
        Ok(())
    }

    /// Uploads a vector routing artifact at `vector_meta/run_id=<RUN>/<file>` (after the shards,
    /// before the manifest that references it); returns its root-relative path.
    pub fn publish_vector_meta(&self, file: &str, bytes: &[u8]) -> Result<String> {
        let relative = layout::vector_meta_path(&self.run_id, file);
        self.root.put(
            &relative,
            bytes.to_vec(),
            PutMode::Overwrite,
            Some("application/octet-stream"),
        )?;
        Ok(relative)
    }

    /// Uploads the manifest at `manifests/<TS>_run_id=<RUN>/manifest` (returned, root-relative).
    pub fn publish_manifest(&self, timestamp: &str, bytes: &[u8]) -> Result<String> {
        let relative = layout::manifest_path(timestamp, &self.run_id);
        self.root.put(
            &relative,
            bytes.to_vec(),
            PutMode::Overwrite,
            Some("application/x-sqlite3"),
        )?;
        Ok(relative)
    }

    /// The commit point: replaces `_CURRENT` only if it is still the version this build read.
    pub fn publish_current(&self, pointer: &CurrentPointer) -> Result<()> {
        publish_current_if(&self.root, pointer, self.current_seen.as_deref())
    }
}

/// `_CURRENT`'s ETag (HEAD), or `None` when the root has no `_CURRENT` yet.
pub fn read_current_version(root: &RemoteRoot) -> Result<Option<String>> {
    match root.head(layout::CURRENT) {
        Ok((_, Some(etag))) => Ok(Some(etag)),
        Ok((_, None)) => Err(Error::Usage(format!(
            "{}/{}: the store returned no ETag, so _CURRENT cannot be replaced safely \
             (conditional PUT needs one)",
            root.url(),
            layout::CURRENT
        ))),
        Err(edgeshard_native::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `pointer` as `_CURRENT` if `_CURRENT` is still at `seen` (its ETag; `None`: it must
/// not exist): `If-Match: <seen>` / `If-None-Match: *`. When the condition fails because
/// another publisher replaced `_CURRENT` meanwhile, this is [`Error::Conflict`] and `_CURRENT`
/// keeps the other publisher's value.
pub fn publish_current_if(
    root: &RemoteRoot,
    pointer: &CurrentPointer,
    seen: Option<&str>,
) -> Result<()> {
    let bytes = pointer.to_json_bytes();
    let mode = match seen {
        None => PutMode::Create,
        Some(etag) => PutMode::Update(UpdateVersion {
            e_tag: Some(etag.to_string()),
            version: None,
        }),
    };
    match root.put(
        layout::CURRENT,
        bytes.clone(),
        mode,
        Some("application/json"),
    ) {
        Ok(_) => Ok(()),
        Err(edgeshard_native::Error::Changed { detail, .. }) => {
            // A retried PUT whose first attempt succeeded (answer lost) also fails its
            // condition: then `_CURRENT` holds exactly our bytes, and that is success.
            if root.read(layout::CURRENT).ok().as_deref() == Some(&bytes[..]) {
                return Ok(());
            }
            let run_dir = layout::join(
                root.url(),
                &format!("{}/run_id={}/", layout::SHARDS_DIR, pointer.run_id),
            );
            Err(Error::Conflict(format!(
                "{}/{} changed since this build read it: another publisher won; nothing was \
                 lost, your shards and manifest are at {run_dir} and {} (run id {}), and \
                 _CURRENT keeps the other publisher's snapshot. Rebuild, or point _CURRENT at \
                 this manifest, to make it current. ({detail})",
                root.url(),
                layout::CURRENT,
                pointer.manifest_ref,
                pointer.run_id
            )))
        }
        Err(e) => Err(e.into()),
    }
}
