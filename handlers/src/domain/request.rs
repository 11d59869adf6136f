//! The data-subject request: the public contract of the intake queue (JSON Schema in
//! `schemas/dsr-request.schema.json`). `DsrRequest::parse` is the only way to build one, so a
//! `DsrRequest` cannot exist invalid; every failure carries a reason a ticketing system can show.

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::deadline::Regulation;
use super::subject::Upn;
use super::workspace::WorkspaceId;

/// Largest accepted message body (Service Bus Standard's own limit is 256 KiB).
pub(crate) const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// Major schema version this build understands.
pub(crate) const SCHEMA_MAJOR: u64 = 1;
pub(crate) const MAX_WORKSPACES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    Export,
    Delete,
    /// Internal: a retention sweep (never accepted from the intake queue).
    Retention,
}

impl RequestKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            RequestKind::Export => "export",
            RequestKind::Delete => "delete",
            RequestKind::Retention => "retention",
        }
    }
    pub(crate) fn mutates(&self) -> bool {
        !matches!(self, RequestKind::Export)
    }
}

/// Ticket id and idempotency key. Safe to use in blob names and MessageIds.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(String);

impl RequestId {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 64 {
            return Err("requestId must be 1-64 characters".into());
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
            || s.starts_with('.')
        {
            return Err("requestId may contain only letters, digits, '-', '_', '.', ':' and must not start with '.'".into());
        }
        Ok(RequestId(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl TryFrom<String> for RequestId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        RequestId::parse(&s)
    }
}
impl From<RequestId> for String {
    fn from(r: RequestId) -> String {
        r.0
    }
}

/// Who the request is about, as the sender named them (before directory resolution).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectRef {
    pub object_id: Option<Uuid>,
    pub upn: Option<Upn>,
    pub tenant_id: Option<Uuid>,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DsrRequest {
    pub schema_version: String,
    pub request_id: RequestId,
    #[serde(rename = "type")]
    pub kind: RequestKind,
    pub subject: SubjectRef,
    pub workspaces: Vec<WorkspaceId>,
    pub dry_run: bool,
    pub regulation: Regulation,
    #[serde(with = "time::serde::rfc3339::option")]
    pub received_at: Option<OffsetDateTime>,
    pub reply_to: Option<String>,
    /// Who submitted the request (the ticketing system's user), when it says: a review may be
    /// required to be decided by someone else (`DSR_REVIEW_SEPARATE_APPROVER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
}

/// Why a request was rejected: a stable machine code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    pub code: String,
    pub reason: String,
    /// `requestId` when it could be read, so the ticketing system can match the rejection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Rejection {
    pub fn new(code: &str, reason: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            reason: reason.into(),
            request_id: None,
        }
    }
}

