//! A snapshot root: where `_CURRENT`, `manifests/` and `shards/` live.
//!
//! Local directories (a path or a `file://` URL) are read directly; `s3://` and `http(s)://`
//! roots go through [`RemoteRoot`] (object_store).

use crate::error::{Error, Result};
use crate::remote::RemoteRoot;
use edgeshard_shared::layout;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    Local(PathBuf),
    Remote(RemoteRoot),
}

/// One published manifest, as found by listing `manifests/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ManifestVersion {
    pub timestamp: String,
    pub run_id: String,
    /// Path of the manifest relative to the root.
    pub manifest_path: String,
}

impl Root {
    /// Accepts a directory path or a `file://` URL.
    pub fn parse(root: &str) -> Result<Self> {
        Self::parse_with(root, &[])
    }

    /// As [`Root::parse`], with S3 storage options for `s3://` roots (see
    /// [`RemoteRoot::parse_with`]).
    pub fn parse_with(root: &str, storage_options: &[(String, String)]) -> Result<Self> {
        // An empty root would silently mean the working directory.
        if root.trim().is_empty() {
            return Err(Error::InvalidRequest(
                "the snapshot root is empty: give a directory, file:// URL, s3:// or http(s):// \
                 URL"
                .into(),
            ));
        }
        if let Some(path) = root.strip_prefix("file://") {
            // file:///abs/path -> /abs/path ; file://localhost/abs -> /abs
            let path = path.strip_prefix("localhost").unwrap_or(path);
            return Ok(Root::Local(PathBuf::from(percent_decode(path))));
        }
        if root.contains("://") {
            return RemoteRoot::parse_with(root, storage_options).map(Root::Remote);
        }
        Ok(Root::Local(PathBuf::from(root)))
    }

    /// The root as a URL, as recorded in manifests (`file:///abs/path`).
    pub fn url(&self) -> String {
        match self {
            Root::Local(path) => {
                let abs = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                format!("file://{}", abs.display())
            }
            Root::Remote(remote) => remote.url().to_string(),
        }
    }

    /// Where a root-relative object lives on local disk (`None` for remote roots).
    pub fn local_path(&self, relative: &str) -> Option<PathBuf> {
        match self {
            Root::Local(dir) => Some(dir.join(relative)),
            Root::Remote(_) => None,
        }
    }

    /// Display form of an object's location, for error messages.
    pub fn location(&self, relative: &str) -> String {
        layout::join(&self.url(), relative)
    }

    pub fn read(&self, relative: &str) -> Result<Vec<u8>> {
        let dir = match self {
            Root::Local(dir) => dir,
            Root::Remote(remote) => return remote.read(relative),
        };
        let path = dir.join(relative);
        std::fs::read(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound {
                    what: relative.to_string(),
                    location: path.display().to_string(),
                }
            } else {
                Error::Io {
                    location: path.display().to_string(),
                    source,
                }
            }
        })
    }

    /// Published manifests, newest first.
    pub fn list_manifests(&self) -> Result<Vec<ManifestVersion>> {
        let dir = match self {
            Root::Local(dir) => dir.join(layout::MANIFESTS_DIR),
            Root::Remote(remote) => {
                let mut versions: Vec<ManifestVersion> = remote
                    .list_dirs(layout::MANIFESTS_DIR)?
                    .iter()
                    .filter_map(|name| layout::parse_manifest_dir_name(name))
                    .map(|(ts, run)| ManifestVersion {
                        timestamp: ts.to_string(),
                        run_id: run.to_string(),
                        manifest_path: layout::manifest_path(ts, run),
                    })
                    .collect();
                sort_newest_first(&mut versions);
                return Ok(versions);
            }
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Io {
                    location: dir.display().to_string(),
                    source,
                })
            }
        };
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                location: dir.display().to_string(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((ts, run)) = layout::parse_manifest_dir_name(&name) {
                if entry.path().join(layout::MANIFEST_FILE).is_file() {
                    versions.push(ManifestVersion {
                        timestamp: ts.to_string(),
                        run_id: run.to_string(),
                        manifest_path: layout::manifest_path(ts, run),
                    });
                }
            }
        }
        sort_newest_first(&mut versions);
        Ok(versions)
    }
}

fn sort_newest_first(versions: &mut [ManifestVersion]) {
    versions.sort_by(|a, b| b.timestamp.cmp(&a.timestamp).then(b.run_id.cmp(&a.run_id)));
}

/// A SQLite URI for opening `path` read-only and immutable (no locks, no journal checks: shard
/// files never change once published).
pub(crate) fn sqlite_immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for byte in path.display().to_string().bytes() {
        match byte {
            b'%' | b'?' | b'#' => uri.push_str(&format!("%{byte:02X}")),
            _ => uri.push(byte as char),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_file_urls() {
        assert_eq!(Root::parse("/a/b").unwrap(), Root::Local("/a/b".into()));
        assert_eq!(
            Root::parse("file:///a/b%20c").unwrap(),
            Root::Local("/a/b c".into())
        );
        assert!(matches!(Root::parse("s3://bucket/x"), Ok(Root::Remote(_))));
        assert!(matches!(
            Root::parse("http://127.0.0.1:1/x"),
            Ok(Root::Remote(_))
        ));
        assert!(matches!(
            Root::parse("ftp://host/x"),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn uri_escapes_query_characters() {
        assert_eq!(
            sqlite_immutable_uri(Path::new("/x/run_id=a?b/shard.db")),
            "file:/x/run_id=a%3Fb/shard.db?immutable=1"
        );
    }
}
