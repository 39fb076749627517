//! `edgeshard cleanup`: removes old runs from a snapshot root (a local directory or S3).
//!
//! What is never removed: the manifest `_CURRENT` points at, the newest `keep_last` manifests,
//! every file those kept manifests reference (read from the manifests, not guessed from folder
//! names: a manifest may use another run's shard), a manifest whose build may still be
//! publishing (its staging folder exists, or it was written after `_CURRENT` last changed and
//! is younger than [`IN_PROGRESS_GRACE`]), and orphan shard or staging folders younger than
//! that. A manifest is removed before its shards, so no listed manifest ever points at missing
//! shards. Symlinks are removed themselves, never followed.

use crate::error::{Error, Result};
use crate::publish::{exists, STAGING_DIR};
use edgeshard_native::Root;
use edgeshard_shared::current::CurrentPointer;
use edgeshard_shared::layout;
use edgeshard_shared::manifest::Manifest;
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
    let action = if opts.dry_run {
        "would remove"
    } else {
        "removed"
    };
    match root {
        Root::Local(dir) => cleanup_local(root, dir, opts, action),
        Root::Remote(remote) => cleanup_remote(root, remote, opts, action),
    }
}

fn cleanup_local(
    root: &Root,
    dir: &Path,
    opts: &CleanupOptions,
    action: &'static str,
) -> Result<Vec<Removal>> {
    let now = SystemTime::now();
    // The staging folder is edgeshard's own: a symlink there is not ours to follow (it could
    // lead anywhere), so leave it and everything behind it alone.
    let staging = dir.join(STAGING_DIR);
    let staging_is_ours = !is_symlink(&staging);
    let history = root.list_manifests()?;
    // Listed after the manifests: a build creates its staging folder before it writes its
    // manifest and removes it only after `_CURRENT` names it, so any listed manifest whose
    // build is still publishing has its staging folder seen here.
    let staged_runs: BTreeSet<String> = match staging_is_ours {
        true => read_dir_sorted(&staging)?
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect(),
        false => BTreeSet::new(),
    };
    let plan = plan(root, history, opts, |version| {
        staged_runs.contains(&version.run_id)
    })?;
    let mut removals = Vec::new();
    for version in &plan.doomed {
        let manifest_dir = dir.join(&version.manifest_path);
        let manifest_dir = manifest_dir.parent().unwrap_or(dir).to_path_buf();
        removals.push(remove(
            &manifest_dir,
            "manifest",
            &version.run_id,
            action,
            opts.dry_run,
        )?);
        for (parent, kind) in [
            (layout::SHARDS_DIR, "shards"),
            (layout::VECTOR_META_DIR, "vector_meta"),
        ] {
            let relative = format!("{parent}/run_id={}", version.run_id);
            let run_dir = dir.join(&relative);
            if !plan.protects(&relative) && exists(&run_dir)? {
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
    // Orphans: shard folders no manifest references (failed or killed builds) and stale
    // staging folders, once old enough not to be a build in progress.
    let grace_cutoff = before_now(
        now,
        IN_PROGRESS_GRACE.max(opts.older_than.unwrap_or_default()),
    );
    let mut parents = vec![
        (layout::SHARDS_DIR, "shards"),
        (layout::VECTOR_META_DIR, "vector_meta"),
    ];
    if staging_is_ours {
        parents.push((STAGING_DIR, "staging"));
    }
    for (parent, kind) in parents {
        for entry in read_dir_sorted(&dir.join(parent))? {
            let name = entry
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let run_id = name.strip_prefix("run_id=").unwrap_or(&name).to_string();
            if plan.listed_runs.contains(&run_id) || plan.protects(&format!("{parent}/{name}")) {
                continue;
            }
            let modified = std::fs::symlink_metadata(&entry)
                .and_then(|m| m.modified())
                .unwrap_or(now);
            if modified < grace_cutoff {
                removals.push(remove(&entry, kind, &run_id, action, opts.dry_run)?);
            }
        }
    }
    Ok(removals)
}

/// What a cleanup removes and what it must keep.
struct Plan {
    /// Manifests to remove, each before its run's folders.
    doomed: Vec<edgeshard_native::ManifestVersion>,
    /// Run ids of every listed manifest, doomed or not (their folders are not orphans).
    listed_runs: BTreeSet<String>,
    /// Run ids of the kept manifests: their conventional folders stay.
    kept_runs: BTreeSet<String>,
    /// Every root-relative path a kept manifest references (shard folders, routing
    /// artifacts): read from the manifests themselves, since a manifest may point at another
    /// run's files or sit in a folder named after another run id than its shards.
    referenced: Vec<String>,
}

impl Plan {
    /// Whether removing the root-relative folder `relative` would remove something a kept
    /// manifest uses.
    fn protects(&self, relative: &str) -> bool {
        let run_id = relative
            .rsplit('/')
            .next()
            .and_then(|name| name.strip_prefix("run_id="));
        run_id.is_some_and(|run| self.kept_runs.contains(run))
            || self.referenced.iter().any(|path| {
                path == relative
                    || path
                        .strip_prefix(relative)
                        .is_some_and(|rest| rest.starts_with('/'))
            })
    }
}

/// Which manifests go, by the same rules on disk and on S3: not the current one, not the newest
/// `keep_last`, only those older than `older_than` when given, and never one whose build may
/// still be publishing (`in_flight`, or written after `_CURRENT` last changed and younger than
/// [`IN_PROGRESS_GRACE`]: a build writes its manifest before it swaps `_CURRENT`).
///
/// `history` is listed before `_CURRENT` is read here, so a build that finished in between is
/// seen as current rather than as an old version.
fn plan(
    root: &Root,
    history: Vec<edgeshard_native::ManifestVersion>,
    opts: &CleanupOptions,
    in_flight: impl Fn(&edgeshard_native::ManifestVersion) -> bool,
) -> Result<Plan> {
    let current_bytes = root.read(layout::CURRENT)?;
    let pointer = CurrentPointer::parse(&current_bytes).map_err(|source| {
        edgeshard_native::Error::Format {
            location: root.location(layout::CURRENT),
            source,
        }
    })?;
    let current = layout::manifest_ref_relative(&pointer.manifest_ref).map_err(|source| {
        edgeshard_native::Error::Format {
            location: root.location(layout::CURRENT),
            source,
        }
    })?;
    // Both paths are normalised (`manifests//x` and `manifests/./x` name the same manifest), so
    // equal text means the same manifest. If the current one is not listed, something is off:
    // removing by these rules could remove what readers use.
    let Some(current_version) = history.iter().find(|v| v.manifest_path == current).cloned() else {
        return Err(Error::Usage(format!(
            "_CURRENT points at {current}, which is not listed under manifests/: refusing to \
             clean up (fix _CURRENT with rollback first)"
        )));
    };
    // When `_CURRENT` last changed (as edgeshard records it; another writer's format falls back
    // to the current manifest's time). A manifest written since then may belong to a build that
    // is about to swap `_CURRENT`; one written before it lost to a later build or a rollback.
    let current_since = match layout::is_timestamp(&pointer.updated_at) {
        true => pointer.updated_at.as_str(),
        false => current_version.timestamp.as_str(),
    };
    let now = SystemTime::now();
    let cutoff = opts.older_than.map(|age| before_now(now, age));
    let grace_cutoff = before_now(now, IN_PROGRESS_GRACE);
    let mut plan = Plan {
        doomed: Vec::new(),
        listed_runs: history.iter().map(|v| v.run_id.clone()).collect(),
        kept_runs: BTreeSet::new(),
        referenced: Vec::new(),
    };
    for (i, version) in history.into_iter().enumerate() {
        let publishing = in_flight(&version)
            || (version.timestamp.as_str() > current_since
                && !timestamp_before(&version.timestamp, grace_cutoff));
        let keep = version.manifest_path == current
            || i < opts.keep_last
            || publishing
            || cutoff.is_some_and(|cutoff| !timestamp_before(&version.timestamp, cutoff));
        if !keep {
            plan.doomed.push(version);
            continue;
        }
        // A kept manifest that cannot be read might reference anything: stop rather than guess.
        let bytes = root.read(&version.manifest_path)?;
        let manifest = Manifest::from_sqlite_bytes(&bytes).map_err(|e| {
            Error::Usage(format!(
                "refusing to clean up: the kept manifest {} cannot be read ({e}), so what it \
                 references is unknown",
                root.location(&version.manifest_path)
            ))
        })?;
        plan.referenced
            .extend(manifest.referenced_paths().map_err(|e| {
                Error::Usage(format!(
                    "refusing to clean up: the kept manifest {}: {e}",
                    root.location(&version.manifest_path)
                ))
            })?);
        plan.kept_runs.insert(version.run_id);
    }
    Ok(plan)
}

/// Cleanup on an object store: each doomed run's manifest objects, then its shard objects.
/// Shard folders without a manifest (a failed or running build) are left alone here: object
/// stores give no reliable folder age to tell the two apart.
fn cleanup_remote(
    root: &Root,
    remote: &edgeshard_native::remote::RemoteRoot,
    opts: &CleanupOptions,
    action: &'static str,
) -> Result<Vec<Removal>> {
    let plan = plan(root, root.list_manifests()?, opts, |_| false)?;
    let mut removals = Vec::new();
    for version in &plan.doomed {
        let mut groups = vec![(
            "manifest",
            layout::manifest_dir(&version.timestamp, &version.run_id),
        )];
        for (parent, kind) in [
            (layout::SHARDS_DIR, "shards"),
            (layout::VECTOR_META_DIR, "vector_meta"),
        ] {
            let relative = format!("{parent}/run_id={}", version.run_id);
            if !plan.protects(&relative) {
                groups.push((kind, relative));
            }
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

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
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
        // A link is removed itself, never what it points at (which may be outside the root).
        let removed = match is_symlink(path) {
            true => std::fs::remove_file(path),
            false => std::fs::remove_dir_all(path),
        };
        removed.map_err(Error::io(path.display()))?;
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
        .filter(|p| p.is_dir() || is_symlink(p))
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
