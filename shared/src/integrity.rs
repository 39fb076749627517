//! Whole-file integrity of shard files: what a reader checks before it trusts (or caches) the
//! bytes of a `shard.db`.
//!
//! The format's `checkpoint_id` is opaque (shardyfusion writes a random id), so it cannot be
//! checked. edgeshard records the xxh3-128 of each SQLite shard file in the shard row's
//! `writer_info` under [`CONTENT_HASH_KEY`], an extension other readers ignore. `db_bytes` is
//! checked whenever it is non-zero (shardyfusion writes 0 when it does not know the size).
//!
//! A range reader never holds the whole file, so it checks every *page* instead. edgeshard's
//! SQLite shards reserve [`PAGE_CHECKSUM_BYTES`] at the end of every page (header byte 20, part
//! of SQLite's file format, so plain SQLite and shardyfusion read the file unchanged) and store
//! there a seeded xxh3-64 of the rest of the page ([`page_checksum`]). The seed, recorded in
//! the shard row's `writer_info` under [`PAGE_SEED_KEY`], differs per shard and the page number
//! is mixed in, so a flipped bit, a page moved within a file, and a whole file of another shard
//! or another build all fail the check ([`PageVerifier`]). The unused gap of every B-tree page
//! is zeroed before the checksums are computed ([`seal_pages`]), so a gap-stripped sidecar page
//! rebuilds to exactly the bytes that were checksummed.

use crate::manifest::ShardEntry;
use crate::{Error, Result};

/// `writer_info` key holding the xxh3-128 of the shard's `shard.db`, 32 lowercase hex digits.
pub const CONTENT_HASH_KEY: &str = "content_xxh3_128";

/// `writer_info.writer` of the rows edgeshard's builder writes starts with this.
pub const WRITER_PREFIX: &str = "edgeshard/";

/// `writer_info` key holding the seed of the shard's page checksums, 16 lowercase hex digits.
/// Present only when every page of the shard carries a checksum.
pub const PAGE_SEED_KEY: &str = "page_checksum_seed";

/// Bytes each page reserves for its checksum (SQLite header byte 20).
pub const PAGE_CHECKSUM_BYTES: u8 = 8;

/// The checksum of page `number` (1-based) of shard `db_id`: xxh3-64 of all but its last
/// [`PAGE_CHECKSUM_BYTES`], seeded with the shard's seed, its `db_id` and the page number (so a
/// manifest row moved to another `db_id`, seed and all, fails too).
pub fn page_checksum(seed: u64, db_id: u32, number: u32, page: &[u8]) -> u64 {
    let content = &page[..page.len().saturating_sub(PAGE_CHECKSUM_BYTES as usize)];
    // Multiplying by odd constants spreads consecutive numbers over the whole seed.
    let page_seed = seed
        ^ (number as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (db_id as u64)
            .wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
            .rotate_left(32);
    xxhash_rust::xxh3::xxh3_64_with_seed(content, page_seed)
}

/// The part of the page-checksum seed that names shard `db_id` of run `run_id`
/// ([`seal_pages`] mixes in the shard's content).
pub fn page_seed(run_id: &str, db_id: u32) -> u64 {
    xxhash_rust::xxh3::xxh3_64(format!("edgeshard-pages/{run_id}/{db_id}").as_bytes())
}

/// Prepares a finished SQLite image (shard `db_id`) whose pages reserve [`PAGE_CHECKSUM_BYTES`]
/// for reading with page checks: zeroes the unused gap of every B-tree page (SQLite never reads it; a
/// gap-stripped sidecar page then rebuilds byte for byte) and writes every page's checksum into
/// its reserved bytes. Returns the seed of the checksums, which the writer records under
/// [`PAGE_SEED_KEY`].
///
/// The seed is `shard_seed` (see [`page_seed`]) mixed with a hash of the image itself (reserved
/// bytes zeroed): deterministic, so a rebuild of the same data writes the same bytes, yet
/// different for two builds that share a run id but not their data, so the pages of one never
/// pass as the other's.
pub fn seal_pages(db: &mut [u8], shard_seed: u64, db_id: u32) -> Result<u64> {
    let page_size = image_page_size(db)?;
    if db[20] != PAGE_CHECKSUM_BYTES {
        return Err(Error::InvalidArgument(format!(
            "the database reserves {} bytes per page, page checksums need {PAGE_CHECKSUM_BYTES}",
            db[20]
        )));
    }
    for number in crate::sidecar::btree_pages(db)? {
        let start = (number as usize - 1) * page_size;
        let page = &mut db[start..start + page_size];
        if let Some(gap) = crate::sidecar::unused_gap(number, page) {
            page[gap].fill(0);
        }
    }
    let at = page_size - PAGE_CHECKSUM_BYTES as usize;
    for page in db.chunks_mut(page_size) {
        page[at..].fill(0);
    }
    let seed = xxhash_rust::xxh3::xxh3_64_with_seed(db, shard_seed);
    for (i, page) in db.chunks_mut(page_size).enumerate() {
        let sum = page_checksum(seed, db_id, i as u32 + 1, page);
        page[at..].copy_from_slice(&sum.to_le_bytes());
    }
    Ok(seed)
}

fn image_page_size(db: &[u8]) -> Result<usize> {
    if db.len() < 100 || &db[..16] != b"SQLite format 3\0" {
        return Err(Error::InvalidArgument("not a SQLite database image".into()));
    }
    let page_size = match u16::from_be_bytes([db[16], db[17]]) {
        1 => 65536,
        v => v as usize,
    };
    if page_size < 512 || !page_size.is_power_of_two() || !db.len().is_multiple_of(page_size) {
        return Err(Error::InvalidArgument(format!(
            "page size {page_size} does not fit a {}-byte image",
            db.len()
        )));
    }
    Ok(page_size)
}

/// Checks pages of one shard against their checksums, for readers that fetch pages one by one.
/// Built from the shard's manifest row ([`ShardEntry::page_verifier`]), so a file whose pages
/// carry no checksums (or other ones) cannot pass for this shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageVerifier {
    db_id: u32,
    seed: u64,
}

