//! Where objects live under a snapshot root, and the timestamps in their names.
//!
//! ```text
//! _CURRENT
//! manifests/<TS>_run_id=<RUN>/manifest
//! shards/run_id=<RUN>/db=<NNNNN>/attempt=<AA>/shard.db
//! vector_meta/run_id=<RUN>/centroids.npy | hyperplanes.npy
//! ```

use crate::error::{Error, Result};

/// The pointer object at the top of a root, naming the live manifest ([`crate::current`]).
pub const CURRENT: &str = "_CURRENT";
/// Folder of the manifests, one sub-folder per run (`<TS>_run_id=<RUN>`).
pub const MANIFESTS_DIR: &str = "manifests";
/// File name of a manifest inside its run folder.
pub const MANIFEST_FILE: &str = "manifest";
/// Folder of the shard databases (`build_meta.shard_prefix` as edgeshard writes it).
pub const SHARDS_DIR: &str = "shards";
/// File name of a shard's SQLite database inside its `attempt=AA` folder.
pub const SHARD_DB_FILE: &str = "shard.db";
/// File name of a shard's page-cache sidecar, beside `shard.db` ([`crate::sidecar`]).
pub const SIDECAR_FILE: &str = "shard.sidecar";
/// File name of a shard's key index, beside `shard.db` ([`crate::key_index`]; edgeshard's
/// extension, announced in the manifest's `custom.edgeshard_key_index`).
pub const KEY_INDEX_FILE: &str = "shard.keyindex";
/// `custom` key of the manifest announcing key indexes.
pub const KEY_INDEX_CUSTOM_KEY: &str = "edgeshard_key_index";
/// Vector routing artifacts of vector-only snapshots.
pub const VECTOR_META_DIR: &str = "vector_meta";
/// The cluster routing centroids (one row per shard slot), under [`VECTOR_META_DIR`].
pub const CENTROIDS_FILE: &str = "centroids.npy";
/// The LSH routing hyperplanes (one row per hash bit), under [`VECTOR_META_DIR`].
pub const HYPERPLANES_FILE: &str = "hyperplanes.npy";
/// A LanceDB shard's dataset folder (vector-only snapshots), inside the shard folder.
pub const LANCE_INDEX_DIR: &str = "vector_index.lance";
/// The LanceDB half of a composite (SQLite KV + LanceDB) shard lives in this sub-folder.
pub const COMPOSITE_VECTOR_DIR: &str = "vector";
/// `build_meta.db_path_template` as shardyfusion writes it.
pub const DB_PATH_TEMPLATE: &str = "db={db_id:05d}";

/// The longest run id a build accepts (it becomes part of several path segments).
pub const MAX_RUN_ID_LEN: usize = 128;

/// A run id becomes a path segment (`run_id=<RUN>`, `<TS>_run_id=<RUN>`, the staging folder
/// `.edgeshard-staging/<RUN>`), so a build accepts only ASCII letters, digits, `-`, `_` and `.`,
/// not starting with `.` (which also rules out `.` and `..`, which would make the staging
/// folder the root itself), at most [`MAX_RUN_ID_LEN`] characters.
pub fn validate_run_id(run_id: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if run_id.is_empty()
        || run_id.len() > MAX_RUN_ID_LEN
        || run_id.starts_with('.')
        || !run_id.chars().all(allowed)
    {
        return Err(Error::InvalidArgument(format!(
            "run id {run_id:?} must be 1..={MAX_RUN_ID_LEN} ASCII letters, digits, '-', '_' or '.', \
             not starting with '.'"
        )));
    }
    Ok(())
}

/// Normalises a root-relative path recorded in a manifest or `_CURRENT` (`db_url`,
/// `manifest_ref`, `centroids_ref`, ...): empty and `.` segments are dropped, and a path that
/// could leave the snapshot root (a `..` segment, a backslash, a NUL) is refused, so no reader
/// ever follows a recorded path outside the root, on any root kind.
pub fn normalize_relative(path: &str) -> Result<String> {
    let mut segments = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => continue,
            ".." => {
                return Err(Error::InvalidManifest(format!(
                    "recorded path {path:?} leaves the snapshot root ('..')"
                )))
            }
            s if s.contains(['\\', '\0']) => {
                return Err(Error::InvalidManifest(format!(
                    "recorded path {path:?} contains a backslash or NUL"
                )))
            }
            s => segments.push(s),
        }
    }
    if segments.is_empty() {
        return Err(Error::InvalidManifest(format!(
            "recorded path {path:?} names the snapshot root itself"
        )));
    }
    Ok(segments.join("/"))
}

