//! Identity stand-in: the App Service managed-identity token protocol that `azure_identity`'s
//! `ManagedIdentityCredential` speaks (`GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&
//! resource=<uri>` with header `X-IDENTITY-HEADER: {IDENTITY_HEADER}`), plus the audience check
//! every other stand-in does on `Authorization: Bearer <jwt>`.
//!
//! Tokens are unsigned-but-well-formed JWTs that Azurite's `--oauth basic` accepts: Azurite only
//! decodes the token and checks `nbf`/`exp`/`iat` are present and current, `iss` starts with
//! `https://sts.windows.net/`, and `aud` is a storage audience such as `https://storage.azure.com`
//! (Azure/Azurite `src/blob/authentication/BlobTokenAuthenticator.ts`, `VALID_ISSUE_PREFIXES`,
//! `VALID_BLOB_AUDIENCES`). `aud` is the requested resource, as Entra issues it. A token is the
//! same for the same resource for the stand-in's lifetime, so a server that compares the whole
//! header (the local ARM server's `bearer` option) can be given [`IdentityStandIn::bearer`].

use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use azure_core::credentials::TokenCredential;
use base64::Engine;
use serde_json::{json, Value};

use super::server::{json_reply, text_reply, BackgroundServer};

/// Tenant of every token (a fixed GUID; Azurite ignores it, user delegation keys echo it).
pub const TENANT_ID: &str = "72f988bf-0000-4000-8000-00000000d5a1";
/// Object id of the managed identity the handler runs as.
pub const IDENTITY_OBJECT_ID: &str = "5b0c3b8e-0000-4000-8000-0000000000a1";
const TOKEN_LIFETIME_SECS: i64 = 24 * 3600;

struct IdentityState {
    secret: String,
    /// Issue time shared by all tokens, so a resource's token never changes.
    epoch: i64,
    /// Resources tokens were requested for, in order.
    requested: Mutex<Vec<String>>,
}

/// A running managed-identity endpoint.
pub struct IdentityStandIn {
    server: BackgroundServer,
    /// Value for `IDENTITY_ENDPOINT`.
    pub endpoint: String,
    /// Value for `IDENTITY_HEADER`.
    pub header: String,
    state: Arc<IdentityState>,
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
    resource: Option<String>,
}

async fn token(
    State(st): State<Arc<IdentityState>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    // App Service answers a missing or wrong secret header with 401 / 400; the credential only
    // needs to see a failure, not parse it.
    if headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        != Some(st.secret.as_str())
    {
        return text_reply(
            401,
            "text/plain",
            "missing or wrong X-IDENTITY-HEADER".into(),
        );
    }
    if q.api_version.as_deref() != Some("2019-08-01") {
        return text_reply(400, "text/plain", "unsupported api-version".into());
    }
    let Some(resource) = q.resource.filter(|r| !r.trim().is_empty()) else {
        return text_reply(400, "text/plain", "resource is required".into());
    };
    st.requested
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(resource.clone());
    let exp = st.epoch + TOKEN_LIFETIME_SECS;
    // App Service 2019-08-01 response: expires_on is Unix seconds as a string.
    json_reply(
        200,
        &[],
        &json!({
            "access_token": jwt(&resource, st.epoch),
            "expires_on": exp.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": IDENTITY_OBJECT_ID,
        }),
    )
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An Entra v1-style access token for `resource` issued at `iat`.
pub fn jwt(resource: &str, iat: i64) -> String {
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "stand-in"});
    let claims = json!({
        "aud": resource,
        "iss": format!("https://sts.windows.net/{TENANT_ID}/"),
        "iat": iat,
        "nbf": iat,
        "exp": iat + TOKEN_LIFETIME_SECS,
        "oid": IDENTITY_OBJECT_ID,
        "sub": IDENTITY_OBJECT_ID,
        "tid": TENANT_ID,
        "appid": IDENTITY_OBJECT_ID,
        "idtyp": "app",
        "ver": "1.0",
    });
    // Nobody verifies the signature (Azurite skips it in basic mode; the stand-ins check claims).
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(b"stand-in signature, not verified")
    )
}

