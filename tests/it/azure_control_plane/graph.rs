//! `GraphDirectory` against replayed Graph responses.

use super::*;

#[tokio::test]
async fn graph_resolves_upn_and_reports_unknown_users_as_none() {
    let server = serve(GRAPH_SCOPE, |c| {
        assert_eq!(
            c.req.query.get("$select").map(String::as_str),
            Some("id,userPrincipalName,mail,displayName")
        );
        match c.req.path.as_str() {
            "/v1.0/users/adelev@contoso.com" | "/v1.0/users/87d349ed-44d7-43e1-9a83-5f2406dee5bd" => {
                (200, vec![], example("graph/user-get.json"))
            }
            "/v1.0/users" => {
                assert_eq!(
                    c.req.query.get("$filter").map(String::as_str),
                    Some("mail eq 'nobody@contoso.com'")
                );
                (200, vec![], json!({"value": []}))
            }
            _ => (
                404,
                vec![],
                json!({"error": {"code": "Request_ResourceNotFound", "message": "Resource does not exist"}}),
            ),
        }
    })
    .await;
    let dir = GraphDirectory::new(rest(GRAPH_SCOPE), server.url());
    let subject = |upn: &str| SubjectRef {
        object_id: None,
        upn: Some(Upn::parse(upn).unwrap()),
        tenant_id: None,
        display_name: None,
    };
    let e = dir
        .lookup(&subject("AdeleV@contoso.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e.object_id.to_string(),
        "87d349ed-44d7-43e1-9a83-5f2406dee5bd"
    );
    assert_eq!(e.upn.as_ref().map(Upn::as_str), Some("adelev@contoso.com"));
    assert_eq!(e.display_name.as_deref(), Some("Adele Vance"));
    let by_oid = SubjectRef {
        object_id: Some(e.object_id),
        upn: None,
        tenant_id: None,
        display_name: None,
    };
    assert_eq!(
        dir.lookup(&by_oid).await.unwrap().unwrap().object_id,
        e.object_id
    );
    assert!(dir
        .lookup(&subject("nobody@contoso.com"))
        .await
        .unwrap()
        .is_none());
}
