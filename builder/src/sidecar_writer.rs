//! Writes `shard.sidecar` (page-cache sidecar v8, format spec section 8) beside a `shard.db`.
//!
//! The content comes from [`edgeshard_shared::sidecar::analyze`]; this module compresses the
//! body (one zstd frame, checksum on, which [`Sidecar::parse`] requires) and binds it to a tag:
//! the ETag of `shard.db` as the serving store returns it. For a local root that is the S3-style
//! single-part ETag ([`s3_single_part_etag`]), so a local snapshot uploaded as-is keeps valid
//! sidecars; a publisher that uploads elsewhere passes the ETag its upload returned.
//!
//! [`Sidecar::parse`]: edgeshard_shared::sidecar::Sidecar::parse

use crate::error::{Error, Result};
use edgeshard_shared::key_index::KeyIndexContent;
use edgeshard_shared::sidecar::{analyze, assemble, SidecarContent};
use edgeshard_shared::{integrity, layout};
use md5::{Digest, Md5};
use std::io::Write;
use std::path::{Path, PathBuf};

/// zstd level: the body is mostly B-tree pages; higher levels buy little for the time.
const ZSTD_LEVEL: i32 = 3;
/// Readers refuse bodies beyond 1 GiB; a sidecar they would refuse is not written.
const MAX_BODY: usize = 1 << 30;

/// What was written for one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarStats {
    /// The tag the sidecar is bound to (the `shard.db` ETag, quotes included).
    pub tag: String,
    /// Size of the `shard.sidecar` file.
    pub bytes: u64,
    /// Uncompressed body size.
    pub body_bytes: u64,
    /// Pinned pages and overflow chains.
    pub pages: usize,
    pub chains: usize,
    /// Size of the `shard.keyindex` written beside it (`None`: the shard has no `kv` rows).
    pub key_index_bytes: Option<u64>,
    /// Its xxh3-128, recorded in the shard's `writer_info` (`key_index::HASH_KEY`).
    pub key_index_hash: Option<String>,
}

/// `shard.sidecar` beside `db_path`.
pub fn sidecar_path(db_path: &Path) -> PathBuf {
    db_path.with_file_name(layout::SIDECAR_FILE)
}

/// The ETag an S3-compatible store returns for a single-part PUT of `bytes`:
/// `"` + lowercase hex MD5 + `"`, quotes included.
pub fn s3_single_part_etag(bytes: &[u8]) -> String {
    let digest = Md5::digest(bytes);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for b in digest {
        tag.push_str(&format!("{b:02x}"));
    }
    tag.push('"');
    tag
}

/// Writes the sidecar of `db_path` bound to `tag`. `Ok(None)` (and no file) when the database
/// cannot have one: it reserves bytes per page for something other than edgeshard's page
/// checksums, or its sidecar would exceed what readers accept. Any other problem is an error.
pub fn write_sidecar(db_path: &Path, tag: &str) -> Result<Option<SidecarStats>> {
    let db = std::fs::read(db_path).map_err(Error::io(db_path.display()))?;
    write_for_image(db_path, &db, tag)
}

/// [`write_sidecar`] for a local root: the tag is the S3-style single-part ETag of the file
/// (computed from the same read as the analysis).
pub fn write_local_sidecar(db_path: &Path) -> Result<Option<SidecarStats>> {
    let db = std::fs::read(db_path).map_err(Error::io(db_path.display()))?;
    let tag = s3_single_part_etag(&db);
    write_for_image(db_path, &db, &tag)
}

