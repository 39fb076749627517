//! `edgeshard cleanup`: removes old runs from a snapshot root (a local directory or S3).
//!
//! What is never removed: the manifest `_CURRENT` points at (and its shards), the newest
//! `keep_last` manifests, and anything a build may still be writing (orphan shard folders and
//! staging folders younger than [`IN_PROGRESS_GRACE`]). A manifest is removed before its shards,
//! so no listed manifest ever points at missing shards.

use crate::error::{Error, Result};
use crate::publish::STAGING_DIR;
use edgeshard_native::{current_manifest_path, Root};
use edgeshard_shared::layout;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Shard or staging folders without a manifest may belong to a build that is still running:
/// leave them alone until they are at least this old.
pub const IN_PROGRESS_GRACE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct CleanupOptions {
    /// Newest manifests always kept (the current one is kept in any case).
    pub keep_last: usize,
    /// Only remove runs older than this (by their manifest timestamp).
    pub older_than: Option<Duration>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Removal {
    /// "removed" or, with --dry-run, "would remove".
    pub action: &'static str,
    /// "manifest", "shards", "vector_meta" (a vector-only run's routing artifact) or
    /// "staging".
    pub kind: &'static str,
    pub run_id: String,
    pub path: String,
    pub bytes: u64,
}

pub fn cleanup(root: &Root, opts: &CleanupOptions) -> Result<Vec<Removal>> {
    let dir = match root {
        Root::Local(dir) => dir,
        Root::Remote(remote) => return cleanup_remote(root, remote, opts),
    };
    let history = root.list_manifests()?;
    let now = SystemTime::now();
    let (doomed, kept_runs) = doomed_versions(root, opts)?;
    let action = if opts.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut removals = Vec::new();
    for version in &doomed {
        let manifest_dir = dir.join(&version.manifest_path);
        let manifest_dir = manifest_dir.parent().unwrap_or(dir).to_path_buf();
        removals.push(remove(
            &manifest_dir,
            "manifest",
            &version.run_id,
            action,
            opts.dry_run,
        )?);
        // Two manifests never share a run id in edgeshard, but be safe: keep shards a kept
        // manifest still uses.
        if !kept_runs.contains(&version.run_id) {
            for (parent, kind) in [
                (layout::SHARDS_DIR, "shards"),
                (layout::VECTOR_META_DIR, "vector_meta"),
            ] {
                let run_dir = dir.join(parent).join(format!("run_id={}", version.run_id));
                if run_dir.exists() {
                    removals.push(remove(
                        &run_dir,
                        kind,
                        &version.run_id,
                        action,
                        opts.dry_run,
                    )?);
                }
            }
        }
    }
    // Orphans: shard folders of runs with no manifest (failed or killed builds) and stale
    // staging folders, once old enough not to be a build in progress.
    let listed: BTreeSet<String> = history.iter().map(|v| v.run_id.clone()).collect();
    let grace_cutoff = before_now(
        now,
        IN_PROGRESS_GRACE.max(opts.older_than.unwrap_or_default()),
    );
    for (parent, kind) in [
        (dir.join(layout::SHARDS_DIR), "shards"),
        (dir.join(layout::VECTOR_META_DIR), "vector_meta"),
        (dir.join(STAGING_DIR), "staging"),
    ] {
        for entry in read_dir_sorted(&parent)? {
            let name = entry
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let run_id = name.strip_prefix("run_id=").unwrap_or(&name).to_string();
            if listed.contains(&run_id) {
                continue;
            }
            let modified = std::fs::metadata(&entry)
                .and_then(|m| m.modified())
                .unwrap_or(now);
            if modified < grace_cutoff {
                removals.push(remove(&entry, kind, &run_id, action, opts.dry_run)?);
            }
        }
    }
    Ok(removals)
}

/// Which manifests go, by the same rules as on disk: not the current one, not the newest
/// `keep_last`, only those older than `older_than` when given.
fn doomed_versions(
    root: &Root,
    opts: &CleanupOptions,
) -> Result<(Vec<edgeshard_native::ManifestVersion>, BTreeSet<String>)> {
    let current = current_manifest_path(root)?;
    let history = root.list_manifests()?;
    // Both paths are normalised (`manifests//x` and `manifests/./x` name the same manifest), so
    // equal text means the same manifest. If the current one is not listed, something is off:
    // removing by these rules could remove what readers use.
    if !history.iter().any(|v| v.manifest_path == current) {
        return Err(Error::Usage(format!(
            "_CURRENT points at {current}, which is not listed under manifests/: refusing to \
             clean up (fix _CURRENT with rollback first)"
        )));
    }
    let cutoff = opts
        .older_than
        .map(|age| before_now(SystemTime::now(), age));
    let mut kept_runs = BTreeSet::new();
    let mut doomed = Vec::new();
    for (i, version) in history.into_iter().enumerate() {
        let keep = version.manifest_path == current
            || i < opts.keep_last
            || cutoff.is_some_and(|cutoff| !timestamp_before(&version.timestamp, cutoff));
        if keep {
            kept_runs.insert(version.run_id.clone());
        } else {
            doomed.push(version);
        }
    }
    Ok((doomed, kept_runs))
}

/// Cleanup on an object store: each doomed run's manifest objects, then its shard objects.
/// Shard folders without a manifest (a failed or running build) are left alone here: object
/// stores give no reliable folder age to tell the two apart.
fn cleanup_remote(
    root: &Root,
    remote: &edgeshard_native::remote::RemoteRoot,
    opts: &CleanupOptions,
) -> Result<Vec<Removal>> {
    let (doomed, kept_runs) = doomed_versions(root, opts)?;
    let action = if opts.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut removals = Vec::new();
    for version in doomed {
        let manifest_dir = layout::manifest_dir(&version.timestamp, &version.run_id);
        let mut groups = vec![("manifest", manifest_dir)];
        if !kept_runs.contains(&version.run_id) {
            groups.push((
                "shards",
                format!("{}/run_id={}", layout::SHARDS_DIR, version.run_id),
            ));
            groups.push((
                "vector_meta",
                format!("{}/run_id={}", layout::VECTOR_META_DIR, version.run_id),
            ));
        }
        for (kind, prefix) in groups {
            let objects = remote.list_objects(&prefix)?;
            if objects.is_empty() {
                continue;
            }
            if !opts.dry_run {
                let paths: Vec<String> = objects.iter().map(|(p, _)| p.clone()).collect();
                remote.delete(&paths)?;
            }
            removals.push(Removal {
                action,
                kind,
                run_id: version.run_id.clone(),
                path: layout::join(remote.url(), &prefix),
                bytes: objects.iter().map(|(_, size)| size).sum(),
            });
        }
    }
    Ok(removals)
}

fn remove(
    path: &Path,
    kind: &'static str,
    run_id: &str,
    action: &'static str,
    dry_run: bool,
) -> Result<Removal> {
    let bytes = tree_size(path);
    if !dry_run {
        std::fs::remove_dir_all(path).map_err(Error::io(path.display()))?;
    }
    Ok(Removal {
        action,
        kind,
        run_id: run_id.to_string(),
        path: path.display().to_string(),
        bytes,
    })
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir.display())(e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    paths.sort();
    Ok(paths)
}

fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| tree_size(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// Whether a manifest timestamp (`YYYY-MM-DDTHH:MM:SS.ffffffZ`) is before `cutoff`. The
/// timestamps sort as text, so compare with the cutoff formatted the same way.
fn timestamp_before(timestamp: &str, cutoff: SystemTime) -> bool {
    let micros = cutoff
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    timestamp < layout::format_timestamp(micros).as_str()
}

/// `now - age`, or the epoch when the age reaches back further (nothing is older than that).
fn before_now(now: SystemTime, age: Duration) -> SystemTime {
    now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Parses `30d`, `12h`, `45m`, `90s` (or plain seconds).
pub fn parse_age(text: &str) -> std::result::Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not an age like 30d, 12h, 45m or 90s"))?;
    let unit_seconds: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use s, m, h or d)"
            ))
        }
    };
    let seconds = n
        .checked_mul(unit_seconds)
        .ok_or_else(|| format!("{text:?} is too large an age"))?;
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse() {
        assert_eq!(parse_age("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_age("90").unwrap(), Duration::from_secs(90));
        assert!(parse_age("3w").is_err());
        assert!(parse_age("d").is_err());
        // Overflowed (a panic) before.
        assert!(parse_age("999999999999999d").is_err());
        assert!(parse_age("99999999999999999999").is_err());
        let huge = parse_age("18446744073709551615").unwrap();
        assert_eq!(before_now(SystemTime::now(), huge), SystemTime::UNIX_EPOCH);
    }
}
