//! `GraphDirectory` against the Graph stand-in: users resolved, 404 / 429 / wrong audience honoured.

use super::*;

fn by_upn(upn: &str) -> SubjectRef {
    SubjectRef {
        object_id: None,
        upn: Some(Upn::parse(upn).unwrap()),
        tenant_id: None,
        display_name: None,
    }
}

#[tokio::test]
async fn graph_directory_resolves_users_and_honours_404_429_and_audience() {
    let graph = GraphStandIn::start(vec![
        // Her UPN as the directory spells it: the notebooks folder keeps its case.
        DirectoryUser::new(ALICE, "Alice@contoso.com", "Alice Smith"),
        // Mail differs from the UPN: found through the adapter's `$filter=mail eq` fallback.
        DirectoryUser::new(
            BOB,
            "bob_contoso.com#EXT#@contoso.onmicrosoft.com",
            "Bob Jones",
        )
        .with_mail(Some("bob@contoso.com")),
    ]);
    let dir = GraphDirectory::new(rest(GRAPH_SCOPE), url(graph.base_url()));

    let alice = dir
        .lookup(&by_upn("Alice@Contoso.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.object_id.to_string(), ALICE);
    assert_eq!(alice.display_name.as_deref(), Some("Alice Smith"));
    assert_eq!(
        alice.notebook_aliases,
        ["Alice"],
        "case kept from the directory"
    );
    let by_oid = SubjectRef {
        object_id: Some(alice.object_id),
        upn: None,
        tenant_id: None,
        display_name: None,
    };
    assert_eq!(
        dir.lookup(&by_oid).await.unwrap().unwrap().object_id,
        alice.object_id
    );
    let bob = dir
        .lookup(&by_upn("bob@contoso.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob.object_id.to_string(), BOB);
    assert!(dir
        .lookup(&by_upn("nobody@contoso.com"))
        .await
        .unwrap()
        .is_none());

    let seen = graph.requests();
    assert!(seen
        .iter()
        .all(|s| s.query("$select") == Some("id,userPrincipalName,mail,displayName")));
    // Who else a notebooks folder name could belong to (case-insensitive, as Azure Files is).
    assert_eq!(dir.alias_holders("alice").await.unwrap(), [alice.object_id]);
    graph.add_user(DirectoryUser::new(
        "44444444-4444-4444-4444-444444444444",
        "ALICE@fabrikam.com",
        "Alice Other",
    ));
    assert_eq!(dir.alias_holders("Alice").await.unwrap().len(), 2);
    assert!(dir.alias_holders("ali").await.unwrap().is_empty());
    let not_found = seen
        .iter()
        .find(|s| s.path == "/v1.0/users/nobody@contoso.com")
        .unwrap();
    assert_eq!(not_found.status, 404);
    // The documented 404 body.
    let r = http()
        .get(format!(
            "{}/v1.0/users/nobody@contoso.com",
            graph.base_url()
        ))
        .bearer_auth(IdentityStandIn::shared().token_for("https://graph.microsoft.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");
    assert!(body["error"]["innerError"]["request-id"].is_string());
    // $select projects: only the selected properties (plus @odata.context) come back.
    let r = http()
        .get(format!(
            "{}/v1.0/users/{ALICE}?$select=id,mail",
            graph.base_url()
        ))
        .bearer_auth(IdentityStandIn::shared().token_for("https://graph.microsoft.com"))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "{body}");
    assert_eq!(body["mail"], "Alice@contoso.com");

    // 429 + Retry-After: the adapter waits as told and then succeeds.
    graph.throttle_next(1, 1);
    let t = Instant::now();
    assert!(dir
        .lookup(&by_upn("alice@contoso.com"))
        .await
        .unwrap()
        .is_some());
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        graph.requests().iter().filter(|s| s.status == 429).count(),
        1
    );

    // A token for ARM is refused as Graph refuses it, and that is not retried.
    let wrong = GraphDirectory::new(rest(ARM_SCOPE), url(graph.base_url()));
    let err = wrong
        .lookup(&by_upn("alice@contoso.com"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DirectoryError::Other(m) if m.contains("401") && m.contains("InvalidAuthenticationToken")),
        "{err}"
    );
}
