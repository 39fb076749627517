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
    fn bad_filters_are_refused() {
        for bad in ["section", "=web", "a..b=1", "!=x"] {
            let e = Filter::parse(&[bad]).unwrap_err().to_string();
            assert!(e.contains("expected FIELD=VALUE"), "{bad}: {e}");
        }
        assert!(Filter::parse::<&str>(&[]).is_err());
    }
}
