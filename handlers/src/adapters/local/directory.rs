//! Local identity directory: a JSON file of users (`[{objectId, tenantId, upn, mail,
//! displayName, notebookAliases}]`), standing in for Microsoft Graph.

use std::path::PathBuf;

use async_trait::async_trait;

use crate::domain::request::SubjectRef;
use crate::ports::directory::{Directory, DirectoryEntry, DirectoryError};

pub struct FileDirectory {
    path: PathBuf,
}

impl FileDirectory {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    fn load(&self) -> Result<Vec<DirectoryEntry>, DirectoryError> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| DirectoryError::Other(format!("directory file is invalid: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(DirectoryError::Transient(e.to_string())),
        }
    }
}

#[async_trait]
impl Directory for FileDirectory {
    async fn lookup(&self, subject: &SubjectRef) -> Result<Option<DirectoryEntry>, DirectoryError> {
        let entries = self.load()?;
        if let Some(oid) = subject.object_id {
            return Ok(entries.into_iter().find(|e| e.object_id == oid));
        }
        let Some(upn) = &subject.upn else {
            return Ok(None);
        };
        Ok(entries
            .into_iter()
            .find(|e| e.upn.as_ref() == Some(upn) || e.mail.as_ref() == Some(upn)))
    }

    async fn alias_holders(&self, alias: &str) -> Result<Vec<uuid::Uuid>, DirectoryError> {
        Ok(self
            .load()?
            .into_iter()
            .filter(|e| {
                e.upn
                    .as_ref()
                    .is_some_and(|u| u.local_part().eq_ignore_ascii_case(alias))
                    || e.notebook_aliases
                        .iter()
                        .any(|a| a.eq_ignore_ascii_case(alias))
            })
            .map(|e| e.object_id)
            .collect())
    }
}
