//! Metadata filters on vector payloads (the JSON object stored with each vector).
//!
//! Syntax of one condition (several conditions are ANDed):
//!
//! | condition             | matches a payload whose field...                      |
//! |-----------------------|-------------------------------------------------------|
//! | `FIELD=VALUE`         | equals VALUE                                          |
//! | `FIELD=V1\|V2\|V3`    | equals one of the values (`in`)                       |
//! | `FIELD!=VALUE`        | is absent or differs from VALUE (`!=V1\|V2`: from all) |
//!
//! `FIELD` is a top-level payload key, or a dotted path into nested objects (`meta.lang`).
//! `VALUE` is read as JSON when it parses as JSON (`3`, `2.5`, `true`, `null`, `"quoted text"`),
//! otherwise as plain text: `section=web` and `section="web"` are the same. Numbers compare by
//! value (`3` equals `3.0`). A vector without a payload has no fields.

use crate::error::{Error, Result};
use serde_json::Value;

/// A parsed payload filter: one or more conditions (syntax in the module documentation), all of
/// which must hold. Built by [`Filter::parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    path: Vec<String>,
    negated: bool,
    /// Any of these (equality) / none of these (negated).
    values: Vec<Value>,
}

impl Filter {
    /// Parses conditions (each as in the module documentation); all must hold.
    pub fn parse<S: AsRef<str>>(conditions: &[S]) -> Result<Self> {
        let conditions = conditions
            .iter()
            .map(|c| Condition::parse(c.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        if conditions.is_empty() {
            return Err(Error::InvalidArgument("a filter needs a condition".into()));
        }
        Ok(Self { conditions })
    }

    /// Whether a vector with this payload passes.
    pub fn matches(&self, payload: Option<&Value>) -> bool {
        self.conditions.iter().all(|c| c.matches(payload))
    }
}

/// Keeps only `fields` of a JSON object payload (a search's projection); `None` when none of
/// them is present or the payload is not an object.
pub fn project(payload: Option<Value>, fields: &[String]) -> Option<Value> {
    let Value::Object(map) = payload? else {
        return None;
    };
    let kept: serde_json::Map<String, Value> = map
        .into_iter()
        .filter(|(key, _)| fields.contains(key))
        .collect();
    (!kept.is_empty()).then_some(Value::Object(kept))
}

/// The type of a column that holds one top-level payload field, for pushing a [`Filter`] down
/// into a backend that filters in SQL (LanceDB). A column is NULL where the field is absent or
/// JSON `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Every value is a JSON string.
    Text,
    /// Every number as a float64: numbers compare by value, as [`Filter::matches`] does.
    Number,
    /// Every value is a JSON boolean.
    Bool,
}

impl ColumnKind {
    /// The kind every present, non-null value of a field has, or `None` when they differ or
    /// one is an array or object (such a field gets no column and is post-filtered).
    pub fn of_values<'a>(values: impl IntoIterator<Item = &'a Value>) -> Option<Option<Self>> {
        let mut kind = None;
        for value in values {
            let this = match value {
                Value::Null => continue,
                Value::String(_) => Self::Text,
                Value::Number(_) => Self::Number,
                Value::Bool(_) => Self::Bool,
                Value::Array(_) | Value::Object(_) => return None,
            };
            match kind {
                None => kind = Some(this),
                Some(k) if k == this => {}
                Some(_) => return None,
            }
        }
        Some(kind)
    }
}

/// Whether `field` may name a filter column: lower-case SQL identifier characters only, so the
/// column needs no quoting and no identifier case folding can change it.
pub fn is_plain_field_name(field: &str) -> bool {
    let mut chars = field.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Filter {
    /// The same filter as an SQL predicate over payload columns, when it can be stated there
    /// exactly: every condition names a top-level field for which `column` gives a column name
    /// and kind, and no value is `null` (a NULL column cannot tell an absent field from a null
    /// one). `None` otherwise: the caller then filters payloads itself.
    pub fn to_sql(&self, column: impl Fn(&str) -> Option<(String, ColumnKind)>) -> Option<String> {
        let mut parts = Vec::with_capacity(self.conditions.len());
        for condition in &self.conditions {
            let [field] = condition.path.as_slice() else {
                return None;
            };
            let (name, kind) = column(field)?;
            let mut literals = Vec::new();
            for value in &condition.values {
                let literal = match (kind, value) {
                    (_, Value::Null) => return None,
                    (ColumnKind::Text, Value::String(text)) => {
                        format!("'{}'", text.replace('\'', "''"))
                    }
                    (ColumnKind::Number, Value::Number(n)) => match n.as_f64() {
                        Some(x) if x.is_finite() => format!("{x:?}"),
                        _ => return None,
                    },
                    (ColumnKind::Bool, Value::Bool(b)) => b.to_string(),
                    // A value of another type never equals this field's values.
                    _ => continue,
                };
                literals.push(literal);
            }
            let list = literals.join(", ");
            parts.push(match (condition.negated, literals.is_empty()) {
                (false, true) => "FALSE".to_string(),
                (false, false) => format!("{name} IN ({list})"),
                (true, true) => "TRUE".to_string(),
                (true, false) => format!("({name} IS NULL OR {name} NOT IN ({list}))"),
            });
        }
        Some(parts.join(" AND "))
    }
}

impl Condition {
    fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "filter {text:?}: {why} (expected FIELD=VALUE, FIELD=V1|V2 or FIELD!=VALUE)"
            ))
        };
        let eq = text.find('=').ok_or_else(|| bad("no '='"))?;
        let (field, negated) = match text[..eq].strip_suffix('!') {
            Some(field) => (field, true),
            None => (&text[..eq], false),
        };
        let field = field.trim();
        if field.is_empty() {
            return Err(bad("no field name"));
        }
        let path: Vec<String> = field.split('.').map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            return Err(bad("empty part in the field path"));
        }
        let values = split_alternatives(&text[eq + 1..])
            .into_iter()
            .map(|v| parse_value(v.trim()))
            .collect();
        Ok(Self {
            path,
            negated,
            values,
        })
    }

    fn matches(&self, payload: Option<&Value>) -> bool {
        let mut field = payload;
        for key in &self.path {
            field = field.and_then(|v| v.get(key));
        }
        let equal = field.is_some_and(|f| self.values.iter().any(|v| json_equal(f, v)));
        equal != self.negated
    }
}

