//! What the local ARM server serves from its documents: pages of names with a continuation
//! token, the documents and containers of a listing, one resource, Application Insights
//! components, and the long-running-operation answers (202, operation status) of a delete.

use super::*;

impl Shared {
    /// One page of names after `after`, and the continuation token if more remain.
    pub(super) fn page<'a>(
        &self,
        names: &'a [String],
        after: Option<&str>,
    ) -> (&'a [String], Option<String>) {
        let start = after.map_or(0, |a| names.partition_point(|n| n.as_str() <= a));
        let end = (start + self.opts.page_size.max(1)).min(names.len());
        let token = (end < names.len()).then(|| names[end - 1].clone());
        (&names[start..end], token)
    }

    pub(super) async fn names(
        &self,
        ws: &WorkspaceId,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        let container = LocalControlPlane::container(ws);
        let mut names: Vec<String> = self
            .store
            .list_all(ARM_ACCOUNT, &container, prefix)
            .await?
            .into_iter()
            .map(|i| i.name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// A list of documents (`jobs/`, `computes/`, `models/<name>/` ...), one level deep.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn documents(
        &self,
        ws: &WorkspaceId,
        prefix: &str,
        after: Option<String>,
        hide_archived: bool,
        base: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Response {
        let names = match self.names(ws, prefix).await {
            Ok(n) => n,
            Err(e) => return internal(e),
        };
        // Only direct children (`models/` must not list versions as documents).
        let names: Vec<String> = names
            .into_iter()
            .filter(|n| !n[prefix.len()..].contains('/'))
            .collect();
        let (page, token) = self.page(&names, after.as_deref());
        let container = LocalControlPlane::container(ws);
        let mut value = Vec::with_capacity(page.len());
        for n in page {
            let blob = BlobRef::new(ARM_ACCOUNT, container.clone(), n.clone());
            match self.store.read_json::<Value>(&blob).await {
                // Deleted between list and read: not served, as ARM would not either.
                Ok(None) => {}
                Ok(Some(doc)) if hide_archived && archived(&doc) => {}
                Ok(Some(doc)) => value.push(doc),
                Err(e) => return internal(e),
            }
        }
        let mut body = json!({ "value": value });
        if let Some(t) = token {
            body["nextLink"] = json!(next_link(base, path, query, &t));
        }
        reply(200, body)
    }

    /// Model or data containers: the names that have at least one version document.
    pub(super) async fn containers(
        &self,
        ws: &WorkspaceId,
        collection: &str,
        after: Option<String>,
        base: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Response {
        let prefix = format!("{collection}/");
        let names: BTreeSet<String> = match self.names(ws, &prefix).await {
            Ok(n) => n
                .iter()
                .filter_map(|n| {
                    n[prefix.len()..]
                        .split_once('/')
                        .map(|(c, _)| c.to_string())
                })
                .collect(),
            Err(e) => return internal(e),
        };
        let names: Vec<String> = names.into_iter().collect();
        let (page, token) = self.page(&names, after.as_deref());
        let value: Vec<Value> = page
            .iter()
            .map(|n| {
                json!({"id": format!("{ws}/{collection}/{n}"), "name": n,
                       "type": format!("Microsoft.MachineLearningServices/workspaces/{collection}"),
                       "properties": {"isArchived": false}})
            })
            .collect();
        let mut body = json!({ "value": value });
        if let Some(t) = token {
            body["nextLink"] = json!(next_link(base, path, query, &t));
        }
        reply(200, body)
    }

    pub(super) async fn one(&self, ws: &WorkspaceId, kind: ArmKind, id: &str) -> Response {
        let Some(name) = LocalControlPlane::blob_name(ws, kind, id) else {
            return not_found();
        };
        let blob = BlobRef::new(ARM_ACCOUNT, LocalControlPlane::container(ws), name);
        match self.store.read_json::<Value>(&blob).await {
            Ok(Some(doc)) => reply(200, doc),
            Ok(None) => not_found(),
            Err(e) => internal(e),
        }
    }

    /// The Application Insights component of a seeded workspace (to find its Log Analytics
    /// workspace, as the adapter does).
    pub(super) async fn app_insights(&self, id: &str) -> Response {
        let containers = match self.store.list_containers(ARM_ACCOUNT, "ws-").await {
            Ok(c) => c,
            Err(e) => return internal(e),
        };
        for c in containers {
            let blob = BlobRef::new(ARM_ACCOUNT, c, "workspace.json");
            let info = match self
                .store
                .read_json::<crate::ports::control_plane::WorkspaceInfo>(&blob)
                .await
            {
                Ok(Some(i)) => i,
                Ok(None) => continue,
                Err(e) => return internal(e),
            };
            if info
                .app_insights
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(id))
            {
                let mut props = json!({"ApplicationType": "web"});
                if let Some(la) = info.log_analytics_workspace {
                    props["WorkspaceResourceId"] = json!(la);
                }
                return reply(200, json!({"id": id, "properties": props}));
            }
        }
        not_found()
    }

    pub(super) fn with_retry_after(&self, mut r: Response) -> Response {
        if let Some(s) = self.opts.retry_after {
            r.headers_mut().insert("retry-after", s.into());
        }
        r
    }

    /// 202 for a delete that took effect, with both polling headers.
    pub(super) fn accepted(&self, base: &str, api_version: &str) -> Response {
        let op = uuid::Uuid::new_v4().to_string();
        self.ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(op.clone(), self.opts.lro_polls);
        let status =
            format!("{base}{OPS_PREFIX}mfeOperationStatuses/{op}?api-version={api_version}");
        let result =
            format!("{base}{OPS_PREFIX}mfeOperationResults/{op}?api-version={api_version}");
        let mut r = Response::builder().status(StatusCode::ACCEPTED);
        if let (Ok(s), Ok(l)) = (
            axum::http::HeaderValue::from_str(&status),
            axum::http::HeaderValue::from_str(&result),
        ) {
            r = r.header("azure-asyncoperation", s).header("location", l);
        }
        self.with_retry_after(r.body(Body::empty()).unwrap_or_default())
    }

    /// `mfeOperationStatuses/<id>` (a status document) or `mfeOperationResults/<id>` (202 while
    /// running, 200 when done). A poll counts down the operation's in-progress answers.
    pub(super) fn operation(&self, op: &str, base: &str, api_version: &str) -> Response {
        let (kind, id) = match op.split_once('/') {
            Some((k, id)) if k == "mfeOperationStatuses" || k == "mfeOperationResults" => (k, id),
            _ => return not_found(),
        };
        let running = {
            let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
            match ops.get_mut(id) {
                None => return not_found(),
                Some(0) => false,
                Some(left) => {
                    *left -= 1;
                    true
                }
            }
        };
        if kind == "mfeOperationResults" {
            if running {
                let mut r = StatusCode::ACCEPTED.into_response();
                let loc =
                    format!("{base}{OPS_PREFIX}mfeOperationResults/{id}?api-version={api_version}");
                if let Ok(v) = axum::http::HeaderValue::from_str(&loc) {
                    r.headers_mut().insert("location", v);
                }
                return self.with_retry_after(r);
            }
            return StatusCode::OK.into_response();
        }
        let status = if running { "InProgress" } else { "Succeeded" };
        let r = reply(
            200,
            json!({"id": format!("{OPS_PREFIX}mfeOperationStatuses/{id}"), "name": id, "status": status}),
        );
        if running {
            self.with_retry_after(r)
        } else {
            r
        }
    }
}
