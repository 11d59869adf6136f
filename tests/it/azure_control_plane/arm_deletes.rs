//! ARM deletes: long-running operations (202 + `Location` / `Azure-AsyncOperation`) and the
//! outcomes 404, 409, 5xx and foreign ids.

use super::*;

#[tokio::test]
async fn job_delete_202_polls_location_until_gone() {
    let job = format!("{WS}/jobs/my-favorite-aml-job");
    let j = job.clone();
    let server = serve(ARM_SCOPE, move |c| {
        assert_eq!(c.req.path, j);
        match c.req.method.as_str() {
            // Job/delete.json: 202 with `location` = the job itself.
            "DELETE" => {
                let loc = example("ml/job-delete.json")["responses"]["202"]["headers"]["location"]
                    .as_str()
                    .unwrap()
                    .replace("http://subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/workspaces/{workspaceName}", &format!("{}{WS}", c.base));
                (202, vec![("location", format!("{loc}?api-version=2024-10-01"))], Value::Null)
            }
            "GET" if c.n < 2 => (202, vec![], Value::Null),
            "GET" => not_found(),
            m => panic!("unexpected {m}"),
        }
    })
    .await;
    let r = arm(&server)
        .delete(&ws(), ArmKind::Job, &job)
        .await
        .unwrap();
    assert_eq!(r, ResourceDelete::Deleted);
    assert_eq!(server.requests("GET", "my-favorite-aml-job").len(), 3);
}

#[tokio::test]
async fn compute_delete_polls_azure_async_operation() {
    let compute = format!("{WS}/computes/compute123");
    let c2 = compute.clone();
    let server = serve(ARM_SCOPE, move |c| {
        if c.req.method == "DELETE" {
            assert_eq!(c.req.path, c2);
            assert_eq!(
                c.req
                    .query
                    .get("underlyingResourceAction")
                    .map(String::as_str),
                Some("Delete")
            );
            // Compute/delete.json: 202 with both headers; the status document wins.
            let h = &example("ml/compute-delete.json")["responses"]["202"]["headers"];
            let rebase = |v: &Value| {
                v.as_str()
                    .unwrap()
                    .replace("https://management.azure.com", c.base)
                    .replace("...", "")
            };
            return (
                202,
                vec![
                    ("azure-asyncoperation", rebase(&h["Azure-AsyncOperation"])),
                    ("location", rebase(&h["Location"])),
                    ("retry-after", "0".into()),
                ],
                Value::Null,
            );
        }
        assert!(
            c.req.path.contains("pathToOperationStatus"),
            "{}",
            c.req.path
        );
        if c.n == 0 {
            (200, vec![], json!({"status": "InProgress"}))
        } else {
            (200, vec![], json!({"status": "Succeeded"}))
        }
    })
    .await;
    let r = arm(&server)
        .delete(&ws(), ArmKind::Compute, &compute)
        .await
        .unwrap();
    assert_eq!(r, ResourceDelete::Deleted);
    assert!(server.requests("GET", "pathToOperationResult").is_empty());

    let failing = serve(ARM_SCOPE, |c| {
        if c.req.method == "DELETE" {
            return (
                202,
                vec![("azure-asyncoperation", format!("{}/op", c.base))],
                Value::Null,
            );
        }
        (
            200,
            vec![],
            json!({"status": "Failed", "error": {"code": "Locked", "message": "resource is locked"}}),
        )
    })
    .await;
    let r = arm(&failing)
        .delete(&ws(), ArmKind::Compute, &compute)
        .await
        .unwrap();
    assert!(
        matches!(r, ResourceDelete::Refused(ref m) if m.contains("resource is locked")),
        "{r:?}"
    );
}

#[tokio::test]
async fn delete_outcomes_404_409_5xx_and_foreign_ids() {
    let server = serve(ARM_SCOPE, |c| {
        let name = c.req.path.rsplit('/').next().unwrap().to_string();
        match name.as_str() {
            "gone" => not_found(),
            "running" => (
                409,
                vec![],
                json!({"error": {"code": "Conflict", "message": "Job is in Running state and cannot be deleted"}}),
            ),
            "flaky" if c.n < 2 => (503, vec![], json!({"error": {"code": "ServiceUnavailable", "message": "try later"}})),
            "flaky" => (200, vec![], Value::Null),
            "down" => (500, vec![], json!({"error": {"code": "InternalServerError", "message": "boom"}})),
            other => panic!("unexpected {other}"),
        }
    })
    .await;
    let cp = arm(&server);
    let id = |n: &str| format!("{WS}/jobs/{n}");
    assert_eq!(
        cp.delete(&ws(), ArmKind::Job, &id("gone")).await.unwrap(),
        ResourceDelete::NotFound
    );
    match cp
        .delete(&ws(), ArmKind::Job, &id("running"))
        .await
        .unwrap()
    {
        ResourceDelete::Refused(m) => assert!(m.contains("Running state"), "{m}"),
        other => panic!("running job must be refused, got {other:?}"),
    }
    assert_eq!(
        cp.delete(&ws(), ArmKind::Job, &id("flaky")).await.unwrap(),
        ResourceDelete::Deleted
    );
    assert_eq!(server.requests("DELETE", "/flaky").len(), 3);
    let err = cp
        .delete(&ws(), ArmKind::Job, &id("down"))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(
        server.requests("DELETE", "/down").len(),
        5,
        "first try + 4 retries"
    );
    // Not a job of this workspace: refused without a request.
    let foreign = "/subscriptions/x/resourceGroups/y/providers/Microsoft.MachineLearningServices/workspaces/other/jobs/j";
    assert!(matches!(
        cp.delete(&ws(), ArmKind::Job, foreign).await.unwrap(),
        ResourceDelete::Refused(_)
    ));
    assert!(server.requests("DELETE", "/j").is_empty());
}
