//! The identity directory port: resolves a UPN or e-mail to an Entra object id (Microsoft Graph
//! `GET /users/{upn}` in Azure; a directory file locally).

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::request::SubjectRef;
use crate::domain::subject::Upn;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryEntry {
    pub object_id: Uuid,
    #[serde(default)]
    pub tenant_id: Option<Uuid>,
    #[serde(default)]
    pub upn: Option<Upn>,
    #[serde(default)]
    pub mail: Option<Upn>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Folder name(s) under `Users/` in notebooks shares, when not the UPN's local part.
    #[serde(default)]
    pub notebook_aliases: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("transient directory error: {0}")]
    Transient(String),
    #[error("directory error: {0}")]
    Other(String),
}

#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// The directory entry for a subject, `None` when the directory has no such user.
    async fn lookup(&self, subject: &SubjectRef) -> Result<Option<DirectoryEntry>, DirectoryError>;

    /// The object ids of every user whose UPN's local part is `alias`, compared
    /// case-insensitively (Azure Files names are): the people one `Users/<alias>/` notebooks
    /// folder could belong to. More than one means the folder is not provably anyone's.
    async fn alias_holders(&self, alias: &str) -> Result<Vec<uuid::Uuid>, DirectoryError>;
}