impl IdentityStandIn {
    /// Start a new endpoint (with its own secret). Tests that build credentials in-process
    /// should use [`Self::shared`], because the credential reads the process environment.
    pub fn start() -> IdentityStandIn {
        let state = Arc::new(IdentityState {
            secret: format!("stand-in-{}", uuid::Uuid::new_v4()),
            // A minute in the past: tolerates clock reads racing between processes.
            epoch: time::OffsetDateTime::now_utc().unix_timestamp() - 60,
            requested: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/msi/token", axum::routing::get(token))
            .with_state(state.clone());
        let server = BackgroundServer::start("identity", app);
        IdentityStandIn {
            endpoint: format!("{}/msi/token", server.base_url),
            header: state.secret.clone(),
            server,
            state,
        }
    }

    /// The process-wide endpoint; the first call also sets `IDENTITY_ENDPOINT` and
    /// `IDENTITY_HEADER` in this process (before any credential is built), never changed later.
    pub fn shared() -> &'static IdentityStandIn {
        static SHARED: OnceLock<IdentityStandIn> = OnceLock::new();
        SHARED.get_or_init(|| {
            let id = IdentityStandIn::start();
            std::env::set_var("IDENTITY_ENDPOINT", &id.endpoint);
            std::env::set_var("IDENTITY_HEADER", &id.header);
            id
        })
    }

    /// `ManagedIdentityCredential` pointed at this endpoint (only valid for [`Self::shared`]).
    pub fn credential(&'static self) -> Arc<dyn TokenCredential> {
        assert_eq!(
            std::env::var("IDENTITY_ENDPOINT").ok().as_deref(),
            Some(self.endpoint.as_str()),
            "IDENTITY_ENDPOINT is not this stand-in; use IdentityStandIn::shared()"
        );
        azure_identity::ManagedIdentityCredential::new(None).expect("managed identity credential")
    }

    /// Environment a child process needs to get tokens here.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("IDENTITY_ENDPOINT".into(), self.endpoint.clone()),
            ("IDENTITY_HEADER".into(), self.header.clone()),
        ]
    }

    /// The token this endpoint issues for `resource` (e.g. `https://management.azure.com`).
    pub fn token_for(&self, resource: &str) -> String {
        jwt(resource, self.state.epoch)
    }

    /// The whole `Authorization` header value for `resource`.
    pub fn bearer(&self, resource: &str) -> String {
        format!("Bearer {}", self.token_for(resource))
    }

    /// Resources tokens were requested for, in order.
    pub fn requested(&self) -> Vec<String> {
        self.state
            .requested
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenProblem {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a decodable JWT, or `exp`/`nbf` say it is not valid now.
    Invalid(String),
    /// Valid token for another audience (the value of its `aud`).
    WrongAudience(String),
}

/// The claims of the request's bearer token, if it is a current JWT (signature not checked).
pub fn bearer_claims(headers: &HeaderMap) -> Result<Value, TokenProblem> {
    let value = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or(TokenProblem::Missing)?;
    let token = value
        .strip_prefix("Bearer ")
        .ok_or(TokenProblem::Missing)?
        .trim();
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| TokenProblem::Invalid("not a JWT".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| TokenProblem::Invalid("payload is not base64url".into()))?;
    let claims: Value = serde_json::from_slice(&bytes)
        .map_err(|_| TokenProblem::Invalid("payload is not JSON".into()))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let exp = claims.get("exp").and_then(Value::as_i64);
    let nbf = claims.get("nbf").and_then(Value::as_i64);
    match (exp, nbf) {
        (Some(exp), _) if exp < now => Err(TokenProblem::Invalid("token expired".into())),
        (_, Some(nbf)) if nbf > now + 300 => {
            Err(TokenProblem::Invalid("token not yet valid".into()))
        }
        (None, _) => Err(TokenProblem::Invalid("no exp claim".into())),
        _ => Ok(claims),
    }
}

/// Whether `aud` is one of `accepted` (trailing `/` and case ignored, as Entra audiences are
/// compared by the services).
pub fn audience_matches(aud: &str, accepted: &[&str]) -> bool {
    let norm = |s: &str| s.trim_end_matches('/').to_ascii_lowercase();
    accepted.iter().any(|a| norm(a) == norm(aud))
}

/// Check the request's bearer token is current and for one of `accepted` audiences.
pub fn check_bearer(headers: &HeaderMap, accepted: &[&str]) -> Result<Value, TokenProblem> {
    let claims = bearer_claims(headers)?;
    let aud = claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if audience_matches(&aud, accepted) {
        Ok(claims)
    } else {
        Err(TokenProblem::WrongAudience(aud))
    }
}
