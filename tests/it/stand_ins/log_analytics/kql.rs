//! The KQL subset the product sends (`Table | where ... | take N`), parsed and run over rows;
//! anything else is a syntax error, as the service answers.

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Pipe,
    Op(&'static str),
}

pub(super) fn lex(q: &str) -> Result<Vec<Tok>, usize> {
    let chars: Vec<char> = q.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '|' {
            out.push(Tok::Pipe);
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(i),
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some(e @ ('"' | '\'' | '\\')) => s.push(*e),
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            _ => return Err(i),
                        }
                        i += 2;
                    }
                    Some(x) if *x == c => {
                        i += 1;
                        break;
                    }
                    Some(x) => {
                        s.push(*x);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            out.push(Tok::Num(s.parse().map_err(|_| start)?));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if c == '(' || c == ')' {
            out.push(Tok::Op(if c == '(' { "(" } else { ")" }));
            i += 1;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = match two.as_str() {
                "==" => "==",
                "=~" => "=~",
                "!=" => "!=",
                "!~" => "!~",
                _ => return Err(i),
            };
            out.push(Tok::Op(op));
            i += 2;
        }
    }
    Ok(out)
}

#[derive(Debug)]
pub(super) struct Pred {
    pub(super) column: String,
    /// `tostring(column)`: the cell as text (a dynamic value serialised as JSON).
    pub(super) as_text: bool,
    pub(super) op: &'static str,
    pub(super) value: Value,
}

#[derive(Debug)]
pub(super) enum Stage {
    Where(Vec<Pred>),
    Take(usize),
}

#[derive(Debug)]
pub(super) struct Query {
    pub(super) table: String,
    pub(super) stages: Vec<Stage>,
}

pub(super) fn parse_kql(q: &str) -> Result<Query, String> {
    let toks = lex(q).map_err(|at| format!("Query could not be parsed at position {at}"))?;
    let mut it = toks.into_iter().peekable();
    let table = match it.next() {
        Some(Tok::Ident(t)) => t,
        _ => return Err("Query could not be parsed: expected a table name".into()),
    };
    let mut stages = Vec::new();
    while let Some(t) = it.next() {
        if t != Tok::Pipe {
            return Err(format!("Query could not be parsed at '{t:?}'"));
        }
        match it.next() {
            Some(Tok::Ident(w)) if w == "where" => {
                let mut preds = Vec::new();
                loop {
                    // `Col` or `tostring(Col)` (a dynamic column as its JSON text).
                    let (column, as_text) = match it.next() {
                        Some(Tok::Ident(f)) if f == "tostring" => {
                            match (it.next(), it.next(), it.next()) {
                                (Some(Tok::Op("(")), Some(Tok::Ident(c)), Some(Tok::Op(")"))) => {
                                    (c, true)
                                }
                                other => {
                                    return Err(format!("Query could not be parsed at '{other:?}'"))
                                }
                            }
                        }
                        Some(Tok::Ident(c)) => (c, false),
                        other => return Err(format!("Query could not be parsed at '{other:?}'")),
                    };
                    let op = match it.next() {
                        Some(Tok::Op(op)) if op != "(" && op != ")" => op,
                        Some(Tok::Ident(w)) if w == "has" => "has",
                        other => return Err(format!("Query could not be parsed at '{other:?}'")),
                    };
                    let value = match it.next() {
                        Some(Tok::Str(s)) => Value::String(s),
                        Some(Tok::Num(n)) => json!(n),
                        Some(Tok::Ident(b)) if b == "true" || b == "false" => {
                            Value::Bool(b == "true")
                        }
                        other => return Err(format!("Query could not be parsed at '{other:?}'")),
                    };
                    preds.push(Pred {
                        column,
                        as_text,
                        op,
                        value,
                    });
                    match it.peek() {
                        Some(Tok::Ident(a)) if a == "and" => {
                            it.next();
                        }
                        _ => break,
                    }
                }
                stages.push(Stage::Where(preds));
            }
            Some(Tok::Ident(w)) if w == "take" || w == "limit" => match it.next() {
                Some(Tok::Num(n)) if n >= 0.0 => stages.push(Stage::Take(n as usize)),
                other => return Err(format!("Query could not be parsed at '{other:?}'")),
            },
            other => return Err(format!("Query could not be parsed at '{other:?}'")),
        }
    }
    Ok(Query { table, stages })
}

/// KQL `has`: `term` occurs in `text` bounded by non-alphanumeric characters or the ends.
pub(super) fn has_term(text: &str, term: &str) -> bool {
    if term.is_empty() {
        return false;
    }
    let (text, term) = (text.to_lowercase(), term.to_lowercase());
    let mut from = 0;
    while let Some(at) = text[from..].find(&term) {
        let start = from + at;
        let end = start + term.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        if !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric) {
            return true;
        }
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
    false
}
