//! Whole-file integrity of shard files: what a reader checks before it trusts (or caches) the
//! bytes of a `shard.db`.
//!
//! The format's `checkpoint_id` is opaque (shardyfusion writes a random id), so it cannot be
//! checked. edgeshard records the xxh3-128 of each SQLite shard file in the shard row's
//! `writer_info` under [`CONTENT_HASH_KEY`], an extension other readers ignore. `db_bytes` is
//! checked whenever it is non-zero (shardyfusion writes 0 when it does not know the size).

use crate::manifest::ShardEntry;
use crate::{Error, Result};

/// `writer_info` key holding the xxh3-128 of the shard's `shard.db`, 32 lowercase hex digits.
pub const CONTENT_HASH_KEY: &str = "content_xxh3_128";

/// `writer_info.writer` of the rows edgeshard's builder writes starts with this.
pub const WRITER_PREFIX: &str = "edgeshard/";

/// Incremental xxh3-128 of a file, printed as [`CONTENT_HASH_KEY`] records it.
#[derive(Default)]
pub struct ContentHasher(xxhash_rust::xxh3::Xxh3);

impl ContentHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

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
}