impl DsrRequest {
    /// Parse raw message bytes into a valid request, or say exactly why not.
    pub fn parse(bytes: &[u8]) -> Result<DsrRequest, Rejection> {
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(Rejection::new(
                "too_large",
                format!(
                    "request is {} bytes; the limit is {MAX_REQUEST_BYTES}",
                    bytes.len()
                ),
            ));
        }
        let v: Value = serde_json::from_slice(bytes).map_err(|e| {
            Rejection::new("malformed_json", format!("request is not valid JSON: {e}"))
        })?;
        let obj = v
            .as_object()
            .ok_or_else(|| Rejection::new("malformed_json", "request must be a JSON object"))?;
        let request_id = obj
            .get("requestId")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        Self::parse_object(obj).map_err(|mut r| {
            r.request_id = request_id.filter(|id| RequestId::parse(id).is_ok());
            r
        })
    }

    fn parse_object(obj: &serde_json::Map<String, Value>) -> Result<DsrRequest, Rejection> {
        let missing =
            |f: &str| Rejection::new("missing_field", format!("required field '{f}' is missing"));
        let invalid =
            |f: &str, why: String| Rejection::new("invalid_field", format!("field '{f}': {why}"));
        let string = |f: &str| -> Result<Option<&str>, Rejection> {
            match obj.get(f) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(other) => Err(invalid(
                    f,
                    format!("expected a string, found {}", type_name(other)),
                )),
            }
        };

        let version = string("schemaVersion")?.ok_or_else(|| missing("schemaVersion"))?;
        let major = version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u64>().ok())
            .ok_or_else(|| invalid("schemaVersion", "expected 'MAJOR.MINOR', e.g. '1.0'".into()))?;
        if major != SCHEMA_MAJOR {
            return Err(Rejection::new(
                "unsupported_schema_version",
                format!("schemaVersion {version} is not supported; this service accepts {SCHEMA_MAJOR}.x"),
            ));
        }

        let request_id =
            RequestId::parse(string("requestId")?.ok_or_else(|| missing("requestId"))?)
                .map_err(|e| invalid("requestId", e))?;

        let kind = match string("type")?.ok_or_else(|| missing("type"))? {
            "export" => RequestKind::Export,
            "delete" => RequestKind::Delete,
            other => {
                return Err(invalid(
                    "type",
                    format!("must be 'export' or 'delete', found {}", echo(other)),
                ))
            }
        };

        let subject = match obj.get("subject") {
            None | Some(Value::Null) => return Err(missing("subject")),
            Some(Value::Object(s)) => parse_subject(s)?,
            Some(other) => {
                return Err(invalid(
                    "subject",
                    format!("expected an object, found {}", type_name(other)),
                ))
            }
        };

        let workspaces = match obj.get("scope") {
            None | Some(Value::Null) => return Err(missing("scope")),
            Some(Value::Object(s)) => match s.get("workspaces") {
                Some(Value::Array(items)) => {
                    if items.is_empty() {
                        return Err(invalid(
                            "scope.workspaces",
                            "at least one workspace is required".into(),
                        ));
                    }
                    if items.len() > MAX_WORKSPACES {
                        return Err(invalid(
                            "scope.workspaces",
                            format!("at most {MAX_WORKSPACES} workspaces per request"),
                        ));
                    }
                    let mut out = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        let s = item.as_str().ok_or_else(|| {
                            invalid(
                                &format!("scope.workspaces[{i}]"),
                                "expected a string".into(),
                            )
                        })?;
                        let ws = WorkspaceId::parse(s)
                            .map_err(|e| invalid(&format!("scope.workspaces[{i}]"), e))?;
                        if !out.contains(&ws) {
                            out.push(ws);
                        }
                    }
                    out
                }
                None | Some(Value::Null) => return Err(missing("scope.workspaces")),
                Some(other) => {
                    return Err(invalid(
                        "scope.workspaces",
                        format!("expected an array, found {}", type_name(other)),
                    ))
                }
            },
            Some(other) => {
                return Err(invalid(
                    "scope",
                    format!("expected an object, found {}", type_name(other)),
                ))
            }
        };

        let dry_run = match obj.get("dryRun") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(invalid(
                    "dryRun",
                    format!("expected true or false, found {}", type_name(other)),
                ))
            }
        };

        let regulation = match string("regulation")? {
            None => Regulation::Gdpr,
            Some(r) if r.eq_ignore_ascii_case("gdpr") => Regulation::Gdpr,
            Some(r) if r.eq_ignore_ascii_case("ccpa") => Regulation::Ccpa,
            Some(r) => {
                return Err(invalid(
                    "regulation",
                    format!("must be 'gdpr' or 'ccpa', found {}", echo(r)),
                ))
            }
        };

        let received_at = match string("receivedAt")? {
            None => None,
            Some(s) => Some(
                OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(
                    |_| {
                        invalid(
                            "receivedAt",
                            "expected an RFC 3339 timestamp such as 2026-11-28T10:00:00Z".into(),
                        )
                    },
                )?,
            ),
        };

        let reply_to = match string("replyTo")? {
            None => None,
            Some(s) if s.len() <= 256 && !s.chars().any(char::is_control) => Some(s.to_string()),
            Some(_) => {
                return Err(invalid(
                    "replyTo",
                    "must be at most 256 printable characters".into(),
                ))
            }
        };

        let submitted_by = match string("submittedBy")? {
            None => None,
            Some(s)
                if !s.trim().is_empty() && s.len() <= 256 && !s.chars().any(char::is_control) =>
            {
                Some(s.trim().to_string())
            }
            Some(_) => {
                return Err(invalid(
                    "submittedBy",
                    "must be 1-256 printable characters".into(),
                ))
            }
        };

        Ok(DsrRequest {
            submitted_by,
            schema_version: version.to_string(),
            request_id,
            kind,
            subject,
            workspaces,
            dry_run,
            regulation,
            received_at,
            reply_to,
        })
    }
}

