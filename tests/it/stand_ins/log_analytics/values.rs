//! Values and purge filters: how a row's column compares (`==`, `=~`, `in`, `in~`, ordering,
//! `between`, `key` into a dynamic column), as the purge API and KQL describe it.

use super::*;

/// A datetime literal: RFC 3339, or naive / date-only (UTC), as KQL reads them.
pub(super) fn parse_datetime(s: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let with_time = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        format!("{s}Z")
    };
    OffsetDateTime::parse(&with_time, &Rfc3339).ok()
}

pub(super) fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// How values of a column compare.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Text,
    Number,
    DateTime,
    Bool,
    Dynamic,
}

pub(super) fn kind_of(column_type: &str) -> Kind {
    match column_type.to_ascii_lowercase().as_str() {
        "datetime" | "date" => Kind::DateTime,
        "int" | "long" | "real" | "double" | "decimal" | "timespan" => Kind::Number,
        "bool" | "boolean" => Kind::Bool,
        "dynamic" => Kind::Dynamic,
        _ => Kind::Text,
    }
}

/// `a == b` under KQL rules for the column kind (strings: case-sensitive).
pub(super) fn equal(kind: Kind, a: &Value, b: &Value) -> bool {
    if a.is_null() || b.is_null() {
        return false;
    }
    match kind {
        Kind::Number => matches!((as_f64(a), as_f64(b)), (Some(x), Some(y)) if x == y),
        Kind::DateTime => matches!(
            (as_text(a).and_then(|s| parse_datetime(&s)), as_text(b).and_then(|s| parse_datetime(&s))),
            (Some(x), Some(y)) if x == y
        ),
        Kind::Bool => {
            as_text(a).map(|s| s.to_ascii_lowercase()) == as_text(b).map(|s| s.to_ascii_lowercase())
        }
        // A dynamic value compared with a scalar: compare the scalar forms.
        Kind::Text | Kind::Dynamic => match (a, b) {
            (Value::String(x), Value::String(y)) => x == y,
            (Value::Number(_), _) | (_, Value::Number(_)) => {
                matches!((as_f64(a), as_f64(b)), (Some(x), Some(y)) if x == y)
            }
            _ => as_text(a) == as_text(b),
        },
    }
}

/// `a =~ b`: case-insensitive string equality.
pub(super) fn equal_ci(a: &Value, b: &Value) -> bool {
    matches!((as_text(a), as_text(b)), (Some(x), Some(y)) if x.to_lowercase() == y.to_lowercase())
}