fn write_for_image(db_path: &Path, db: &[u8], tag: &str) -> Result<Option<SidecarStats>> {
    // Header byte 20: bytes reserved at the end of each page. shardyfusion writes no sidecar for
    // such files, because a checksum or cipher may cover the gap a sidecar strips. Our own page
    // checksums are sealed over zeroed gaps, so their pages rebuild byte for byte (`analyze`
    // verifies that for every page it keeps) and a sidecar is safe; any other reserve (another
    // tool's file) gets none.
    if db.len() >= 100 && db[20] != 0 && db[20] != integrity::PAGE_CHECKSUM_BYTES {
        return Ok(None);
    }
    let content = analyze(db)?;
    let Some((file, body_bytes)) = encode_sidecar(&content, tag)? else {
        return Ok(None);
    };
    let path = sidecar_path(db_path);
    std::fs::write(&path, &file).map_err(Error::io(path.display()))?;
    let key_index = write_key_index(db_path, db)?;
    Ok(Some(SidecarStats {
        tag: tag.to_string(),
        bytes: file.len() as u64,
        body_bytes,
        pages: content.pages.len(),
        chains: content.chains.len(),
        key_index_bytes: key_index.as_ref().map(|(bytes, _)| *bytes),
        key_index_hash: key_index.map(|(_, hash)| hash),
    }))
}

/// `shard.keyindex` beside `db_path`.
pub fn key_index_path(db_path: &Path) -> PathBuf {
    db_path.with_file_name(layout::KEY_INDEX_FILE)
}

/// zstd level of key indexes: small files read on every cold open, so worth the best ratio.
const KEY_INDEX_ZSTD_LEVEL: i32 = 19;

/// Writes the key index of the database `db` (the bytes of `db_path`) beside it, bound to its
/// content hash and size: no ETag, so it stays valid wherever the file is uploaded. Returns its
/// size and xxh3-128; `None` (and no file) when the shard has no `kv` rows or a key too long to
/// lie whole on a page (readers then use the sidecar).
pub fn write_key_index(db_path: &Path, db: &[u8]) -> Result<Option<(u64, String)>> {
    let path = key_index_path(db_path);
    let Some(file) = encode_key_index(db_path, db)? else {
        // A stale index from an earlier write of this path must not survive.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(path.display())(e))
            }
            _ => {}
        }
        return Ok(None);
    };
    std::fs::write(&path, &file).map_err(Error::io(path.display()))?;
    Ok(Some((file.len() as u64, integrity::content_hash(&file))))
}

/// The key index file of `db` (the bytes of the database at `db_path`), or `None` (see
/// [`write_key_index`]).
pub fn encode_key_index(db_path: &Path, db: &[u8]) -> Result<Option<Vec<u8>>> {
    let conn = rusqlite::Connection::open_with_flags(
        db_path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(Error::sqlite(db_path.display()))?;
    let root: Option<u32> = conn
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = 'kv'",
            [],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .map_err(Error::sqlite(db_path.display()))?;
    drop(conn);
    let Some(root) = root else {
        return Ok(None);
    };
    let Some(content) = edgeshard_shared::key_index::analyze(db, root)? else {
        return Ok(None);
    };
    encode_key_index_content(&content, db).map(Some)
}

/// The key index file holding `content`, bound to the database `db` (its size and content
/// hash), compressed and checksummed.
pub fn encode_key_index_content(content: &KeyIndexContent, db: &[u8]) -> Result<Vec<u8>> {
    let body = content.encode_body();
    let frame = compress_at(&body, KEY_INDEX_ZSTD_LEVEL)
        .map_err(Error::io("the key index body (in memory)"))?;
    Ok(edgeshard_shared::key_index::assemble(
        db.len() as u64,
        content.page_size,
        &integrity::content_hash(db),
        body.len() as u64,
        &frame,
    )?)
}

/// The sidecar file of `content` bound to `tag` (the body compressed as one zstd frame with its
/// checksum) and the body's uncompressed size. `None` when the body exceeds what readers
/// accept.
pub fn encode_sidecar(content: &SidecarContent, tag: &str) -> Result<Option<(Vec<u8>, u64)>> {
    let body = content.encode_body();
    if body.len() > MAX_BODY {
        return Ok(None);
    }
    let frame = compress(&body).map_err(Error::io("the sidecar body (in memory)"))?;
    let file = assemble(content.page_size, tag, body.len() as u64, &frame)?;
    Ok(Some((file, body.len() as u64)))
}

/// One zstd frame with its content checksum.
fn compress(body: &[u8]) -> std::io::Result<Vec<u8>> {
    compress_at(body, ZSTD_LEVEL)
}

/// [`compress`] at `level`.
fn compress_at(body: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    let mut encoder = zstd::stream::Encoder::new(Vec::with_capacity(body.len() / 2), level)?;
    encoder.include_checksum(true)?;
    encoder.include_contentsize(true)?;
    encoder.set_pledged_src_size(Some(body.len() as u64))?;
    encoder.write_all(body)?;
    encoder.finish()
}

/// A sidecar re-tagged by [`bind_to_host`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundSidecar {
    /// The shard it belongs to.
    pub db_id: u32,
    /// The sidecar file rewritten.
    pub sidecar: PathBuf,
    /// The ETag the host reports for the shard, now the sidecar's tag.
    pub tag: String,
}

