//! Person review of what attribution could not prove: which evidence ties a model or data asset
//! to the subject, the review items a report lists ("needs review"), the decisions a reviewer
//! records, and the approve/reject control message of the intake queue. Pure: no I/O.
//!
//! Evidence, strongest first (issue 14, item 3):
//! 1. the asset names the run that produced it — a model version's `jobName` (ARM
//!    `ModelVersionProperties.jobName`, "Name of the training job which produced this model"),
//!    an `azureml://jobs/<run>/outputs/...` URI, an MLflow `runs:/<run>/...` URI, or files under
//!    that run's output folders (`azureml/<run>/` in the blob datastore, `ExperimentRun/dcid.<run>/`
//!    in the artifact store) — and run history says that run is the subject's;
//! 2. otherwise only `systemData.createdBy`, which for Azure ML assets is the creator's display
//!    name (two people can share one), or a UPN or object id written there: a **candidate**,
//!    never acted on until a person approves it.

use time::OffsetDateTime;

use super::ids::short_hash;
use super::request::{Rejection, RequestId, MAX_REQUEST_BYTES};
use super::resource::ArmKind;
use super::subject::ResolvedSubject;

/// How an asset points at the run that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReference {
    pub run_id: String,
    /// Where the reference was read, for the report ("its jobName", ...).
    pub via: &'static str,
}

/// A run name that can only be one run (and one folder).
fn run_name(s: &str) -> Option<String> {
    let s = s.trim();
    (super::subject::valid_alias(s) && !s.contains(['/', '%', ':', '#', '?']))
        .then(|| s.to_string())
}

/// The run an asset document names, from its own fields and its URI (before it is resolved to
/// a datastore): `properties.jobName`, `azureml://jobs/<run>/...`, `runs:/<run>/...`.
pub fn declared_run(doc: &serde_json::Value) -> Option<RunReference> {
    if let Some(run) = doc
        .pointer("/properties/jobName")
        .and_then(serde_json::Value::as_str)
        .and_then(run_name)
    {
        return Some(RunReference {
            run_id: run,
            via: "its jobName",
        });
    }
    let uri = doc
        .pointer("/properties/modelUri")
        .or_else(|| doc.pointer("/properties/dataUri"))
        .and_then(serde_json::Value::as_str)?;
    if let Some(rest) = uri.strip_prefix("azureml://jobs/") {
        let (run, tail) = rest.split_once('/')?;
        if !tail.starts_with("outputs/") {
            return None;
        }
        return Some(RunReference {
            run_id: run_name(run)?,
            via: "its azureml://jobs/<run>/outputs URI",
        });
    }
    if let Some(rest) = uri.strip_prefix("runs:/") {
        let run = rest.split('/').next()?;
        return Some(RunReference {
            run_id: run_name(run)?,
            via: "its MLflow runs:/ URI",
        });
    }
    None
}

/// The run whose folder holds an asset's files: `azureml/<run>/...` in the workspace blob
/// store, `ExperimentRun/dcid.<run>/...` in the artifact store (`dcid.<run>_setup` is not an
/// output folder). `container` and `path` are the resolved location.
pub fn run_of_folder(
    blobstore_container: &str,
    artifact_container: &str,
    container: &str,
    path: &str,
) -> Option<RunReference> {
    let (prefix, via) = if container == blobstore_container {
        (
            "azureml/",
            "its files are under the run's output folder azureml/<run>/",
        )
    } else if container == artifact_container {
        (
            "ExperimentRun/dcid.",
            "its files are under the run's folder ExperimentRun/dcid.<run>/",
        )
    } else {
        return None;
    };
    let rest = path.strip_prefix(prefix)?;
    let (run, tail) = rest.split_once('/')?;
    if tail.is_empty() && !path.ends_with('/') {
        return None;
    }
    Some(RunReference {
        run_id: run_name(run)?,
        via,
    })
}

