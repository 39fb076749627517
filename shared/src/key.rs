//! Keys as users and routing see them, and how they are stored in a shard's `kv` table.

use crate::error::{Error, Result};
use serde_json::Value;
use std::fmt;

/// A record key before encoding. Routing hashes this form (see [`crate::routing`]), not the
/// stored bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// An integer key (the `u64be` and `u32be` encodings; must be in their range).
    Int(i64),
    /// A text key (the `utf8` encoding).
    Str(String),
    /// A byte-string key (the `raw` encoding, which also takes a [`Key::Str`] as its UTF-8 bytes).
    Bytes(Vec<u8>),
}

impl Key {
    /// The JSON shape shardyfusion records for `min_key`/`max_key` and CLI output uses.
    /// Bytes that are not UTF-8 have no JSON form and give `None`.
    pub fn to_json(&self) -> Option<Value> {
        match self {
            Key::Int(i) => Some(Value::from(*i)),
            Key::Str(s) => Some(Value::from(s.as_str())),
            Key::Bytes(b) => std::str::from_utf8(b).ok().map(Value::from),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(i) => write!(f, "{i}"),
            Key::Str(s) => write!(f, "{s:?}"),
            Key::Bytes(b) => {
                f.write_str("0x")?;
                b.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
            }
        }
    }
}

/// How a key is stored in the `kv` table (`build_meta.key_encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEncoding {
    /// Non-negative integer, 8 bytes big-endian (so byte order is numeric order).
    U64Be,
    /// Integer 0..=u32::MAX, 4 bytes big-endian.
    U32Be,
    /// String, UTF-8 bytes.
    Utf8,
    /// Bytes as given.
    Raw,
}

impl KeyEncoding {
    /// Every encoding, in the order error messages list them.
    pub const ALL: [KeyEncoding; 4] = [Self::U64Be, Self::U32Be, Self::Utf8, Self::Raw];