/// Binds each shard's sidecar under the local root `root` to the ETag the static host `host`
/// (serving a copy of that root) reports for the shard, so range readers use the sidecars there
/// (static hosts compute their own ETags). Refuses a host whose file differs in size from the
/// local one (it serves another snapshot) or reports no ETag. Each sidecar is replaced
/// atomically (temp file + rename).
pub fn bind_to_host(root: &str, host: &str) -> Result<Vec<BoundSidecar>> {
    let snap = edgeshard_native::Snapshot::open(root)?;
    let edgeshard_native::Root::Local(dir) = snap.root() else {
        return Err(Error::Usage(
            "--root must be the local copy of the snapshot".into(),
        ));
    };
    let remote = edgeshard_native::remote::RemoteRoot::parse(host)?;
    let mut bound = Vec::new();
    for (db_id, relative) in snap.shard_db_paths() {
        let db_path = dir.join(&relative);
        let local_size = std::fs::metadata(&db_path)
            .map_err(Error::io(db_path.display()))?
            .len();
        let (size, etag) = remote.head(&relative)?;
        if size != local_size {
            return Err(Error::Usage(format!(
                "{host}/{relative} is {size} bytes but the local shard is {local_size}: the host \
                 serves another snapshot"
            )));
        }
        let tag = etag.ok_or_else(|| {
            Error::Usage(format!(
                "{host}/{relative} has no ETag, so a sidecar cannot be bound"
            ))
        })?;
        let sidecar = db_path.with_file_name(layout::SIDECAR_FILE);
        let bytes = std::fs::read(&sidecar).map_err(Error::io(sidecar.display()))?;
        let retagged = edgeshard_shared::sidecar::retag(&bytes, &tag)?;
        let temp = sidecar.with_extension("sidecar.tmp");
        std::fs::write(&temp, &retagged).map_err(Error::io(temp.display()))?;
        std::fs::rename(&temp, &sidecar).map_err(Error::io(sidecar.display()))?;
        bound.push(BoundSidecar {
            db_id,
            sidecar,
            tag,
        });
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeshard_shared::sidecar::Sidecar;

    #[test]
    fn etag_is_quoted_lowercase_md5() {
        // RFC 1321 test vectors.
        assert_eq!(
            s3_single_part_etag(b""),
            "\"d41d8cd98f00b204e9800998ecf8427e\""
        );
        assert_eq!(
            s3_single_part_etag(b"abc"),
            "\"900150983cd24fb0d6963f7d28e17f72\""
        );
    }

    fn small_db(dir: &Path) -> PathBuf {
        let path = dir.join("shard.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA page_size=4096;
             CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < 2999)
             INSERT INTO kv SELECT CAST(printf('%08d', i) AS BLOB), randomblob(300) FROM n;
             INSERT INTO kv VALUES (x'ff', randomblob(20000));",
        )
        .unwrap();
        drop(conn);
        path
    }

    /// Every key (leaf and interior cells, an overflowing value) is placed on the page that
    /// holds it and read back; absent keys read as absent; a damaged or foreign index is refused.
    #[test]
    fn key_index_places_every_key_and_refuses_a_foreign_or_damaged_file() {
        use edgeshard_shared::key_index::{
            find_in_page, overflow_part, record_value, KeyIndex, PageAnswer,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = small_db(dir.path());
        let image = std::fs::read(&path).unwrap();
        let written = write_key_index(&path, &image).unwrap().unwrap();
        let bytes = std::fs::read(key_index_path(&path)).unwrap();
        assert_eq!(
            (bytes.len() as u64, integrity::content_hash(&bytes)),
            written
        );
        let index = KeyIndex::parse(&bytes).unwrap();
        let hash = integrity::content_hash(&image);
        index.check_bound(image.len() as u64, Some(&hash)).unwrap();
        assert!(index.check_bound(image.len() as u64, Some("00")).is_err());
        assert!(index
            .check_bound(image.len() as u64 + 1, Some(&hash))
            .is_err());
        assert!(index.check_bound(image.len() as u64, None).is_err());
        assert_eq!(index.first_key, b"00000000");
        assert_eq!(index.page1, image[..4096]);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let rows: Vec<(Vec<u8>, Vec<u8>)> = conn
            .prepare("SELECT k, v FROM kv")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let page = |n: u32| &image[(n as usize - 1) * 4096..n as usize * 4096];
        let mut interior_hits = 0;
        for (key, value) in &rows {
            let placed = index.place(key);
            let answer = find_in_page(&placed, page(placed.page), 4096, key).unwrap();
            let PageAnswer::Found(cell) = answer else {
                panic!("key {key:?} not found on page {}", placed.page);
            };
            interior_hits += usize::from(page(placed.page)[0] == 2);
            let mut record = cell.local.to_vec();
            let mut next = cell.overflow.unwrap_or(0);
            while next != 0 && (record.len() as u64) < cell.payload_len {
                let (after, part) = overflow_part(page(next), 4096).unwrap();
                let want = (cell.payload_len as usize - record.len()).min(part.len());
                record.extend_from_slice(&part[..want]);
                next = after;
            }
            assert_eq!(record_value(&record).unwrap(), value.as_slice());
        }
        assert!(interior_hits > 0, "no key sat on an interior page");
        for absent in [&b"0"[..], b"00000000x", b"00001500a", b"fe", b"\xff\x00"] {
            let placed = index.place(absent);
            let answer = find_in_page(&placed, page(placed.page), 4096, absent).unwrap();
            assert_eq!(answer, PageAnswer::Absent, "{absent:?}");
        }
        // A page the index does not describe is an error, not "absent".
        let placed = index.place(b"00001500");
        let wrong = index.place(b"00000010").page;
        assert_ne!(placed.page, wrong);
        assert!(find_in_page(&placed, page(wrong), 4096, b"00001500").is_err());
        // Any flipped byte, or a cut, is refused.
        for at in [0, 5, 20, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(KeyIndex::parse(&bad).is_err(), "flip at {at}");
        }
        assert!(KeyIndex::parse(&bytes[..bytes.len() - 9]).is_err());
    }

    #[test]
    fn writes_a_parsable_sidecar_bound_to_the_tag() {
        let dir = tempfile::tempdir().unwrap();
        let db = small_db(dir.path());
        let stats = write_sidecar(&db, "\"etag-x\"").unwrap().unwrap();
        let bytes = std::fs::read(sidecar_path(&db)).unwrap();
        assert_eq!(bytes.len() as u64, stats.bytes);
        let sidecar = Sidecar::parse(&bytes).unwrap();
        assert_eq!(sidecar.tag, "\"etag-x\"");
        assert_eq!(
            sidecar.content,
            analyze(&std::fs::read(&db).unwrap()).unwrap()
        );
        assert_eq!(stats.chains, 1);
        assert!(stats.pages > 2);

        let local = write_local_sidecar(&db).unwrap().unwrap();
        assert_eq!(local.tag, s3_single_part_etag(&std::fs::read(&db).unwrap()));
    }

    #[test]
    fn reserved_bytes_mean_no_sidecar_and_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = small_db(dir.path());
        // Header byte 20: bytes reserved per page by another tool (a checksum or cipher VFS).
        let mut bytes = std::fs::read(&db).unwrap();
        bytes[20] = 32;
        std::fs::write(&db, bytes).unwrap();
        assert_eq!(write_sidecar(&db, "\"t\"").unwrap(), None);
        assert!(!sidecar_path(&db).exists());
    }

    #[test]
    fn a_corrupt_database_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("shard.db");
        std::fs::write(&db, b"not a database at all").unwrap();
        assert!(write_sidecar(&db, "\"t\"").is_err());
        assert!(!sidecar_path(&db).exists());
    }
}
