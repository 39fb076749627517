//! JSON text exactly as shardyfusion (Python's `json.dumps(..., sort_keys=True)`) writes it, so
//! objects edgeshard writes are byte-identical to the ones the other side writes.
//!
//! Keys are sorted by sorting explicitly, never by relying on `serde_json::Map` order (a dependency
//! enabling serde_json's `preserve_order` feature would otherwise change our bytes silently).

use serde_json::Value;

/// Separators between items and between a key and its value.
#[derive(Clone, Copy)]
pub enum Style {
    /// `json.dumps(v, sort_keys=True)`: `", "` and `": "`. Used inside the manifest.
    Python,
    /// `json.dumps(v, sort_keys=True, separators=(",", ":"))`. Used for `_CURRENT`.
    Compact,
}

/// Serialise with sorted keys and ASCII-only output (Python's default `ensure_ascii=True`).
pub fn to_string_sorted(value: &Value, style: Style) -> String {
    let mut out = String::new();
    write_value(value, style, &mut out);
    out
}

fn write_value(value: &Value, style: Style, out: &mut String) {
    let (item_sep, key_sep) = match style {
        Style::Python => (", ", ": "),
        Style::Compact => (",", ":"),
    };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                write_value(item, style, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                write_string(key, out);
                out.push_str(key_sep);
                write_value(item, style, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                // Python escapes every non-ASCII code point, astral ones as a surrogate pair.
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_style_matches_json_dumps_sort_keys() {
        let v = json!({"b": [1, 2], "a": {"y": null, "x": "é"}});
        assert_eq!(
            to_string_sorted(&v, Style::Python),
            r#"{"a": {"x": "\u00e9", "y": null}, "b": [1, 2]}"#
        );
        assert_eq!(
            to_string_sorted(&v, Style::Compact),
            r#"{"a":{"x":"\u00e9","y":null},"b":[1,2]}"#
        );
    }

    #[test]
    fn astral_characters_become_surrogate_pairs() {
        assert_eq!(
            to_string_sorted(&json!("😀"), Style::Compact),
            r#""\ud83d\ude00""#
        );
    }

    #[test]
    fn fixture_custom_is_reproduced_byte_for_byte() {
        let text = r#"{"cel_columns": null, "cel_expr": null, "hash_algorithm": "xxh3_64", "routing_values": null, "strategy": "hash"}"#;
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(to_string_sorted(&v, Style::Python), text);
    }
}