impl PageVerifier {
    /// A verifier of shard `db_id`'s pages with its page-checksum seed (from the manifest row's
    /// `writer_info`; see [`ShardEntry::page_verifier`], the usual way to get one).
    pub fn new(db_id: u32, seed: u64) -> Self {
        Self { db_id, seed }
    }

    /// The shard whose pages this verifier checks.
    pub fn db_id(&self) -> u32 {
        self.db_id
    }

    /// Checks the database header (the first 100 bytes of page 1, before its page size is
    /// trusted): pages must reserve exactly [`PAGE_CHECKSUM_BYTES`].
    pub fn check_header(&self, header: &[u8]) -> Result<()> {
        match header.get(20) {
            Some(&PAGE_CHECKSUM_BYTES) => Ok(()),
            Some(reserved) => Err(Error::Integrity(format!(
                "shard {}: the manifest records page checksums but the file reserves {reserved} \
                 bytes per page: not the file this manifest was built with",
                self.db_id
            ))),
            None => Err(Error::Integrity(format!(
                "shard {}: the database header is truncated",
                self.db_id
            ))),
        }
    }

    /// Checks one whole page (`number` is 1-based). Page 1's header is checked too.
    pub fn check_page(&self, number: u32, page: &[u8]) -> Result<()> {
        if number == 1 {
            self.check_header(page)?;
        }
        let at = page.len().saturating_sub(PAGE_CHECKSUM_BYTES as usize);
        let stored = page
            .get(at..)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes);
        if page.len() < 512 || stored != Some(page_checksum(self.seed, self.db_id, number, page)) {
            return Err(Error::Integrity(format!(
                "shard {}: page {number} fails its checksum: corrupted in storage or in \
                 transit, or not this shard's page (reading it again may help if the network \
                 corrupted it)",
                self.db_id
            )));
        }
        Ok(())
    }

    /// Checks consecutive whole pages starting at page `first` (a fetched block).
    pub fn check_block(&self, first: u32, block: &[u8], page_size: usize) -> Result<()> {
        if page_size == 0 || !block.len().is_multiple_of(page_size) {
            return Err(Error::Integrity(format!(
                "shard {}: a block of {} bytes from page {first} is not whole {page_size}-byte \
                 pages",
                self.db_id,
                block.len()
            )));
        }
        for (i, page) in block.chunks(page_size).enumerate() {
            self.check_page(first + i as u32, page)?;
        }
        Ok(())
    }
}

/// Incremental xxh3-128 of a file, printed as [`CONTENT_HASH_KEY`] records it.
#[derive(Default)]
pub struct ContentHasher(xxhash_rust::xxh3::Xxh3);

impl ContentHasher {
    /// An empty hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The hash of all bytes fed so far, as 32 lowercase hex digits (what [`content_hash`] gives
    /// for the same bytes at once).
    pub fn finish_hex(&self) -> String {
        format!("{:032x}", self.0.digest128())
    }
}

