//! Key routing, byte-exact with shardyfusion:
//! `shard = xxh3_64(canonical_bytes(key), seed = 0) % num_dbs`.

use crate::error::{Error, Result};
use crate::key::Key;
use xxhash_rust::xxh3::xxh3_64;

/// The bytes routing hashes. Integers are 8 bytes two's complement **little-endian**, which is not
/// the stored form (u64be stores big-endian); strings are UTF-8; bytes are as is.
pub fn canonical_bytes(key: &Key) -> Vec<u8> {
    match key {
        Key::Int(i) => i.to_le_bytes().to_vec(),
        Key::Str(s) => s.as_bytes().to_vec(),
        Key::Bytes(b) => b.clone(),
    }
}

/// The routing digest (`shard_hash` in CEL expressions).
pub fn digest(key: &Key) -> u64 {
    xxh3_64(&canonical_bytes(key))
}

/// The shard slot a key belongs to among `num_dbs` slots.
pub fn shard_for_key(key: &Key, num_dbs: u32) -> Result<u32> {
    if num_dbs == 0 {
        return Err(Error::InvalidArgument("num_dbs must be at least 1".into()));
    }
    Ok((digest(key) % num_dbs as u64) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The golden table of the snapshot format spec, section 4.
    #[test]
    fn golden_table() {
        let rows: [(Key, u64, [u32; 5]); 11] = [
            (Key::Int(0), 0xc77b3abb6f87acd9, [2, 1, 1, 7, 9]),
            (Key::Int(1), 0x2fbc593564db792e, [2, 2, 6, 8, 14]),
            (Key::Int(-1), 0x5111c7e47d784413, [2, 3, 3, 7, 3]),
            (Key::Int(42), 0xd5a6f8c838df27c8, [1, 0, 0, 0, 8]),
            (Key::Int(i64::MAX), 0xa233cf376558df46, [0, 2, 6, 2, 6]),
            (Key::Int(i64::MIN), 0x828f2476789a0e5f, [0, 3, 7, 5, 15]),
            (Key::Str(String::new()), 0x2d06800538d394c2, [1, 2, 2, 8, 2]),
            (Key::Str("a".into()), 0xe6c632b61e964e1f, [1, 3, 7, 9, 15]),
            (
                Key::Str("user-1".into()),
                0x7c7615c11438e5c9,
                [2, 1, 1, 7, 9],
            ),
            (Key::Bytes(vec![0]), 0xc44bdff4074eecdb, [0, 3, 3, 3, 11]),
            (
                Key::Bytes(vec![1, 2, 3]),
                0xebce9b7632ae733b,
                [2, 3, 3, 7, 11],
            ),
        ];
        for (key, want_digest, want_shards) in rows {
            assert_eq!(digest(&key), want_digest, "digest of {key}");
            for (num_dbs, want) in [3, 4, 8, 10, 16].into_iter().zip(want_shards) {
                assert_eq!(
                    shard_for_key(&key, num_dbs).unwrap(),
                    want,
                    "{key} % {num_dbs}"
                );
            }
        }
    }

    #[test]
    fn integers_zero_to_nine_over_three_shards() {
        let shards: Vec<u32> = (0..10)
            .map(|i| shard_for_key(&Key::Int(i), 3).unwrap())
            .collect();
        assert_eq!(shards, [2, 2, 1, 1, 0, 2, 0, 2, 0, 0]);
    }

    #[test]
    fn zero_shards_is_an_error() {
        assert!(shard_for_key(&Key::Int(1), 0).is_err());
    }
}
