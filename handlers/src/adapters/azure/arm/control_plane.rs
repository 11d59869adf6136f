//! The `ControlPlane` port on ARM: what each method asks the Azure Machine Learning REST API and
//! how its answers (pages, soft-deleted workspaces, long-running deletes, refusals) map onto the
//! port's types.

use super::*;

/// `properties.provisioningState` of a soft-deleted workspace.
const SOFT_DELETED: &str = "SoftDeleted";

pub(super) fn soft_deleted(doc: &Value) -> bool {
    str_at(doc, "/properties/provisioningState")
        .is_some_and(|s| s.eq_ignore_ascii_case(SOFT_DELETED))
}

#[async_trait]
impl ControlPlane for AzureMlControlPlane {
    async fn workspace(&self, ws: &WorkspaceId) -> Result<WorkspaceInfo, ControlPlaneError> {
        let doc = self
            .get_json(&self.url(&ws.to_string(), &[])?)
            .await?
            .ok_or(ControlPlaneError::WorkspaceNotFound)?;
        // A soft-deleted workspace has nothing to act on until it is recovered.
        if soft_deleted(&doc) {
            return Err(ControlPlaneError::WorkspaceNotFound);
        }
        let storage_account = str_at(&doc, "/properties/storageAccount")
            .and_then(last_segment)
            // Account names are lower-case; ARM ids are case-insensitive.
            .map(|a| a.to_ascii_lowercase())
            .ok_or_else(|| ControlPlaneError::Other("workspace has no storage account".into()))?;
        let blob = self.datastore(ws, "workspaceblobstore").await?;
        let blobstore_container = blob
            .as_ref()
            .and_then(|d| str_at(d, "/properties/containerName").map(str::to_string))
            .ok_or_else(|| {
                ControlPlaneError::Other("datastore workspaceblobstore has no containerName".into())
            })?;
        // Run history artifacts (`ExperimentRun/dcid.*`) live in the `azureml` container,
        // registered as datastore `workspaceartifactstore` when present.
        let artifact_container = self
            .datastore(ws, "workspaceartifactstore")
            .await?
            .as_ref()
            .and_then(|d| str_at(d, "/properties/containerName").map(str::to_string))
            .unwrap_or_else(|| "azureml".to_string());
        let file_share = self
            .datastore(ws, "workspaceworkingdirectory")
            .await?
            .as_ref()
            .and_then(|d| str_at(d, "/properties/fileShareName").map(str::to_string))
            .unwrap_or_default();
        let app_insights = str_at(&doc, "/properties/applicationInsights").map(str::to_string);
        let log_analytics_workspace = match &app_insights {
            Some(ai) => self.log_analytics_of(ai).await,
            None => None,
        };
        let (diagnostic_destinations, diagnostic_settings_error) = match self
            .diagnostic_destinations(ws)
            .await
        {
            Ok(d) => (d, None),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the workspace's diagnostic settings; telemetry will not be searched");
                (Vec::new(), Some(e))
            }
        };
        let tags = doc
            .get("tags")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(WorkspaceInfo {
            id: ws.clone(),
            storage_account,
            artifact_container,
            blobstore_container,
            file_share,
            app_insights,
            log_analytics_workspace,
            diagnostic_destinations,
            diagnostic_settings_error,
            key_vault: str_at(&doc, "/properties/keyVault").map(str::to_string),
            tags,
            location: str_at(&doc, "/location").map(str::to_string),
        })
    }

    /// Datastores_List, every page (`nextLink` followed on this endpoint only).
    /// OnlineEndpoints_List / BatchEndpoints_List, then OnlineDeployments_List /
    /// BatchDeployments_List per endpoint, each following `nextLink`.
    async fn deployments(&self, ws: &WorkspaceId) -> Result<Vec<Value>, ControlPlaneError> {
        let mut out = Vec::new();
        for collection in ["onlineEndpoints", "batchEndpoints"] {
            let endpoints = self
                .all_pages(self.url(&format!("{ws}/{collection}"), &[])?)
                .await?;
            for e in endpoints {
                let Some(name) = str_at(&e, "/name") else {
                    continue;
                };
                let mut url = self.url(&format!("{ws}/{collection}"), &[])?;
                url.path_segments_mut()
                    .map_err(|_| ControlPlaneError::Other("endpoint cannot be a base".into()))?
                    .push(name)
                    .push("deployments");
                out.extend(self.all_pages(url).await?);
            }
        }
        Ok(out)
    }

    async fn datastores(&self, ws: &WorkspaceId) -> Result<Vec<Datastore>, ControlPlaneError> {
        let mut url = self.url(&format!("{ws}/datastores"), &[])?;
        let mut out = Vec::new();
        loop {
            let page = self.page(&url).await?;
            out.extend(page.value.iter().filter_map(Datastore::from_arm));
            match page.next_link {
                Some(link) => url = self.followable(&link)?,
                None => return Ok(out),
            }
        }
    }

    /// Workspaces_Get: 404 is gone; 200 with `provisioningState: SoftDeleted` is soft-deleted.
    async fn workspace_state(&self, ws: &WorkspaceId) -> Result<WorkspaceState, ControlPlaneError> {
        Ok(
            match self.get_json(&self.url(&ws.to_string(), &[])?).await? {
                None => WorkspaceState::Gone,
                Some(doc) if soft_deleted(&doc) => WorkspaceState::SoftDeleted,
                Some(_) => WorkspaceState::Active,
            },
        )
    }

    async fn list(
        &self,
        ws: &WorkspaceId,
        kind: ArmKind,
        next_link: Option<String>,
    ) -> Result<ResourcePage, ControlPlaneError> {
        let collection = match kind {
            ArmKind::Job => "jobs",
            ArmKind::Compute => "computes",
            // Schedules_List (`listViewType=All`: disabled schedules are the subject's too).
            ArmKind::Schedule => "schedules",
            ArmKind::ModelVersion => return self.list_versions(ws, "models", next_link).await,
            ArmKind::DataVersion => return self.list_versions(ws, "data", next_link).await,
        };
        let url = match next_link {
            Some(link) => self.followable(&link)?,
            None if kind == ArmKind::Compute => self.url(&format!("{ws}/{collection}"), &[])?,
            None => self.child_url(ws, collection, None)?,
        };
        self.page(&url).await
    }

    async fn exists(
        &self,
        ws: &WorkspaceId,
        kind: ArmKind,
        id: &str,
    ) -> Result<bool, ControlPlaneError> {
        if !Self::owned(ws, kind, id) {
            return Err(ControlPlaneError::Other(format!(
                "not a {} of this workspace",
                kind.as_str()
            )));
        }
        Ok(self.get_json(&self.url(id, &[])?).await?.is_some())
    }

    async fn delete(
        &self,
        ws: &WorkspaceId,
        kind: ArmKind,
        id: &str,
    ) -> Result<ResourceDelete, ControlPlaneError> {
        if !Self::owned(ws, kind, id) {
            return Ok(ResourceDelete::Refused(format!(
                "not a {} of this workspace",
                kind.as_str()
            )));
        }
        // A personal compute instance: delete the VM too, not only the workspace's reference.
        let query: &[(&str, &str)] = if kind == ArmKind::Compute {
            &[("underlyingResourceAction", "Delete")]
        } else {
            &[]
        };
        let url = self.url(id, query)?;
        self.delete_url(&url).await
    }
}