/// The xxh3-128 of `bytes`, as [`CONTENT_HASH_KEY`] records it.
pub fn content_hash(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

impl ShardEntry {
    /// Whether edgeshard's builder wrote this row (`writer_info.writer` = `edgeshard/...`): its
    /// `min_key`/`max_key` are then the shard's true first and last keys.
    pub fn written_by_edgeshard(&self) -> bool {
        self.writer_info
            .get("writer")
            .and_then(|v| v.as_str())
            .is_some_and(|w| w.starts_with(WRITER_PREFIX))
    }

    /// The recorded content hash of the shard file, if the writer recorded one.
    pub fn content_hash(&self) -> Option<&str> {
        self.writer_info
            .get(CONTENT_HASH_KEY)
            .and_then(|v| v.as_str())
    }

    /// The verifier of this shard's page checksums, when its writer recorded a seed; `Err` when
    /// the recorded seed is malformed (a reader must not silently skip the checks then).
    pub fn page_verifier(&self) -> Result<Option<PageVerifier>> {
        let Some(seed) = self.writer_info.get(PAGE_SEED_KEY) else {
            return Ok(None);
        };
        let seed = seed
            .as_str()
            .filter(|s| s.len() == 16)
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| {
                Error::InvalidManifest(format!(
                    "shard {}: writer_info.{PAGE_SEED_KEY} is {seed}, not 16 hex digits",
                    self.db_id
                ))
            })?;
        Ok(Some(PageVerifier::new(self.db_id, seed)))
    }

    /// Checks the size of the shard file against `db_bytes` (when the manifest knows it).
    pub fn check_size(&self, size: u64) -> Result<()> {
        if self.db_bytes != 0 && size != self.db_bytes {
            return Err(Error::Integrity(format!(
                "shard {} is {size} bytes, the manifest says {}: not the file this manifest \
                 was built with (replaced, truncated or from another build)",
                self.db_id, self.db_bytes
            )));
        }
        Ok(())
    }

    /// Checks a whole shard file's size and, when recorded, its content hash.
    pub fn check_content(&self, bytes: &[u8]) -> Result<()> {
        self.check_size(bytes.len() as u64)?;
        self.check_hash(|| content_hash(bytes))
    }

    /// Checks a content hash computed by the caller (lazily: only when one is recorded).
    pub fn check_hash(&self, actual: impl FnOnce() -> String) -> Result<()> {
        if let Some(expected) = self.content_hash() {
            let actual = actual();
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(Error::Integrity(format!(
                    "shard {} has content hash {actual}, the manifest records {expected}: the \
                     file is corrupt or not this build's",
                    self.db_id
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    fn entry(db_bytes: u64, hash: Option<&str>) -> ShardEntry {
        let mut writer_info = Map::new();
        if let Some(h) = hash {
            writer_info.insert(CONTENT_HASH_KEY.into(), Value::String(h.into()));
        }
        ShardEntry {
            db_id: 3,
            db_url: None,
            attempt: 0,
            row_count: 1,
            db_bytes,
            min_key: None,
            max_key: None,
            checkpoint_id: None,
            writer_info,
        }
    }

    #[test]
    fn content_is_checked_by_size_and_hash() {
        let bytes = b"SQLite format 3\0 and some pages".to_vec();
        let good = content_hash(&bytes);
        let mut hasher = ContentHasher::new();
        hasher.update(&bytes[..5]);
        hasher.update(&bytes[5..]);
        assert_eq!(hasher.finish_hex(), good);
        assert!(entry(bytes.len() as u64, Some(&good))
            .check_content(&bytes)
            .is_ok());
        // No hash recorded (shardyfusion): size only; db_bytes 0: nothing known.
        assert!(entry(bytes.len() as u64, None)
            .check_content(&bytes)
            .is_ok());
        assert!(entry(0, None).check_content(&bytes).is_ok());

        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        let err = entry(bytes.len() as u64, Some(&good))
            .check_content(&flipped)
            .unwrap_err();
        assert!(
            err.to_string().contains("shard 3 has content hash"),
            "{err}"
        );
        let err = entry(bytes.len() as u64 + 1, None)
            .check_content(&bytes)
            .unwrap_err();
        assert!(err.to_string().contains("the manifest says"), "{err}");
    }

    /// A real SQLite image with 8 reserved bytes per page: a WITHOUT ROWID table (interior
    /// pages with whole records), large values (overflow chains), deleted rows (gaps).
    fn reserved_image() -> Vec<u8> {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA page_size = 4096").unwrap();
        let mut reserve = PAGE_CHECKSUM_BYTES as std::ffi::c_int;
        conn.file_control(
            Some("main"),
            rusqlite::FileControl::ReserveBytes(&mut reserve),
        )
        .unwrap();
        conn.execute_batch("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
            .unwrap();
        for i in 0..20_000u32 {
            let len = if i % 97 == 0 {
                9000
            } else {
                40 + (i % 50) as usize
            };
            conn.execute(
                "INSERT INTO kv VALUES (?1, ?2)",
                rusqlite::params![i.to_be_bytes().to_vec(), vec![(i % 251) as u8; len]],
            )
            .unwrap();
        }
        conn.execute("DELETE FROM kv WHERE length(v) % 3 = 0", [])
            .unwrap();
        let image = conn.serialize("main").unwrap().to_vec();
        assert_eq!(image[20], PAGE_CHECKSUM_BYTES, "SQLite kept the reserve");
        image
    }

    #[test]
    fn sealed_pages_verify_and_any_damage_is_caught() {
        let mut image = reserved_image();
        let unsealed = image.clone();
        let seed = seal_pages(&mut image, page_seed("run-a", 3), 3).unwrap();
        let verifier = PageVerifier::new(3, seed);
        // Deterministic: the same image and shard seal the same way.
        let mut again = unsealed.clone();
        assert_eq!(
            seal_pages(&mut again, page_seed("run-a", 3), 3).unwrap(),
            seed
        );
        assert_eq!(again, image);
        // Another build with the same run id but other data: its pages fail this shard's
        // checks (its seed differs), though run id and db_id are the same.
        let mut other = unsealed;
        let last_page = other.len() - 4096;
        other[last_page + 2000] ^= 1;
        let other_seed = seal_pages(&mut other, page_seed("run-a", 3), 3).unwrap();
        assert_ne!(other_seed, seed);
        assert!(verifier.check_page(2, &other[4096..8192]).is_err());
        verifier.check_block(1, &image, 4096).unwrap();

        // SQLite reads the sealed image as before: zeroed gaps and checksums are invisible.
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.deserialize_read_exact("main", &image[..], image.len(), true)
            .unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
            .unwrap();
        assert!(rows > 10_000, "{rows}");

        // One flipped bit anywhere in any page fails that page.
        for (number, offset) in [(1, 20), (2, 0), (2, 4095), (5, 1234), (9, 2048)] {
            let mut page = image[(number - 1) * 4096..number * 4096].to_vec();
            page[offset] ^= 0x10;
            let err = verifier.check_page(number as u32, &page).unwrap_err();
            assert!(
                err.to_string().contains("checksum") || err.to_string().contains("reserves"),
                "{err}"
            );
        }
        // A page read in another's place, another shard's seed, a short page: all fail.
        assert!(verifier.check_page(4, &image[4096..8192]).is_err());
        assert!(PageVerifier::new(3, seed ^ 1)
            .check_page(2, &image[4096..8192])
            .is_err());
        // The same seed under another db_id (a manifest row moved, seed and all): fails.
        assert!(PageVerifier::new(4, seed)
            .check_page(2, &image[4096..8192])
            .is_err());
        assert!(verifier.check_block(1, &image[..4000], 4096).is_err());
        // A file without reserved bytes cannot pass for a checksummed shard.
        let mut plain = image.clone();
        plain[20] = 0;
        assert!(verifier.check_header(&plain).is_err());
    }

    #[test]
    fn sealed_images_have_exact_sidecar_pages() {
        let mut image = reserved_image();
        let seed = seal_pages(&mut image, 7, 0).unwrap();
        let content = crate::sidecar::analyze(&image).unwrap();
        assert!(content.pages.len() > 3);
        assert_eq!(content.usable_size(), 4096 - 8);
        for (number, page) in &content.pages {
            let start = (*number as usize - 1) * 4096;
            assert_eq!(&image[start..start + 4096], &page[..], "page {number}");
            PageVerifier::new(0, seed)
                .check_page(*number, page)
                .unwrap();
        }
    }

    #[test]
    fn page_seeds_come_from_the_manifest_row() {
        let mut row = entry(0, None);
        assert_eq!(row.page_verifier().unwrap(), None);
        row.writer_info.insert(
            PAGE_SEED_KEY.into(),
            Value::String("00000000000000ff".into()),
        );
        assert_eq!(
            row.page_verifier().unwrap(),
            Some(PageVerifier::new(3, 255))
        );
        row.writer_info
            .insert(PAGE_SEED_KEY.into(), Value::String("xyz".into()));
        assert!(row.page_verifier().is_err());
    }
}
