//! `_CURRENT`: the one mutable object of a snapshot root, pointing at the live manifest.

use crate::error::{Error, Result};
use crate::json::{to_string_sorted, Style};
use serde_json::{json, Value};

/// `format_version` of the `_CURRENT` JSON. A pointer with any other version is refused.
pub const FORMAT_VERSION: i64 = 1;
/// `manifest_content_type` in `_CURRENT`: manifests are SQLite databases. A pointer naming
/// another content type is refused.
pub const MANIFEST_CONTENT_TYPE: &str = "application/x-sqlite3";
/// Content type `_CURRENT` is stored with.
pub const CONTENT_TYPE: &str = "application/json";

/// A parsed `_CURRENT`: which manifest is live. Publishing a snapshot replaces the whole
/// object; readers follow [`CurrentPointer::manifest_ref`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentPointer {
    /// Full URL of the manifest object.
    pub manifest_ref: String,
    /// Run id of the manifest `manifest_ref` names.
    pub run_id: String,
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`
    pub updated_at: String,
}

impl CurrentPointer {
    /// The exact bytes shardyfusion writes: compact JSON, keys sorted, ASCII only.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let value = json!({
            "format_version": FORMAT_VERSION,
            "manifest_content_type": MANIFEST_CONTENT_TYPE,
            "manifest_ref": self.manifest_ref,
            "run_id": self.run_id,
            "updated_at": self.updated_at,
        });
        to_string_sorted(&value, Style::Compact).into_bytes()
    }

    /// Reads a pointer, ignoring keys it does not know (newer writers may add some).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::InvalidCurrent(format!("not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| Error::InvalidCurrent("not a JSON object".into()))?;
        match obj.get("format_version").and_then(Value::as_i64) {
            Some(FORMAT_VERSION) => {}
            other => {
                return Err(Error::InvalidCurrent(format!(
                    "format_version is {other:?}, expected {FORMAT_VERSION}"
                )))
            }
        }
        if let Some(ct) = obj.get("manifest_content_type").and_then(Value::as_str) {
            if ct != MANIFEST_CONTENT_TYPE {
                return Err(Error::InvalidCurrent(format!(
                    "manifest_content_type {ct:?} is not {MANIFEST_CONTENT_TYPE:?}"
                )));
            }
        }
        let text = |name: &str| -> Result<String> {
            obj.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| Error::InvalidCurrent(format!("missing string field {name:?}")))
        };
        Ok(Self {
            manifest_ref: text("manifest_ref")?,
            run_id: text("run_id")?,
            updated_at: obj
                .get("updated_at")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_exact_bytes() {
        let p = CurrentPointer {
            manifest_ref: "s3://b/p/manifests/2026-03-14T10:30:00.123456Z_run_id=r1/manifest"
                .into(),
            run_id: "r1".into(),
            updated_at: "2026-03-14T10:30:00.123456Z".into(),
        };
        assert_eq!(
            String::from_utf8(p.to_json_bytes()).unwrap(),
            r#"{"format_version":1,"manifest_content_type":"application/x-sqlite3","manifest_ref":"s3://b/p/manifests/2026-03-14T10:30:00.123456Z_run_id=r1/manifest","run_id":"r1","updated_at":"2026-03-14T10:30:00.123456Z"}"#
        );
        assert_eq!(CurrentPointer::parse(&p.to_json_bytes()).unwrap(), p);
    }

    #[test]
    fn tolerates_unknown_keys_and_spacing() {
        let text = br#"{ "run_id": "r", "manifest_ref": "file:///m", "format_version": 1, "future": [1] }"#;
        let p = CurrentPointer::parse(text).unwrap();
        assert_eq!(p.manifest_ref, "file:///m");
        assert_eq!(p.updated_at, "");
    }

    #[test]
    fn rejects_bad_pointers() {
        assert!(CurrentPointer::parse(b"not json").is_err());
        assert!(
            CurrentPointer::parse(br#"{"format_version":2,"manifest_ref":"x","run_id":"r"}"#)
                .is_err()
        );
        assert!(CurrentPointer::parse(br#"{"format_version":1,"run_id":"r"}"#).is_err());
        assert!(CurrentPointer::parse(
            br#"{"format_version":1,"manifest_ref":"x","run_id":"r","manifest_content_type":"text/plain"}"#
        )
        .is_err());
    }
}
