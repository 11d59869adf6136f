//! Microsoft Graph behind the [`Directory`] port: a UPN, e-mail or object id resolved to the Entra
//! user (`GET /v1.0/users/{id | userPrincipalName}?$select=id,userPrincipalName,mail,displayName`).
//!
//! A 404 is `None`, which intake turns into `subject_not_found`. An address that is not a UPN
//! (a user's `mail` can differ from their UPN) gets one more chance through
//! `$filter=mail eq '...'`; more than one match is an error, never a guess — picking the wrong
//! person is the one mistake this product cannot make. Needs `User.Read.All` (application) or
//! `User.ReadBasic.All`-equivalent directory read access.

use async_trait::async_trait;
use azure_core::http::Url;
use serde_json::Value;
use uuid::Uuid;

use super::rest::{join, RestClient, RestError};
use crate::domain::request::SubjectRef;
use crate::domain::subject::Upn;
use crate::ports::directory::{Directory, DirectoryEntry, DirectoryError};

pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
const SELECT: &str = "id,userPrincipalName,mail,displayName";

pub struct GraphDirectory {
    rest: RestClient,
    /// `https://graph.microsoft.com` (national clouds and tests: something else).
    endpoint: Url,
}

fn map(e: RestError) -> DirectoryError {
    match e {
        RestError::Transient(m) => DirectoryError::Transient(m),
        RestError::Other(m) => DirectoryError::Other(m),
    }
}

impl GraphDirectory {
    pub fn new(rest: RestClient, endpoint: Url) -> Self {
        Self { rest, endpoint }
    }

    fn entry(v: &Value, subject: &SubjectRef) -> Result<DirectoryEntry, DirectoryError> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let object_id = s("id")
            .and_then(|id| Uuid::parse_str(id).ok())
            .ok_or_else(|| DirectoryError::Other("Graph user without a valid id".into()))?;
        Ok(DirectoryEntry {
            object_id,
            // Graph does not return the tenant on a user; the request's tenant (if any) stands.
            tenant_id: subject.tenant_id,
            upn: s("userPrincipalName").and_then(|u| Upn::parse(u).ok()),
            mail: s("mail").and_then(|u| Upn::parse(u).ok()),
            display_name: s("displayName").map(str::to_string),
            // Azure ML names a user's notebooks folder after the UPN's local part, as the
            // directory spells it (case kept: `Users/Alice.Smith/` is not `Users/alice.smith/`).
            notebook_aliases: s("userPrincipalName")
                .and_then(|u| u.split_once('@').map(|(local, _)| local.to_string()))
                .filter(|a| crate::domain::subject::valid_alias(a))
                .into_iter()
                .collect(),
        })
    }

    async fn by_key(&self, key: &str) -> Result<Option<Value>, DirectoryError> {
        let mut url = join(&self.endpoint, "v1.0/users").map_err(map)?;
        url.path_segments_mut()
            .map_err(|_| DirectoryError::Other("graph endpoint cannot be a base".into()))?
            .push(key);
        url.query_pairs_mut().append_pair("$select", SELECT);
        let r = self.rest.get(&url).await.map_err(map)?;
        match r.status {
            200 => r.json().map(Some).map_err(map),
            404 => Ok(None),
            _ => Err(map(r.error())),
        }
    }

    async fn by_mail(&self, mail: &str) -> Result<Option<Value>, DirectoryError> {
        let mut url = join(&self.endpoint, "v1.0/users").map_err(map)?;
        let escaped = mail.replace('\'', "''");
        url.query_pairs_mut()
            .append_pair("$filter", &format!("mail eq '{escaped}'"))
            .append_pair("$select", SELECT);
        let r = self.rest.get(&url).await.map_err(map)?;
        if r.status != 200 {
            return Err(map(r.error()));
        }
        let v = r.json().map_err(map)?;
        let users = v
            .get("value")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        match users.len() {
            0 => Ok(None),
            1 => Ok(users.into_iter().next()),
            n => Err(DirectoryError::Other(format!(
                "{n} directory users have this e-mail address; name the subject by object id"
            ))),
        }
    }
}

#[async_trait]
impl Directory for GraphDirectory {
    async fn lookup(&self, subject: &SubjectRef) -> Result<Option<DirectoryEntry>, DirectoryError> {
        let found = if let Some(oid) = subject.object_id {
            self.by_key(&oid.to_string()).await?
        } else if let Some(upn) = &subject.upn {
            match self.by_key(upn.as_str()).await? {
                Some(v) => Some(v),
                None => self.by_mail(upn.as_str()).await?,
            }
        } else {
            None
        };
        let Some(v) = found else { return Ok(None) };
        // Like the local directory: an object id, when given, is what identifies the subject.
        let entry = Self::entry(&v, subject)?;
        Ok(Some(entry))
    }

    /// `GET /v1.0/users?$filter=startswith(userPrincipalName,'<alias>@')` (`startswith` on
    /// `userPrincipalName` is a supported, case-insensitive Graph filter), pages followed by
    /// `@odata.nextLink` on the same endpoint; exact local parts kept.
    async fn alias_holders(&self, alias: &str) -> Result<Vec<Uuid>, DirectoryError> {
        let mut url = join(&self.endpoint, "v1.0/users").map_err(map)?;
        let escaped = alias.replace('\'', "''");
        url.query_pairs_mut()
            .append_pair(
                "$filter",
                &format!("startswith(userPrincipalName,'{escaped}@')"),
            )
            .append_pair("$select", "id,userPrincipalName");
        let mut out = Vec::new();
        for _ in 0..50 {
            let r = self.rest.get(&url).await.map_err(map)?;
            if r.status != 200 {
                return Err(map(r.error()));
            }
            let v = r.json().map_err(map)?;
            for u in v
                .get("value")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let local = u
                    .get("userPrincipalName")
                    .and_then(Value::as_str)
                    .and_then(|p| p.split_once('@'))
                    .map(|(l, _)| l);
                let id = u
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|i| Uuid::parse_str(i).ok());
                if let (Some(l), Some(id)) = (local, id) {
                    if l.eq_ignore_ascii_case(alias) {
                        out.push(id);
                    }
                }
            }
            match v.get("@odata.nextLink").and_then(Value::as_str) {
                Some(next) if next.starts_with(self.endpoint.as_str().trim_end_matches('/')) => {
                    url = Url::parse(next)
                        .map_err(|e| DirectoryError::Other(format!("Graph nextLink: {e}")))?;
                }
                Some(_) => {
                    return Err(DirectoryError::Other(
                        "Graph nextLink points off the configured endpoint".into(),
                    ))
                }
                None => return Ok(out),
            }
        }
        Err(DirectoryError::Other(
            "too many Graph pages of users sharing one notebooks alias".into(),
        ))
    }
}