/// Ordering for `<`, `>`, `between` (numbers and datetimes; strings by ordinal, as KQL does).
pub(super) fn order(kind: Kind, a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match kind {
        Kind::Number => as_f64(a)?.partial_cmp(&as_f64(b)?),
        Kind::DateTime => Some(parse_datetime(&as_text(a)?)?.cmp(&parse_datetime(&as_text(b)?)?)),
        Kind::Text => Some(as_text(a)?.cmp(&as_text(b)?)),
        Kind::Dynamic => match (as_f64(a), as_f64(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => Some(as_text(a)?.cmp(&as_text(b)?)),
        },
        Kind::Bool => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Op {
    Eq,
    EqCi,
    In,
    InCi,
    Gt,
    Ge,
    Lt,
    Le,
    Between,
}

/// One validated purge filter.
#[derive(Debug, Clone)]
pub(super) struct Filter {
    pub(super) column: usize,
    pub(super) kind: Kind,
    pub(super) key: Option<String>,
    pub(super) op: Op,
    pub(super) value: Value,
}

/// Validate the purge body's filters against the table; `Err` is the 400 message.
pub(super) fn compile_filters(t: &Table, filters: &[Value]) -> Result<Vec<Filter>, String> {
    if filters.is_empty() {
        return Err("At least one filter is required.".into());
    }
    let mut out = Vec::new();
    for f in filters {
        let column = f
            .get("column")
            .and_then(Value::as_str)
            .ok_or("Each filter needs a 'column'.")?;
        let (idx, ty) = t
            .col(column)
            .ok_or_else(|| format!("Column '{column}' does not exist in the table."))?;
        let mut kind = kind_of(ty);
        let key = f.get("key").and_then(Value::as_str).map(str::to_string);
        if key.is_some() {
            if kind != Kind::Dynamic {
                return Err(format!(
                    "A 'key' can only be given for a dynamic column; '{column}' is {ty}."
                ));
            }
        } else if kind == Kind::Dynamic {
            return Err(format!(
                "Filtering on dynamic column '{column}' needs the 'key' of the custom dimension."
            ));
        }
        if key.is_some() {
            // A custom dimension's value compares as the scalar it holds.
            kind = Kind::Dynamic;
        }
        let op = match f
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "==" => Op::Eq,
            "=~" => Op::EqCi,
            "in" => Op::In,
            "in~" => Op::InCi,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "between" => Op::Between,
            other => return Err(format!("Operator '{other}' is not supported.")),
        };
        let value = f.get("value").cloned().unwrap_or(Value::Null);
        match op {
            Op::In | Op::InCi if value.as_array().is_none_or(|a| a.is_empty()) => {
                return Err(format!(
                    "Operator '{}' needs an array of values.",
                    op_name(op)
                ))
            }
            Op::Between if value.as_array().map(Vec::len) != Some(2) => {
                return Err("Operator 'between' needs an array of two values.".into())
            }
            Op::Gt | Op::Ge | Op::Lt | Op::Le | Op::Between if kind == Kind::Bool => {
                return Err(format!(
                    "Operator '{}' does not apply to bool column '{column}'.",
                    op_name(op)
                ))
            }
            Op::Eq | Op::EqCi | Op::Gt | Op::Ge | Op::Lt | Op::Le
                if value.is_array() || value.is_null() =>
            {
                return Err(format!("Operator '{}' needs a single value.", op_name(op)))
            }
            _ => {}
        }
        if kind == Kind::DateTime {
            let vals: Vec<&Value> = match &value {
                Value::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            if vals
                .iter()
                .any(|v| as_text(v).and_then(|s| parse_datetime(&s)).is_none())
            {
                return Err(format!(
                    "Value for datetime column '{column}' is not a datetime."
                ));
            }
        }
        out.push(Filter {
            column: idx,
            kind,
            key,
            op,
            value,
        });
    }
    Ok(out)
}

pub(super) fn op_name(op: Op) -> &'static str {
    match op {
        Op::Eq => "==",
        Op::EqCi => "=~",
        Op::In => "in",
        Op::InCi => "in~",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Between => "between",
    }
}

/// The cell a filter looks at: the column, or the `key` property of a dynamic column (stored as
/// an object or as JSON text, as ingestion may keep either).
pub(super) fn cell(row: &[Value], f: &Filter) -> Value {
    let v = row.get(f.column).cloned().unwrap_or(Value::Null);
    let Some(key) = &f.key else { return v };
    let obj = match v {
        Value::String(s) => serde_json::from_str::<Value>(&s).unwrap_or(Value::Null),
        other => other,
    };
    obj.get(key).cloned().unwrap_or(Value::Null)
}

pub(super) fn filter_matches(row: &[Value], f: &Filter) -> bool {
    use std::cmp::Ordering::*;
    let c = cell(row, f);
    if c.is_null() {
        return false;
    }
    let v = &f.value;
    match f.op {
        Op::Eq => equal(f.kind, &c, v),
        Op::EqCi => equal_ci(&c, v),
        Op::In => v
            .as_array()
            .is_some_and(|a| a.iter().any(|x| equal(f.kind, &c, x))),
        Op::InCi => v
            .as_array()
            .is_some_and(|a| a.iter().any(|x| equal_ci(&c, x))),
        Op::Gt => order(f.kind, &c, v) == Some(Greater),
        Op::Ge => matches!(order(f.kind, &c, v), Some(Greater | Equal)),
        Op::Lt => order(f.kind, &c, v) == Some(Less),
        Op::Le => matches!(order(f.kind, &c, v), Some(Less | Equal)),
        Op::Between => match v.as_array().map(Vec::as_slice) {
            Some([lo, hi]) => {
                matches!(order(f.kind, &c, lo), Some(Greater | Equal))
                    && matches!(order(f.kind, &c, hi), Some(Less | Equal))
            }
            _ => false,
        },
    }
}
