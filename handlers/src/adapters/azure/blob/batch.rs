//! Blob Batch (`delete_many`): up to [`BATCH_MAX`] deletes in one multipart/mixed request sent
//! through the account's `azure_core` pipeline (the SDK has no batch client), and the parsing of
//! its multipart answer into one status per sub-request.

use super::*;

impl AzureBlobStore {
    /// One Blob Batch request: up to [`BATCH_MAX`] deletes. Per-item statuses in input order.
    pub(super) async fn batch_delete(
        &self,
        acct: &Account,
        container: &str,
        names: &[String],
    ) -> StoreResult<Vec<(u16, Option<String>)>> {
        let boundary = format!("batch_{}", uuid::Uuid::new_v4());
        let bearer = match &self.cfg.auth {
            Auth::Token(c) => Some(
                c.get_token(&[STORAGE_SCOPE], None)
                    .await
                    .map_err(|e| StoreError::Transient(format!("token: {e}")))?
                    .token
                    .secret()
                    .to_string(),
            ),
            Auth::SharedKey(_) => None,
        };
        let date = http_date(OffsetDateTime::now_utc());
        let mut body = String::with_capacity(names.len() * 400);
        for (i, name) in names.iter().enumerate() {
            let url = blob_url(&acct.url, container, name);
            let headers = vec![
                ("x-ms-date".to_string(), date.clone()),
                ("x-ms-delete-snapshots".to_string(), "include".to_string()),
                ("x-ms-version".to_string(), acct.version.clone()),
            ];
            let auth = match (&acct.shared_key, &bearer) {
                (Some(cred), _) => cred.authorization("DELETE", &url, &headers, 0),
                (None, Some(token)) => format!("Bearer {token}"),
                (None, None) => String::new(),
            };
            let path = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            };
            body.push_str(&format!(
                "--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {i}\r\n\r\n\
                 DELETE {path} HTTP/1.1\r\n"
            ));
            for (k, v) in &headers {
                body.push_str(&format!("{k}: {v}\r\n"));
            }
            if !auth.is_empty() {
                body.push_str(&format!("Authorization: {auth}\r\n"));
            }
            body.push_str("Content-Length: 0\r\n\r\n\r\n");
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        let body = Bytes::from(body);

        let mut url = acct.url.clone();
        url.query_pairs_mut().append_pair("comp", "batch");
        let mut request = Request::new(url, Method::Post);
        request.insert_header(
            "content-type",
            format!("multipart/mixed; boundary={boundary}"),
        );
        request.insert_header("x-ms-version", acct.version.clone());
        request.insert_header("content-length", body.len().to_string());
        request.set_body(body);
        let response = acct
            .pipeline
            .send(
                &Context::new(),
                &mut request,
                Some(PipelineSendOptions::default()),
            )
            .await
            .map_err(|e| map_err(e, &format!("blob batch on {container}")))?;
        let content_type = response
            .headers()
            .get_optional_str(&azure_core::http::headers::CONTENT_TYPE)
            .unwrap_or_default()
            .to_string();
        let text = String::from_utf8_lossy(response.body().as_ref()).into_owned();
        parse_batch_response(&content_type, &text, names.len())
    }
}

/// Parse a multipart/mixed batch response into (status, error code) per Content-ID.
pub(crate) fn parse_batch_response(
    content_type: &str,
    body: &str,
    count: usize,
) -> StoreResult<Vec<(u16, Option<String>)>> {
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"').to_string())
        .ok_or_else(|| {
            StoreError::Other(format!("batch response without boundary: {content_type:?}"))
        })?;
    let mut out: Vec<Option<(u16, Option<String>)>> = vec![None; count];
    let mut next_index = 0usize;
    for part in body.split(&format!("--{boundary}")) {
        let mut id = None;
        let mut status = None;
        let mut code = None;
        for line in part.lines() {
            let line = line.trim();
            if let Some(v) = strip_header(line, "content-id") {
                id = v.parse::<usize>().ok();
            } else if let Some(rest) = line.strip_prefix("HTTP/1.1 ") {
                status = rest
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse::<u16>().ok());
            } else if let Some(v) = strip_header(line, "x-ms-error-code") {
                code = Some(v.to_string());
            }
        }
        let Some(status) = status else { continue };
        let index = id.unwrap_or(next_index);
        next_index = index + 1;
        if index < count {
            out[index] = Some((status, code));
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.ok_or_else(|| StoreError::Transient(format!("batch response lacks item {i}")))
        })
        .collect()
}

fn strip_header<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (k, v) = line.split_once(':')?;
    k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
}
