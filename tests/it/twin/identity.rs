//! The managed-identity stand-in: JWTs for the requested audience.

use super::*;

#[tokio::test]
async fn identity_issues_jwts_for_the_requested_audience() {
    let id = IdentityStandIn::shared();
    let cred = credential();
    let token = cred
        .get_token(&["https://storage.azure.com/.default"], None)
        .await
        .unwrap();
    let c = claims(token.token.secret());
    assert_eq!(c["aud"], "https://storage.azure.com");
    assert!(c["iss"]
        .as_str()
        .unwrap()
        .starts_with("https://sts.windows.net/"));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(c["nbf"].as_i64().unwrap() <= now && c["exp"].as_i64().unwrap() > now + 3600);
    assert!(c["iat"].is_i64() && c["oid"].is_string() && c["tid"].is_string());
    // Deterministic per resource, so a server comparing the whole header can be told it.
    assert_eq!(
        token.token.secret(),
        id.token_for("https://storage.azure.com")
    );
    assert!(id
        .requested()
        .contains(&"https://storage.azure.com".to_string()));
    // The protocol's secret header and api-version are required.
    let r = http()
        .get(format!(
            "{}?api-version=2019-08-01&resource=https://storage.azure.com",
            id.endpoint
        ))
        .header("X-IDENTITY-HEADER", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http()
        .get(format!("{}?api-version=2017-09-01&resource=x", id.endpoint))
        .header("X-IDENTITY-HEADER", &id.header)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