/// Why an asset with no proof of a run is still worth a person's look, or `None` when nothing
/// ties it to the subject. `systemData.createdBy` of Azure ML assets is a display name; a UPN
/// or object id written there is reported too — but none of them is proof (item 5: a UPN never
/// drives a delete on its own).
pub fn candidate_evidence(
    subject: &ResolvedSubject,
    system_data: Option<&serde_json::Value>,
) -> Option<String> {
    let sd = system_data?;
    let by_type = sd.get("createdByType").and_then(serde_json::Value::as_str);
    if !by_type.is_some_and(|t| t.eq_ignore_ascii_case("User")) {
        return None;
    }
    let by = sd
        .get("createdBy")
        .and_then(serde_json::Value::as_str)?
        .trim();
    if by.is_empty() {
        return None;
    }
    if subject.matches_object_id(by) {
        return Some("systemData.createdBy is the subject's object id".into());
    }
    if subject.matches_upn(by) {
        return Some("systemData.createdBy is the subject's UPN".into());
    }
    let name = subject.display_name.as_deref().map(str::trim)?;
    (!name.is_empty() && name.eq_ignore_ascii_case(by)).then(|| {
        "systemData.createdBy is the subject's display name, which others can share".into()
    })
}

/// What a reviewer decided about one item.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub approved: bool,
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub reason: String,
}

/// Something that may be the subject's, left untouched until a person decides.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewItem {
    /// Short stable id (`rv-` + hash of slice and resource), what `review approve` takes.
    pub id: String,
    pub resource_type: ArmKind,
    pub resource_id: String,
    /// Why it is listed: the evidence found, and what was missing.
    pub evidence: String,
    /// Files the item would take with it (account/container/name), counted for the reviewer.
    #[serde(default)]
    pub files: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

impl ReviewItem {
    pub fn new(
        slice_key: &str,
        kind: ArmKind,
        resource_id: &str,
        evidence: String,
        files: u64,
    ) -> Self {
        ReviewItem {
            id: format!("rv-{}", short_hash(&[slice_key, resource_id], 12)),
            resource_type: kind,
            resource_id: resource_id.to_string(),
            evidence,
            files,
            decision: None,
        }
    }

    /// Whether `name` (from the CLI or a control message) names this item: its id or its
    /// resource id (ARM ids compare case-insensitively).
    pub fn named_by(&self, name: &str) -> bool {
        let n = name.trim();
        n == self.id || n.eq_ignore_ascii_case(&self.resource_id)
    }
}

/// A decision on some of a request's review items, from the CLI or the intake queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewDecision {
    pub request_id: RequestId,
    pub approve: bool,
    pub items: Vec<String>,
    pub approver: String,
    pub reason: String,
}

/// Limits of a decision's free-text fields (they reach the audit trail and the report).
pub const MAX_ITEMS: usize = 200;
const MAX_APPROVER: usize = 256;
const MAX_REASON: usize = 2000;

impl ReviewDecision {
    /// Check the fields a person typed; `Err` says which and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.items.is_empty() {
            return Err("items: name at least one review item".into());
        }
        if self.items.len() > MAX_ITEMS {
            return Err(format!("items: at most {MAX_ITEMS} per decision"));
        }
        if self
            .items
            .iter()
            .any(|i| i.trim().is_empty() || i.len() > 1024 || i.chars().any(char::is_control))
        {
            return Err("items: each must be a non-empty review item id or resource id".into());
        }
        let printable = |s: &str, max: usize| {
            !s.trim().is_empty() && s.len() <= max && !s.chars().any(char::is_control)
        };
        if !printable(&self.approver, MAX_APPROVER) {
            return Err(format!(
                "approver: must name who decides, 1-{MAX_APPROVER} printable characters"
            ));
        }
        if !printable(&self.reason, MAX_REASON) {
            return Err(format!(
                "reason: must say why, 1-{MAX_REASON} printable characters"
            ));
        }
        Ok(())
    }
}