/// Where `_CURRENT`'s `manifest_ref` lies under the root: the part from `manifests/` on,
/// normalised ([`normalize_relative`]), and still under `manifests/` afterwards. The one rule
/// every reader, rollback and cleanup use, so that `manifests//x` and `manifests/./x` name the
/// same manifest everywhere.
pub fn manifest_ref_relative(manifest_ref: &str) -> Result<String> {
    let needle = format!("{MANIFESTS_DIR}/");
    let start = if manifest_ref.starts_with(&needle) {
        Some(0)
    } else {
        manifest_ref.find(&format!("/{needle}")).map(|i| i + 1)
    };
    let relative = start
        .map(|i| &manifest_ref[i..])
        .ok_or_else(|| {
            Error::InvalidCurrent(format!(
                "manifest_ref {manifest_ref:?} is not under manifests/"
            ))
        })
        .and_then(|rest| {
            normalize_relative(rest).map_err(|e| Error::InvalidCurrent(e.to_string()))
        })?;
    match relative.strip_prefix(&needle) {
        Some(rest) if !rest.is_empty() => Ok(relative),
        _ => Err(Error::InvalidCurrent(format!(
            "manifest_ref {manifest_ref:?} is not under manifests/"
        ))),
    }
}

/// `manifests/<TS>_run_id=<RUN>` (the folder), relative to the root.
pub fn manifest_dir(timestamp: &str, run_id: &str) -> String {
    format!("{MANIFESTS_DIR}/{timestamp}_run_id={run_id}")
}

/// `manifests/<TS>_run_id=<RUN>/manifest`, relative to the root.
pub fn manifest_path(timestamp: &str, run_id: &str) -> String {
    format!("{}/{MANIFEST_FILE}", manifest_dir(timestamp, run_id))
}

/// Splits a manifest folder name `<TS>_run_id=<RUN>` into its timestamp and run id.
pub fn parse_manifest_dir_name(name: &str) -> Option<(&str, &str)> {
    let (ts, run) = name.split_once("_run_id=")?;
    (is_timestamp(ts) && !run.is_empty()).then_some((ts, run))
}

/// `shards/run_id=<RUN>/db=<NNNNN>/attempt=<AA>`, relative to the root.
pub fn shard_dir(run_id: &str, db_id: u32, attempt: u32) -> String {
    format!("{SHARDS_DIR}/run_id={run_id}/db={db_id:05}/attempt={attempt:02}")
}

/// The LanceDB database folder of a shard (the folder holding `vector_index.lance`):
/// the shard folder itself for vector-only snapshots, its `vector/` for composite ones.
pub fn lance_db_dir(shard_dir: &str, composite: bool) -> String {
    match composite {
        true => join(shard_dir, COMPOSITE_VECTOR_DIR),
        false => shard_dir.trim_end_matches('/').to_string(),
    }
}

/// `vector_meta/run_id=<RUN>/<file>`, relative to the root.
pub fn vector_meta_path(run_id: &str, file: &str) -> String {
    format!("{VECTOR_META_DIR}/run_id={run_id}/{file}")
}

/// Joins a root (path or URL, with or without a trailing `/`) and a relative path.
pub fn join(root: &str, relative: &str) -> String {
    format!(
        "{}/{}",
        root.trim_end_matches('/'),
        relative.trim_start_matches('/')
    )
}

/// Where a recorded URL (`manifest_ref`, `db_url`) lies relative to the snapshot root.
///
/// Snapshots are moved (copied from S3 to disk, served over HTTP), so recorded absolute URLs are
/// not followed blindly: the part after the recorded root is kept, and failing that the part from
/// the first `marker` segment (`manifests/` or `shards/`) on.
pub fn relative_to_root<'a>(url: &'a str, recorded_root: &str, marker: &str) -> Option<&'a str> {
    let recorded_root = recorded_root.trim_end_matches('/');
    if let Some(rest) = url.strip_prefix(recorded_root) {
        if let Some(rest) = rest.strip_prefix('/') {
            return Some(rest);
        }
    }
    let needle = format!("{marker}/");
    if url.starts_with(&needle) {
        return Some(url);
    }
    url.find(&format!("/{needle}")).map(|i| &url[i + 1..])
}