fn parse_subject(s: &serde_json::Map<String, Value>) -> Result<SubjectRef, Rejection> {
    let invalid = |f: &str, why: String| {
        Rejection::new("invalid_field", format!("field 'subject.{f}': {why}"))
    };
    let get = |f: &str| -> Result<Option<&str>, Rejection> {
        match s.get(f) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(v)) => Ok(Some(v.as_str())),
            Some(other) => Err(invalid(
                f,
                format!("expected a string, found {}", type_name(other)),
            )),
        }
    };
    let guid = |f: &str, v: &str| -> Result<Uuid, Rejection> {
        let id = Uuid::parse_str(v.trim()).map_err(|_| invalid(f, "expected a GUID".into()))?;
        if id.is_nil() {
            return Err(invalid(f, "the nil GUID names nobody".into()));
        }
        Ok(id)
    };
    let object_id = get("objectId")?.map(|v| guid("objectId", v)).transpose()?;
    let tenant_id = get("tenantId")?.map(|v| guid("tenantId", v)).transpose()?;
    let upn = get("upn")?
        .map(|v| Upn::parse(v).map_err(|e| invalid("upn", e)))
        .transpose()?;
    let display_name = get("displayName")?.map(|v| truncate(v, 256).to_string());
    if object_id.is_none() && upn.is_none() {
        return Err(Rejection::new(
            "missing_field",
            "subject needs at least one of 'objectId' or 'upn'",
        ));
    }
    Ok(SubjectRef {
        object_id,
        upn,
        tenant_id,
        display_name,
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A wrong value quoted back in a rejection reason, which is also logged: only a short plain
/// word (`'erase'`) is; anything else (a misplaced e-mail address, a name) might be personal
/// data and is described, not shown.
fn echo(v: &str) -> String {
    if !v.is_empty()
        && v.len() <= 32
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        format!("'{v}'")
    } else {
        format!("a value of {} characters (not shown)", v.chars().count())
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejection_reasons_quote_plain_words_only() {
        let base = json!({"schemaVersion": "1.0", "requestId": "R-1", "type": "erase",
               "subject": {"upn": "a@contoso.com"}, "scope": {"workspaces": [WS]}});
        let reason = |v: serde_json::Value| {
            DsrRequest::parse(v.to_string().as_bytes())
                .unwrap_err()
                .reason
        };
        assert!(reason(base.clone()).contains("found 'erase'"));
        let mut misplaced = base.clone();
        misplaced["type"] = json!("alice.smith@contoso.com");
        let r = reason(misplaced);
        assert!(!r.contains("alice") && r.contains("not shown"), "{r}");
        let mut regulation = base;
        regulation["type"] = json!("export");
        regulation["regulation"] = json!("Alice Smith");
        let r = reason(regulation);
        assert!(!r.contains("Alice") && r.contains("regulation"), "{r}");
    }

    const WS: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1";

    fn valid() -> Value {
        json!({"schemaVersion": "1.0", "requestId": "T-1", "type": "delete",
               "subject": {"upn": "alice@contoso.com"}, "scope": {"workspaces": [WS]}, "extra": 1})
    }

    fn reject(v: Value) -> Rejection {
        DsrRequest::parse(v.to_string().as_bytes()).unwrap_err()
    }

    #[test]
    fn parses_valid_and_tolerates_unknown_fields() {
        let r = DsrRequest::parse(valid().to_string().as_bytes()).unwrap();
        assert_eq!(r.kind, RequestKind::Delete);
        assert_eq!(r.regulation, Regulation::Gdpr);
        assert!(!r.dry_run);
        assert_eq!(r.workspaces.len(), 1);
    }

    #[test]
    fn a_workspace_named_twice_in_other_cases_is_one_workspace() {
        // Two spellings of one ARM id would otherwise plan the same slice twice.
        let mut v = valid();
        v["scope"]["workspaces"] = json!([WS, WS.to_uppercase()]);
        let r = DsrRequest::parse(v.to_string().as_bytes()).unwrap();
        assert_eq!(r.workspaces.len(), 1);
    }

    #[test]
    fn rejections_name_the_problem() {
        let mut v = valid();
        v["schemaVersion"] = json!("2.0");
        assert_eq!(reject(v).code, "unsupported_schema_version");
        let mut v = valid();
        v["type"] = json!("rectify");
        let r = reject(v);
        assert_eq!(r.code, "invalid_field");
        assert!(r.reason.contains("type"));
        assert_eq!(r.request_id.as_deref(), Some("T-1"));
        let mut v = valid();
        v["subject"] = json!({"displayName": "Alice"});
        assert_eq!(reject(v).code, "missing_field");
        let mut v = valid();
        v["subject"] = json!({"objectId": "00000000-0000-0000-0000-000000000000"});
        assert_eq!(reject(v).code, "invalid_field");
        let mut v = valid();
        v["scope"]["workspaces"] = json!([]);
        assert!(reject(v).reason.contains("at least one"));
        let mut v = valid();
        v["requestId"] = json!("../../etc");
        assert!(reject(v).reason.contains("requestId"));
        let mut v = valid();
        v["dryRun"] = json!("yes");
        assert!(reject(v).reason.contains("dryRun"));
        assert_eq!(
            DsrRequest::parse(b"not json").unwrap_err().code,
            "malformed_json"
        );
        assert_eq!(
            DsrRequest::parse(b"[1]").unwrap_err().code,
            "malformed_json"
        );
        assert_eq!(
            DsrRequest::parse(&vec![b' '; MAX_REQUEST_BYTES + 1])
                .unwrap_err()
                .code,
            "too_large"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = DsrRequest::parse(&bytes);
        }

        #[test]
        fn never_panics_on_arbitrary_strings_in_fields(s in "\\PC{0,80}", n in 0usize..6) {
            let keys = ["schemaVersion", "requestId", "type", "regulation", "receivedAt", "replyTo"];
            let mut v = valid();
            v[keys[n]] = json!(s);
            let _ = DsrRequest::parse(v.to_string().as_bytes());
            let mut v = valid();
            v["subject"]["upn"] = json!(s);
            let _ = DsrRequest::parse(v.to_string().as_bytes());
        }
    }
}
