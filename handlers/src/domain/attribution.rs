//! Who created a job, as Azure ML records it, and whether that person is the subject.
//!
//! ARM's `systemData.createdBy` of a job is the creator's display name, which two people can
//! share; the person's Entra object id is only in the run-history record of the run
//! (`createdBy{userObjectId, userTenantId, userName, upn}`, the `User` model of the run-history
//! API). So a job is attributed by its run record alone: the object id (and the tenant, when
//! both sides have one). A run without a readable object id is **unknown**, and unknown is never
//! acted on: it is not the subject's, and it is not provably anyone else's either.

use serde_json::Value;
use uuid::Uuid;

use super::holds::{HoldRef, HoldSet};
use super::resource_type::ResourceType;
use super::subject::ResolvedSubject;
use super::workspace::WorkspaceId;

/// Notes that start with this mark something the slice could not attribute and left untouched:
/// a report with such a note is `needs_review`, never `completed`.
pub(crate) const UNATTRIBUTED_NOTE: &str = "unattributed:";

/// The creator of a run, from run history's `createdBy` (model `User`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunCreator {
    /// `userObjectId`, parsed; `None` when absent, empty, nil or not a GUID.
    pub object_id: Option<Uuid>,
    /// `userTenantId`, parsed.
    pub tenant_id: Option<Uuid>,
    /// `upn`: often null; never used to attribute a job on its own.
    pub upn: Option<String>,
    /// `userName`: a display name (or a service principal's app id); never identifies anyone.
    pub display_name: Option<String>,
}

fn guid(v: Option<&Value>) -> Option<Uuid> {
    v.and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
        .filter(|u| !u.is_nil())
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl RunCreator {
    /// From a run-history `User` object; `None` when it is not an object.
    pub(crate) fn from_user(user: &Value) -> Option<RunCreator> {
        user.as_object()?;
        Some(RunCreator {
            object_id: guid(user.get("userObjectId")),
            tenant_id: guid(user.get("userTenantId")),
            upn: text(user.get("upn")),
            display_name: text(user.get("userName")),
        })
    }
}

/// One run as run history returns it (model `Run`): the fields attribution needs, and the
/// document itself (exported with the job: it is the subject's run record).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// `runId` (for a job, its ARM name).
    pub run_id: String,
    pub parent_run_id: Option<String>,
    pub root_run_id: Option<String>,
    /// `dataContainerId`: `dcid.<run>`, the run's folder in the artifact container.
    pub data_container_id: Option<String>,
    /// `createdBy`; `None` when the record has none.
    pub creator: Option<RunCreator>,
    pub doc: Value,
}

impl RunRecord {
    /// From a run-history `Run` document; `None` without a `runId`.
    pub(crate) fn from_doc(doc: Value) -> Option<RunRecord> {
        let run_id = text(doc.get("runId"))?;
        Some(RunRecord {
            parent_run_id: text(doc.get("parentRunId")),
            root_run_id: text(doc.get("rootRunId")),
            data_container_id: text(doc.get("dataContainerId")),
            creator: doc.get("createdBy").and_then(RunCreator::from_user),
            run_id,
            doc,
        })
    }

    /// The run's folders in the artifact container: `ExperimentRun/<dcid>/` and, as Azure ML
    /// writes for some runs, `ExperimentRun/<dcid>_setup/`. `None` when the container id could
    /// name more than one folder (a separator, a dot segment, a wildcard).
    pub(crate) fn artifact_prefixes(&self) -> Option<[String; 2]> {
        let dcid = self.data_container_id.as_deref()?;
        if !super::subject::valid_alias(dcid) || dcid.contains('/') || dcid.contains('%') {
            return None;
        }
        Some([
            format!("ExperimentRun/{dcid}/"),
            format!("ExperimentRun/{dcid}_setup/"),
        ])
    }
}

/// Whose a job is, as far as its run record can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    /// The run's object id is the subject's (and the tenants agree where both are known).
    Subject,
    /// The run's object id is someone else's.
    Other,
    /// No run record, or one without an object id: never acted on.
    Unknown,
}

/// Attribute a run to the subject by object id (with the tenant when both sides have one).
/// A UPN or display name in the record never makes a run the subject's.
pub fn attribute(subject: &ResolvedSubject, creator: Option<&RunCreator>) -> Attribution {
    let Some(c) = creator else {
        return Attribution::Unknown;
    };
    let Some(oid) = c.object_id else {
        return Attribution::Unknown;
    };
    let tenant_agrees = match (subject.tenant_id, c.tenant_id) {
        (Some(mine), Some(theirs)) => mine == theirs,
        _ => true,
    };
    if !subject.object_id.is_nil() && oid == subject.object_id && tenant_agrees {
        Attribution::Subject
    } else {
        Attribution::Other
    }
}