    /// The name recorded in `build_meta.key_encoding` and taken by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::U64Be => "u64be",
            Self::U32Be => "u32be",
            Self::Utf8 => "utf8",
            Self::Raw => "raw",
        }
    }

    /// The encoding named `name` (exactly as [`KeyEncoding::as_str`] writes it).
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == name)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown key encoding {name:?} (expected u64be, u32be, utf8 or raw)"
                ))
            })
    }

    /// Whether keys are integers ([`Key::Int`]) under this encoding.
    pub fn is_integer(self) -> bool {
        matches!(self, Self::U64Be | Self::U32Be)
    }

    /// The stored bytes for `key`, or an error saying why the key does not fit this encoding.
    pub fn encode(self, key: &Key) -> Result<Vec<u8>> {
        match (self, key) {
            (Self::U64Be, Key::Int(i)) if *i >= 0 => Ok((*i as u64).to_be_bytes().to_vec()),
            (Self::U32Be, Key::Int(i)) if (0..=u32::MAX as i64).contains(i) => {
                Ok((*i as u32).to_be_bytes().to_vec())
            }
            (Self::Utf8, Key::Str(s)) => Ok(s.as_bytes().to_vec()),
            (Self::Raw, Key::Bytes(b)) => Ok(b.clone()),
            // A string given for a raw snapshot stands for its UTF-8 bytes; it also routes the
            // same way, since routing hashes strings as their UTF-8 bytes.
            (Self::Raw, Key::Str(s)) => Ok(s.as_bytes().to_vec()),
            (enc, key) => Err(Error::InvalidKey(format!(
                "key {key} does not fit key encoding {}{}",
                enc.as_str(),
                match enc {
                    Self::U64Be => " (needs an integer 0..=9223372036854775807)",
                    Self::U32Be => " (needs an integer 0..=4294967295)",
                    Self::Utf8 => " (needs a string)",
                    Self::Raw => " (needs bytes or a string)",
                }
            ))),
        }
    }

    /// The key a stored byte string stands for.
    pub fn decode(self, bytes: &[u8]) -> Result<Key> {
        match self {
            Self::U64Be => {
                let arr: [u8; 8] = bytes.try_into().map_err(|_| {
                    Error::InvalidKey(format!("u64be key must be 8 bytes, got {}", bytes.len()))
                })?;
                let v = u64::from_be_bytes(arr);
                i64::try_from(v)
                    .map(Key::Int)
                    .map_err(|_| Error::InvalidKey(format!("u64be key {v} exceeds i64")))
            }
            Self::U32Be => {
                let arr: [u8; 4] = bytes.try_into().map_err(|_| {
                    Error::InvalidKey(format!("u32be key must be 4 bytes, got {}", bytes.len()))
                })?;
                Ok(Key::Int(u32::from_be_bytes(arr) as i64))
            }
            Self::Utf8 => String::from_utf8(bytes.to_vec())
                .map(Key::Str)
                .map_err(|_| Error::InvalidKey("utf8 key is not valid UTF-8".into())),
            Self::Raw => Ok(Key::Bytes(bytes.to_vec())),
        }
    }

    /// A key typed by a person (CLI argument, stdin line): integers for integer encodings,
    /// the text itself otherwise.
    pub fn parse_key_text(self, text: &str) -> Result<Key> {
        if self.is_integer() {
            let i: i64 = text.trim().parse().map_err(|_| {
                Error::InvalidKey(format!(
                    "{text:?} is not an integer, and this snapshot's keys are {}",
                    self.as_str()
                ))
            })?;
            self.encode(&Key::Int(i))?;
            Ok(Key::Int(i))
        } else if self == Self::Raw {
            Ok(Key::Bytes(text.as_bytes().to_vec()))
        } else {
            Ok(Key::Str(text.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64be_is_big_endian_and_round_trips() {
        let bytes = KeyEncoding::U64Be.encode(&Key::Int(42)).unwrap();
        assert_eq!(bytes, [0, 0, 0, 0, 0, 0, 0, 0x2a]);
        assert_eq!(KeyEncoding::U64Be.decode(&bytes).unwrap(), Key::Int(42));
    }

    #[test]
    fn u32be_round_trips_and_bounds() {
        let bytes = KeyEncoding::U32Be.encode(&Key::Int(0x01020304)).unwrap();
        assert_eq!(bytes, [1, 2, 3, 4]);
        assert_eq!(
            KeyEncoding::U32Be.decode(&bytes).unwrap(),
            Key::Int(0x01020304)
        );
        assert!(KeyEncoding::U32Be.encode(&Key::Int(1 << 32)).is_err());
        assert!(KeyEncoding::U32Be.encode(&Key::Int(-1)).is_err());
    }

    #[test]
    fn integer_encodings_refuse_negative_and_strings() {
        assert!(KeyEncoding::U64Be.encode(&Key::Int(-1)).is_err());
        let err = KeyEncoding::U64Be
            .encode(&Key::Str("a".into()))
            .unwrap_err();
        assert!(
            err.to_string().contains("does not fit key encoding u64be"),
            "{err}"
        );
    }

    #[test]
    fn utf8_and_raw() {
        assert_eq!(
            KeyEncoding::Utf8.encode(&Key::Str("é".into())).unwrap(),
            "é".as_bytes()
        );
        assert!(KeyEncoding::Utf8.encode(&Key::Int(1)).is_err());
        assert!(KeyEncoding::Utf8.decode(&[0xff]).is_err());
        assert_eq!(
            KeyEncoding::Raw.encode(&Key::Bytes(vec![0, 1])).unwrap(),
            [0, 1]
        );
        assert_eq!(
            KeyEncoding::Raw.decode(&[0, 1]).unwrap(),
            Key::Bytes(vec![0, 1])
        );
    }

    #[test]
    fn decode_rejects_wrong_widths() {
        assert!(KeyEncoding::U64Be.decode(&[1, 2, 3]).is_err());
        assert!(KeyEncoding::U32Be.decode(&[1, 2, 3, 4, 5]).is_err());
    }

    #[test]
    fn key_text_follows_encoding() {
        assert_eq!(KeyEncoding::U64Be.parse_key_text("7").unwrap(), Key::Int(7));
        assert!(KeyEncoding::U64Be.parse_key_text("seven").is_err());
        assert_eq!(
            KeyEncoding::Utf8.parse_key_text("7").unwrap(),
            Key::Str("7".into())
        );
    }
}