/// Splits on `|` outside double quotes.
fn split_alternatives(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '|' if !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(conditions: &[&str]) -> Filter {
        Filter::parse(conditions).unwrap()
    }

    #[test]
    fn equality_in_and_not() {
        let web = json!({"section": "web", "n": 3, "meta": {"lang": "en"}});
        let net = json!({"section": "net", "n": 4});
        assert!(f(&["section=web"]).matches(Some(&web)));
        assert!(!f(&["section=web"]).matches(Some(&net)));
        assert!(f(&["section=\"web\""]).matches(Some(&web)));
        assert!(f(&["section=net|web"]).matches(Some(&web)));
        assert!(f(&["section=net|web"]).matches(Some(&net)));
        assert!(!f(&["section!=net|web"]).matches(Some(&net)));
        assert!(f(&["section!=web"]).matches(Some(&net)));
        assert!(f(&["n=3"]).matches(Some(&web)));
        assert!(f(&["n=3.0"]).matches(Some(&web)));
        assert!(
            !f(&["n=\"3\""]).matches(Some(&web)),
            "a string is not a number"
        );
        assert!(f(&["meta.lang=en"]).matches(Some(&web)));
        assert!(!f(&["meta.lang=en"]).matches(Some(&net)));
        // AND of conditions.
        assert!(f(&["section=web", "n=3"]).matches(Some(&web)));
        assert!(!f(&["section=web", "n=4"]).matches(Some(&web)));
    }

    #[test]
    fn missing_fields_and_payloads() {
        assert!(!f(&["section=web"]).matches(None));
        assert!(f(&["section!=web"]).matches(None));
        assert!(!f(&["x=1"]).matches(Some(&json!({"y": 1}))));
        assert!(f(&["x=null"]).matches(Some(&json!({"x": null}))));
    }

    #[test]
    fn quoted_values_may_hold_bars_and_equals() {
        let p = json!({"t": "a|b=c"});
        assert!(f(&["t=\"a|b=c\""]).matches(Some(&p)));
        assert!(!f(&["t=a|b=c"]).matches(Some(&p)));
    }

    #[test]
    fn sql_pushdown_states_the_same_filter() {
        let columns = |field: &str| match field {
            "section" => Some(("payload_section".to_string(), ColumnKind::Text)),
            "n" => Some(("payload_n".to_string(), ColumnKind::Number)),
            "ok" => Some(("payload_ok".to_string(), ColumnKind::Bool)),
            _ => None,
        };
        let sql = |c: &[&str]| f(c).to_sql(columns);
        assert_eq!(
            sql(&["section=web|o'reilly"]).as_deref(),
            Some("payload_section IN ('web', 'o''reilly')")
        );
        assert_eq!(
            sql(&["n=3", "ok=true"]).as_deref(),
            Some("payload_n IN (3.0) AND payload_ok IN (true)")
        );
        assert_eq!(
            sql(&["section!=web"]).as_deref(),
            Some("(payload_section IS NULL OR payload_section NOT IN ('web'))")
        );
        // A number never equals a text field; a negated impossible value always holds.
        assert_eq!(sql(&["section=3"]).as_deref(), Some("FALSE"));
        assert_eq!(sql(&["section!=3"]).as_deref(), Some("TRUE"));
        // Not expressible: nested paths, unknown fields, null values.
        assert_eq!(sql(&["meta.lang=en"]), None);
        assert_eq!(sql(&["other=1"]), None);
        assert_eq!(sql(&["section=null"]), None);
    }

    #[test]
    fn column_kinds_and_names() {
        let kind = |v: &[Value]| ColumnKind::of_values(v.iter());
        assert_eq!(
            kind(&[json!("a"), json!(null), json!("b")]),
            Some(Some(ColumnKind::Text))
        );
        assert_eq!(
            kind(&[json!(1), json!(2.5)]),
            Some(Some(ColumnKind::Number))
        );
        assert_eq!(kind(&[json!(1), json!("a")]), None);
        assert_eq!(kind(&[json!([1])]), None);
        assert_eq!(kind(&[json!(null)]), Some(None));
        assert!(is_plain_field_name("section_2"));
        assert!(!is_plain_field_name("Section"));
        assert!(!is_plain_field_name("2x"));
        assert!(!is_plain_field_name("a-b"));
    }

    #[test]
    fn bad_filters_are_refused() {
        for bad in ["section", "=web", "a..b=1", "!=x"] {
            let e = Filter::parse(&[bad]).unwrap_err().to_string();
            assert!(e.contains("expected FIELD=VALUE"), "{bad}: {e}");
        }
        assert!(Filter::parse::<&str>(&[]).is_err());
    }
}