/// The per-person legal hold a retention sweep must honour for one job of `ws`: the hold of its
/// creator when the creator is known; when the creator is unknown, any per-person hold that
/// reaches this workspace's jobs (the job may be that person's: it is kept).
pub(crate) fn retention_hold(
    holds: &HoldSet,
    ws: &WorkspaceId,
    creator: Option<&RunCreator>,
) -> Option<HoldRef> {
    let known = creator.and_then(|c| c.object_id.map(|o| (o, c.tenant_id)));
    holds
        .holds
        .iter()
        .filter(|h| h.covers(ws, ResourceType::Jobs))
        .find(|h| match (h.subject_object_id, known) {
            (Some(held), Some((oid, _))) => held == oid,
            // A per-person hold and a job nobody can attribute: keep it.
            (Some(_), None) => true,
            // Holds without a subject are workspace/type holds, applied when slices are planned.
            (None, _) => false,
        })
        .map(|h| HoldRef {
            id: h.id.clone(),
            reason: if known.is_some() {
                h.reason.clone()
            } else {
                format!(
                    "{} (the job's creator is unknown to run history, so it is kept while a per-person hold exists)",
                    h.reason
                )
            },
        })
}

/// Whether a compute document is the subject's personal compute instance. ARM `Compute` with
/// `computeType: ComputeInstance`; in its `properties.properties` (ComputeInstanceProperties)
/// `personalComputeInstanceSettings.assignedUser{objectId, tenantId}` names whom it is assigned
/// to and `createdBy{userName, userOrgId, userId}` (ComputeInstanceCreatedBy) who created it.
/// The assigned user decides when there is one (an admin may create an instance for someone
/// else: it is not the admin's); otherwise the creator's object id and tenant. Clusters and
/// other types are shared and never match; a display name (`userName`) never does.
pub fn personal_compute_of(subject: &ResolvedSubject, doc: &Value) -> bool {
    let is_instance = doc
        .pointer("/properties/computeType")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("ComputeInstance"));
    if !is_instance {
        return false;
    }
    let props = doc.pointer("/properties/properties");
    let person = |oid: Option<&Value>, tenant: Option<&Value>| {
        oid.and_then(Value::as_str).is_some_and(|o| {
            subject.matches_object_id(o) && subject.matches_tenant(tenant.and_then(Value::as_str))
        })
    };
    match props.and_then(|p| p.pointer("/personalComputeInstanceSettings/assignedUser")) {
        Some(assigned) if assigned.get("objectId").and_then(Value::as_str).is_some() => {
            person(assigned.get("objectId"), assigned.get("tenantId"))
        }
        _ => {
            let created = props.and_then(|p| p.get("createdBy"));
            person(
                created.and_then(|c| c.get("userId")),
                created.and_then(|c| c.get("userOrgId")),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::holds::LegalHold;
    use serde_json::json;

    const ALICE: &str = "11111111-1111-1111-1111-111111111111";
    const TENANT: &str = "22222222-2222-2222-2222-222222222222";
    const WS: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w";

    fn alice() -> ResolvedSubject {
        ResolvedSubject {
            object_id: Uuid::parse_str(ALICE).unwrap(),
            tenant_id: Some(Uuid::parse_str(TENANT).unwrap()),
            upn: Some(crate::domain::subject::Upn::parse("alice@contoso.com").unwrap()),
            display_name: None,
            notebook_aliases: vec![],
            notebook_alias_conflicts: 0,
        }
    }

    fn creator(v: Value) -> Option<RunCreator> {
        RunCreator::from_user(&v)
    }

    #[test]
    fn object_id_and_tenant_decide_display_name_and_upn_never_do() {
        let a = alice();
        let c = |v| attribute(&a, creator(v).as_ref());
        assert_eq!(
            c(json!({"userObjectId": ALICE, "userTenantId": TENANT, "userName": "Alice Example"})),
            Attribution::Subject
        );
        // Object id alone (tenant unknown on the record) is enough: it is unique in Entra.
        assert_eq!(c(json!({"userObjectId": ALICE})), Attribution::Subject);
        // Another tenant: another person.
        assert_eq!(
            c(
                json!({"userObjectId": ALICE, "userTenantId": "33333333-2222-2222-2222-222222222222"})
            ),
            Attribution::Other
        );
        // A namesake: same display name, other object id.
        assert_eq!(
            c(
                json!({"userObjectId": "99999999-1111-1111-1111-111111111111", "userName": "Alice Example"})
            ),
            Attribution::Other
        );
        // No object id: unknown, whatever the UPN or name says.
        for v in [
            json!({"upn": "alice@contoso.com", "userName": "Alice Example"}),
            json!({"userObjectId": null}),
            json!({"userObjectId": ""}),
            json!({"userObjectId": "00000000-0000-0000-0000-000000000000"}),
            json!({"userObjectId": "*"}),
            json!({}),
            json!("Alice Example"),
            json!(null),
        ] {
            assert_eq!(c(v.clone()), Attribution::Unknown, "{v}");
        }
        assert_eq!(attribute(&a, None), Attribution::Unknown);
    }

    #[test]
    fn run_records_parse_the_run_history_shape() {
        let r = RunRecord::from_doc(json!({
            "runId": "child_1", "parentRunId": "parent", "rootRunId": "parent",
            "dataContainerId": "dcid.child_1",
            "createdBy": {"userObjectId": ALICE, "userTenantId": TENANT, "userName": "A", "upn": null}
        }))
        .unwrap();
        assert_eq!(r.parent_run_id.as_deref(), Some("parent"));
        assert_eq!(r.creator.as_ref().unwrap().upn, None);
        assert_eq!(
            r.artifact_prefixes().unwrap(),
            [
                "ExperimentRun/dcid.child_1/".to_string(),
                "ExperimentRun/dcid.child_1_setup/".to_string()
            ]
        );
        assert!(RunRecord::from_doc(json!({"status": "Completed"})).is_none());
        for bad in ["", "..", "a/b", "*", "dcid.x/../y", "%2e%2e"] {
            let r = RunRecord::from_doc(json!({"runId": "r", "dataContainerId": bad})).unwrap();
            assert!(r.artifact_prefixes().is_none(), "{bad}");
        }
    }

    #[test]
    fn retention_keeps_a_held_persons_jobs_and_unknown_jobs_while_a_person_is_held() {
        let ws = WorkspaceId::parse(WS).unwrap();
        let holds = HoldSet {
            holds: vec![LegalHold {
                id: "H-1".into(),
                reason: "litigation".into(),
                subject_object_id: Some(Uuid::parse_str(ALICE).unwrap()),
                workspace: None,
                resource_types: vec![],
            }],
        };
        let held = creator(json!({"userObjectId": ALICE}));
        let other = creator(json!({"userObjectId": "99999999-1111-1111-1111-111111111111"}));
        let unknown = creator(json!({"upn": "alice@contoso.com"}));
        assert!(retention_hold(&holds, &ws, held.as_ref()).is_some());
        assert!(retention_hold(&holds, &ws, other.as_ref()).is_none());
        assert!(retention_hold(&holds, &ws, unknown.as_ref()).is_some());
        assert!(retention_hold(&holds, &ws, None).is_some());
        // Without any per-person hold, nothing is held.
        assert!(retention_hold(&HoldSet::default(), &ws, None).is_none());
    }

    #[test]
    fn personal_compute_by_assigned_user_else_creator_never_clusters_or_names() {
        let a = alice();
        let ci = |props: Value| json!({"properties": {"computeType": "ComputeInstance", "properties": props}});
        let other = "99999999-1111-1111-1111-111111111111";
        // The spec example's shape, with Alice assigned.
        assert!(personal_compute_of(
            &a,
            &ci(json!({
            "personalComputeInstanceSettings": {"assignedUser": {"objectId": ALICE, "tenantId": TENANT}},
            "createdBy": {"userName": "admin", "userOrgId": TENANT, "userId": other}}))
        ));
        // Created by Alice, assigned to someone else: theirs.
        assert!(!personal_compute_of(
            &a,
            &ci(json!({
            "personalComputeInstanceSettings": {"assignedUser": {"objectId": other, "tenantId": TENANT}},
            "createdBy": {"userName": "Alice Example", "userOrgId": TENANT, "userId": ALICE}}))
        ));
        // No assigned user: the creator (object id and tenant).
        assert!(personal_compute_of(
            &a,
            &ci(json!({"createdBy": {"userName": "x", "userOrgId": TENANT, "userId": ALICE}}))
        ));
        assert!(!personal_compute_of(
            &a,
            &ci(
                json!({"createdBy": {"userOrgId": "33333333-2222-2222-2222-222222222222", "userId": ALICE}})
            )
        ));
        assert!(!personal_compute_of(
            &a,
            &ci(json!({"createdBy": {"userName": "Alice Example"}}))
        ));
        // A cluster Alice created is shared.
        assert!(!personal_compute_of(
            &a,
            &json!({"properties": {"computeType": "AmlCompute",
            "properties": {"createdBy": {"userOrgId": TENANT, "userId": ALICE}}}})
        ));
        assert!(!personal_compute_of(&a, &json!({})));
    }

    proptest::proptest! {
        #[test]
        fn attribution_never_panics_and_unknown_without_an_object_id(s in "\\PC{0,60}") {
            let a = alice();
            let v = json!({"userObjectId": s, "userTenantId": s, "upn": s, "userName": s});
            let got = attribute(&a, creator(v).as_ref());
            if uuid::Uuid::parse_str(s.trim()).ok() != Some(a.object_id) {
                proptest::prop_assert_ne!(got, Attribution::Subject);
            }
            let _ = RunRecord::from_doc(json!({"runId": s, "dataContainerId": s})).map(|r| r.artifact_prefixes());
        }
    }
}