/// The `type` of a queue message, when it is a JSON object with a string `type` (DSR requests
/// carry `export`/`delete`; control messages `approve`, `reject`, ...).
pub fn message_type(body: &[u8]) -> Option<String> {
    if body.len() > MAX_REQUEST_BYTES {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("type")?.as_str().map(str::to_string)
}

/// Control-message envelope version this service accepts.
pub const CONTROL_VERSION: u64 = 1;

/// Parse an approve/reject control message:
/// `{"type":"approve"|"reject","version":1,"requestId":..,"items":[..],"approver":..,"reason":..}`.
pub fn parse_control(body: &[u8]) -> Result<ReviewDecision, Rejection> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(Rejection::new(
            "too_large",
            format!(
                "message is {} bytes; the limit is {MAX_REQUEST_BYTES}",
                body.len()
            ),
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Rejection::new("malformed_json", format!("message is not valid JSON: {e}")))?;
    let request_id = v
        .get("requestId")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| RequestId::parse(s).ok());
    let with_id = |mut r: Rejection| {
        r.request_id = request_id.as_ref().map(|r| r.to_string());
        r
    };
    let invalid = |f: &str, why: &str| {
        with_id(Rejection::new(
            "invalid_control_message",
            format!("field '{f}': {why}"),
        ))
    };
    let approve = match v.get("type").and_then(serde_json::Value::as_str) {
        Some("approve") => true,
        Some("reject") => false,
        _ => return Err(invalid("type", "must be 'approve' or 'reject'")),
    };
    match v.get("version").and_then(serde_json::Value::as_u64) {
        Some(CONTROL_VERSION) => {}
        Some(n) => {
            return Err(with_id(Rejection::new(
                "unsupported_schema_version",
                format!("control message version {n} is not supported; this service accepts {CONTROL_VERSION}"),
            )))
        }
        None => return Err(invalid("version", "required, the number 1")),
    }
    let Some(request_id) = request_id.clone() else {
        return Err(invalid("requestId", "required, a valid request id"));
    };
    let items = match v.get("items") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| invalid("items", "must be an array of strings"))?,
        _ => return Err(invalid("items", "required, an array of review item ids")),
    };
    let text = |f: &str| {
        v.get(f)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| invalid(f, "required, a string"))
    };
    let d = ReviewDecision {
        request_id,
        approve,
        items,
        approver: text("approver")?,
        reason: text("reason")?,
    };
    d.validate()
        .map_err(|why| with_id(Rejection::new("invalid_control_message", why)))?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn alice() -> ResolvedSubject {
        ResolvedSubject {
            object_id: Uuid::parse_str("11111111-1111-1111-1111-111111111111").unwrap(),
            tenant_id: None,
            upn: Some(super::super::subject::Upn::parse("alice@contoso.com").unwrap()),
            display_name: Some("Alice Example".into()),
            notebook_aliases: vec![],
            notebook_alias_conflicts: 0,
        }
    }

    #[test]
    fn declared_runs_come_from_job_name_and_run_uris_only() {
        let run = |doc| declared_run(&doc).map(|r| r.run_id);
        assert_eq!(
            run(
                json!({"properties": {"jobName": "alice_job_1", "modelUri": "azureml://datastores/x/paths/y/"}})
            ),
            Some("alice_job_1".into())
        );
        assert_eq!(
            run(
                json!({"properties": {"modelUri": "azureml://jobs/j1/outputs/artifacts/paths/model/"}})
            ),
            Some("j1".into())
        );
        assert_eq!(
            run(json!({"properties": {"modelUri": "runs:/r9/model"}})),
            Some("r9".into())
        );
        for bad in [
            json!({"properties": {"jobName": ""}}),
            json!({"properties": {"jobName": "../x"}}),
            json!({"properties": {"jobName": "*"}}),
            json!({"properties": {"modelUri": "azureml://jobs/../outputs/x"}}),
            json!({"properties": {"modelUri": "azureml://jobs/j1/inputs/x"}}),
            json!({"properties": {"dataUri": "azureml://datastores/workspaceblobstore/paths/azureml/j1/out/"}}),
            json!({}),
        ] {
            assert_eq!(run(bad.clone()), None, "{bad}");
        }
    }

    #[test]
    fn run_folders_name_their_run() {
        let f = |c: &str, p: &str| run_of_folder("blobs", "azureml", c, p).map(|r| r.run_id);
        assert_eq!(f("blobs", "azureml/j1/outputs/x.csv"), Some("j1".into()));
        assert_eq!(f("blobs", "azureml/j1/"), Some("j1".into()));
        assert_eq!(
            f("azureml", "ExperimentRun/dcid.j2/outputs/model/"),
            Some("j2".into())
        );
        assert_eq!(f("blobs", "azureml/"), None);
        assert_eq!(f("blobs", "azureml/j1"), None);
        assert_eq!(f("blobs", "UI/2026/x.csv"), None);
        assert_eq!(f("other", "azureml/j1/x"), None);
        assert_eq!(f("blobs", "azureml/../x/y"), None);
    }

    #[test]
    fn candidates_by_display_name_upn_or_object_id_and_never_otherwise() {
        let a = alice();
        let sd = |by: &str, t: &str| json!({"createdBy": by, "createdByType": t});
        assert!(candidate_evidence(&a, Some(&sd("Alice Example", "User")))
            .unwrap()
            .contains("display name"));
        assert!(
            candidate_evidence(&a, Some(&sd("ALICE@contoso.com", "User")))
                .unwrap()
                .contains("UPN")
        );
        assert!(candidate_evidence(
            &a,
            Some(&sd("11111111-1111-1111-1111-111111111111", "User"))
        )
        .unwrap()
        .contains("object id"));
        for (by, t) in [
            ("Alice Example", "Application"),
            ("Bob Builder", "User"),
            ("", "User"),
            ("*", "User"),
        ] {
            assert!(candidate_evidence(&a, Some(&sd(by, t))).is_none(), "{by}");
        }
        assert!(candidate_evidence(&a, None).is_none());
        let mut nameless = alice();
        nameless.display_name = None;
        assert!(candidate_evidence(&nameless, Some(&sd("Alice Example", "User"))).is_none());
    }

    #[test]
    fn control_messages_are_validated_with_reasons() {
        let ok = json!({"type": "approve", "version": 1, "requestId": "DSR-1", "items": ["rv-abc"],
                        "approver": "privacy-officer@contoso.com", "reason": "confirmed with the user"});
        let d = parse_control(ok.to_string().as_bytes()).unwrap();
        assert!(d.approve);
        assert_eq!(d.items, vec!["rv-abc".to_string()]);
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (json!({"version": 1}), "type"),
            (json!({"type": "approve", "requestId": "DSR-1"}), "version"),
            (
                json!({"type": "reject", "version": 2, "requestId": "DSR-1"}),
                "version 2",
            ),
            (json!({"type": "reject", "version": 1}), "requestId"),
            (
                json!({"type": "reject", "version": 1, "requestId": "DSR-1", "items": "rv-1"}),
                "items",
            ),
            (
                json!({"type": "reject", "version": 1, "requestId": "DSR-1", "items": [], "approver": "a", "reason": "r"}),
                "items",
            ),
            (
                json!({"type": "reject", "version": 1, "requestId": "DSR-1", "items": ["x"], "reason": "r"}),
                "approver",
            ),
            (
                json!({"type": "reject", "version": 1, "requestId": "DSR-1", "items": ["x"], "approver": " ", "reason": "r"}),
                "approver",
            ),
            (
                json!({"type": "reject", "version": 1, "requestId": "DSR-1", "items": ["x"], "approver": "a", "reason": ""}),
                "reason",
            ),
        ];
        for (msg, word) in cases {
            let r = parse_control(msg.to_string().as_bytes()).unwrap_err();
            assert!(r.reason.contains(word), "{msg}: {}", r.reason);
        }
        let r = parse_control(b"{not json").unwrap_err();
        assert_eq!(r.code, "malformed_json");
        // The request id travels with the rejection when it could be read.
        let r =
            parse_control(br#"{"type":"approve","version":1,"requestId":"DSR-9"}"#).unwrap_err();
        assert_eq!(r.request_id.as_deref(), Some("DSR-9"));
        assert_eq!(
            message_type(ok.to_string().as_bytes()).as_deref(),
            Some("approve")
        );
        assert_eq!(message_type(br#"{"requestId":"x"}"#), None);
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,200}") {
            let _ = parse_control(s.as_bytes());
            let _ = message_type(s.as_bytes());
            let _ = declared_run(&json!({"properties": {"jobName": s, "modelUri": s}}));
            let _ = run_of_folder("b", "a", "b", &s);
        }
    }
}