/// Whether `s` is a timestamp of the form `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 27
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            26 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Formats microseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, always six
/// fractional digits so that names sort by time).
pub fn format_timestamp(unix_micros: i64) -> String {
    let secs = unix_micros.div_euclid(1_000_000);
    let micros = unix_micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_spec() {
        assert_eq!(
            shard_dir("abc", 7, 1),
            "shards/run_id=abc/db=00007/attempt=01"
        );
        assert_eq!(
            manifest_path("2026-03-14T10:30:00.123456Z", "abc"),
            "manifests/2026-03-14T10:30:00.123456Z_run_id=abc/manifest"
        );
        assert_eq!(join("file:///x/", "_CURRENT"), "file:///x/_CURRENT");
        assert_eq!(
            vector_meta_path("abc", CENTROIDS_FILE),
            "vector_meta/run_id=abc/centroids.npy"
        );
    }

    #[test]
    fn timestamps_have_six_fraction_digits() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000000Z");
        // 2026-03-14T10:30:00.123456Z
        assert_eq!(
            format_timestamp(1_773_484_200_123_456),
            "2026-03-14T10:30:00.123456Z"
        );
        assert_eq!(
            format_timestamp(951_782_400_000_001),
            "2000-02-29T00:00:00.000001Z"
        );
        assert!(is_timestamp(&format_timestamp(1_773_484_200_123_456)));
        assert!(!is_timestamp("2026-03-14T10:30:00Z"));
    }

    #[test]
    fn manifest_dir_names_parse() {
        assert_eq!(
            parse_manifest_dir_name("2026-03-14T10:30:00.123456Z_run_id=r1"),
            Some(("2026-03-14T10:30:00.123456Z", "r1"))
        );
        assert_eq!(parse_manifest_dir_name("garbage_run_id=r1"), None);
    }

    #[test]
    fn recorded_urls_are_relocated() {
        let url = "s3://bucket/prefix/shards/run_id=r/db=00000/attempt=00";
        assert_eq!(
            relative_to_root(url, "s3://bucket/prefix", SHARDS_DIR),
            Some("shards/run_id=r/db=00000/attempt=00")
        );
        assert_eq!(
            relative_to_root(url, "file:///elsewhere", SHARDS_DIR),
            Some("shards/run_id=r/db=00000/attempt=00")
        );
        assert_eq!(
            relative_to_root("s3://b/x/y", "file:///e", SHARDS_DIR),
            None
        );
    }

    #[test]
    fn run_ids_cannot_be_paths() {
        for bad in [
            "a/b",
            "",
            ".",
            "..",
            ".hidden",
            "a\\b",
            "a b",
            "x\0",
            &"r".repeat(129),
        ] {
            assert!(validate_run_id(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["0123abc", "run-2026.12.02_a", &"r".repeat(128)] {
            assert!(validate_run_id(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn recorded_paths_stay_inside_the_root() {
        assert_eq!(
            normalize_relative("shards//run_id=r/./db=00000").unwrap(),
            "shards/run_id=r/db=00000"
        );
        for bad in ["shards/../../other", "..", "a/../b", "a\\..\\b", "", "./"] {
            assert!(normalize_relative(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn manifest_refs_normalise_to_one_spelling() {
        let canonical = "manifests/2026-01-01T00:00:00.000000Z_run_id=r/manifest";
        for spelling in [
            "s3://b/p/manifests/2026-01-01T00:00:00.000000Z_run_id=r/manifest",
            "file:///snap/manifests//2026-01-01T00:00:00.000000Z_run_id=r/manifest",
            "manifests/./2026-01-01T00:00:00.000000Z_run_id=r//manifest",
        ] {
            assert_eq!(
                manifest_ref_relative(spelling).unwrap(),
                canonical,
                "{spelling}"
            );
        }
        for bad in [
            "s3://b/p/manifests/../shards/x",
            "s3://b/p/manifests/",
            "s3://b/p/elsewhere",
            "file:///snap/oldmanifests/x",
        ] {
            assert!(manifest_ref_relative(bad).is_err(), "{bad:?} accepted");
        }
    }
}
