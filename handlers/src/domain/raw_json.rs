//! A JSON value kept as its compact text: what inventories carry (ARM documents, telemetry
//! rows) between discovery and export. A parsed `serde_json::Value` costs several times its
//! text (a map node per object, a string per key); at a thousand telemetry rows per workspace
//! and ten slices at once that was most of an export's peak memory (issue 19's heap profile),
//! while nothing but the export file ever needs the rows parsed.

use serde_json::value::RawValue;
use serde_json::Value;

/// Valid JSON text. Serialises as the value itself, so stored inventories keep their format.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// The compact text of `v` (serialising a `Value` cannot fail: its keys are strings).
    pub fn of(v: &Value) -> Self {
        Self(serde_json::value::to_raw_value(v).unwrap_or_else(|_| RawValue::NULL.to_owned()))
    }

    /// `text` if it is one JSON value, `None` otherwise.
    pub fn parse(text: &str) -> Option<Self> {
        RawValue::from_string(text.trim().to_string())
            .ok()
            .map(Self)
    }

    /// The JSON array of `items`, built from their text (nothing parsed).
    pub fn array<'a>(items: impl IntoIterator<Item = &'a RawJson>) -> Self {
        let mut text = String::from("[");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(item.get());
        }
        text.push(']');
        // Elements are valid JSON, so their comma-joined list in brackets is too (taken as is:
        // `parse` would trim and copy the whole table's text once more).
        Self(RawValue::from_string(text).unwrap_or_else(|_| RawValue::NULL.to_owned()))
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The parsed value (for the callers that read fields of a small document).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.get()).unwrap_or(Value::Null)
    }

    /// The elements of an array, as slices of this text (`None` if it is not an array).
    pub fn elements(&self) -> Option<Vec<&RawValue>> {
        serde_json::from_str(self.get()).ok()
    }
}

/// Same text, same value: every `RawJson` this product makes is compact, so equal values have
/// equal text.
impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for RawJson {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_compact_text_and_serialises_as_the_value() {
        let v = json!({"b": [1, {"c": "x"}], "a": null});
        let r = RawJson::of(&v);
        assert_eq!(r.get(), v.to_string());
        assert_eq!(r.to_value(), v);
        let wrapped = serde_json::to_string(&json!({"doc": r.to_value()})).unwrap();
        #[derive(serde::Serialize, serde::Deserialize)]
        struct W {
            doc: RawJson,
        }
        assert_eq!(
            serde_json::to_string(&W { doc: r.clone() }).unwrap(),
            wrapped
        );
        let back: W = serde_json::from_str(&wrapped).unwrap();
        assert_eq!(back.doc, r);
    }

    #[test]
    fn arrays_join_elements_and_split_back() {
        let rows = [RawJson::of(&json!({"a": 1})), RawJson::of(&json!("s"))];
        let arr = RawJson::array(rows.iter());
        assert_eq!(arr.get(), r#"[{"a":1},"s"]"#);
        let parts: Vec<&str> = arr.elements().unwrap().iter().map(|e| e.get()).collect();
        assert_eq!(parts, [r#"{"a":1}"#, r#""s""#]);
        assert_eq!(RawJson::array([]).get(), "[]");
        assert!(RawJson::of(&json!({})).elements().is_none());
        assert!(RawJson::parse("{\"a\":").is_none());
        assert!(RawJson::parse("1 2").is_none());
    }
}
