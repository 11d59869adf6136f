//! Azure Files behind the [`FileShare`] port, on the File service REST API with Entra tokens
//! (there is no official Rust crate for Files). Requests go through [`RestClient`]: the SDK's
//! transport, the credential's token cache, retries on 408/429/5xx honouring `Retry-After`.
//!
//! Every request carries what the File service requires for OAuth (Microsoft Learn, "Authorize
//! access to file data" / "Access Azure file shares using Microsoft Entra ID with Azure Files
//! OAuth over REST"): a token for `https://storage.azure.com/`, `x-ms-version` 2022-11-02 or
//! later (share-level APIs such as List Shares accept OAuth from 2024-11-04), and
//! `x-ms-file-request-intent: backup` — without it the service refuses data operations.
//!
//! Operations (Learn REST reference; shapes as in Azure/azure-rest-api-specs
//! `specification/storage/data-plane/Microsoft.FileStorage/stable/2025-01-05/file.json`):
//! - List Directories and Files: `GET /{share}/{dir}?restype=directory&comp=list&maxresults=&marker=`
//!   → `EnumerationResults` / `Entries` / `File` (`Name`, `Properties/Content-Length`) and
//!   `Directory` (`Name`), `NextMarker`; names relative to the listed directory, percent-encoded
//!   when `<Name Encoded="true">`;
//! - Get File Properties (`HEAD`) then Get File in ranges (`x-ms-range: bytes=a-b`, 206);
//! - Delete File (`DELETE /{share}/{path}`, 202); Delete Directory (`?restype=directory`, 202,
//!   409 `DirectoryNotEmpty`);
//! - List Shares (`GET /?comp=list&prefix={share}&include=snapshots`) for the share's snapshots.
//!
//! Errors: `x-ms-error-code` (or the body's `<Error><Code>`) decides. `ShareNotFound` is an error;
//! `ResourceNotFound`/`ParentNotFound` mean the directory or file is not there. Paths under
//! `Users/` are hidden in every error text and log line (they name a person).

use crate::adapters::percent_decode;
use std::borrow::Cow;

use async_trait::async_trait;
use azure_core::http::{Method, Url};
use bytes::Bytes;
use futures::StreamExt;
use quick_xml::events::Event;

use super::rest::{Reply, RestClient, RestError};
use crate::ports::blob::{DeleteOutcome, StoreError};
use crate::ports::file_share::{
    redact_path, FileEntry, FilePage, FileReader, FileShare, ShareError, ShareResult,
    ShareRetention,
};

/// Token audience of Azure Storage (Files included).
pub const FILES_SCOPE: &str = "https://storage.azure.com/.default";
/// 2024-11-04 or later: OAuth on List Shares too (2022-11-02 suffices for files/directories).
pub const FILE_API_VERSION: &str = "2025-01-05";
/// The only value the service accepts for `x-ms-file-request-intent`.
pub(crate) const FILE_REQUEST_INTENT: &str = "backup";
/// Bytes per ranged Get File (the service's maximum range for a read is 4 MiB).
pub const READ_CHUNK: u64 = 4 * 1024 * 1024;

pub struct AzureFileShare {
    rest: RestClient,
    /// `https://{account}.file.core.windows.net` (or a path-style form with `{account}`).
    template: String,
}

/// A URL as shown in errors and logs: the path's segments after `Users/` hidden.
fn show_url(url: &Url) -> String {
    let mut u = url.clone();
    let path = redact_path(&percent_decode(url.path()));
    u.set_path(&path);
    u.set_query(None);
    u.to_string()
}

/// Hide `Users/<...>` wherever it appears in a free text (a service message, a URL).
fn redact_text(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            if w.contains("Users/") || w.contains("Users%2F") {
                // Keep the sentence's punctuation after the path.
                let core = w.trim_end_matches([':', ',', ';', ')']);
                format!("{}{}", redact_path(&percent_decode(core)), &w[core.len()..])
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a path names, for the meaning of a 404 `ResourceNotFound`.
#[derive(Clone, Copy)]
enum Target {
    Directory,
    File,
}

impl AzureFileShare {
    pub fn new(rest: RestClient, template: impl Into<String>) -> Self {
        Self {
            rest: rest.with_url_display(show_url),
            template: template.into(),
        }
    }

    fn account_url(&self, account: &str) -> ShareResult<Url> {
        let valid = (3..=24).contains(&account.len())
            && account
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !valid {
            return Err(ShareError::Other(format!(
                "invalid storage account name {account:?}"
            )));
        }
        Url::parse(&self.template.replace("{account}", account))
            .map_err(|e| ShareError::Other(format!("file endpoint: {e}")))
    }

    /// `{endpoint}/{share}/{path segments}` with each segment percent-encoded.
    fn url(&self, account: &str, share: &str, path: &str) -> ShareResult<Url> {
        let mut url = self.account_url(account)?;
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|_| ShareError::Other("file endpoint cannot be a base".into()))?;
            segs.pop_if_empty().push(share);
            for s in path.split('/').filter(|s| !s.is_empty()) {
                segs.push(s);
            }
        }
        Ok(url)
    }

    async fn send(
        &self,
        method: Method,
        url: &Url,
        extra: &[(&str, String)],
    ) -> ShareResult<Reply> {
        let mut headers = vec![
            ("x-ms-version", FILE_API_VERSION.to_string()),
            ("x-ms-file-request-intent", FILE_REQUEST_INTENT.to_string()),
            ("accept", "application/xml".to_string()),
        ];
        headers.extend(extra.iter().cloned());
        self.rest
            .send(method, url, None, &headers)
            .await
            .map_err(|e| match e {
                RestError::Transient(m) => ShareError::Transient(redact_text(&m)),
                RestError::Other(m) => ShareError::Other(redact_text(&m)),
            })
    }
}

/// The service's error code and message (header first: a HEAD reply has no body).
fn error_of(reply: &Reply) -> (String, String) {
    let body = parse(&reply.body).ok();
    let code = reply
        .header("x-ms-error-code")
        .map(str::to_string)
        .or_else(|| body.as_ref().and_then(|b| b.text_at(&["Code"])))
        .unwrap_or_default();
    let message = body
        .as_ref()
        .and_then(|b| b.text_at(&["Message"]))
        .map(|m| m.lines().next().unwrap_or_default().to_string())
        .unwrap_or_default();
    (code, redact_text(&message))
}

/// Map a non-success reply; `at` is the (already redacted) resource named in the error.
fn classify(reply: &Reply, target: Target, at: &str) -> ShareError {
    let (code, message) = error_of(reply);
    let why = format!("{at}: HTTP {} {code}: {message}", reply.status);
    match (reply.status, code.as_str()) {
        (404, "ShareNotFound") => ShareError::ShareNotFound(why),
        (404, "ResourceNotFound" | "ParentNotFound") => match target {
            Target::Directory => ShareError::DirectoryNotFound(why),
            Target::File => ShareError::FileNotFound(why),
        },
        (401 | 403, _) => ShareError::Forbidden(why),
        (409, "DirectoryNotEmpty") => ShareError::DirectoryNotEmpty(why),
        (s, _) if super::rest::is_retryable(s) => ShareError::Transient(why),
        _ => ShareError::Other(why),
    }
}

#[async_trait]
impl FileShare for AzureFileShare {
    fn kind(&self) -> &'static str {
        "Azure Files (REST, Entra ID)"
    }

    async fn list_page(
        &self,
        account: &str,
        share: &str,
        dir: &str,
        marker: Option<String>,
        max_results: u32,
    ) -> ShareResult<FilePage> {
        let dir = dir.trim_matches('/');
        let mut url = self.url(account, share, dir)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("restype", "directory")
                .append_pair("comp", "list")
                .append_pair("maxresults", &max_results.clamp(1, 5000).to_string());
            if let Some(m) = marker.as_deref().filter(|m| !m.is_empty()) {
                q.append_pair("marker", m);
            }
        }
        let at = format!("{share}/{}", redact_path(dir));
        let reply = self.send(Method::Get, &url, &[]).await?;
        if reply.status != 200 {
            return Err(classify(&reply, Target::Directory, &at));
        }
        let doc = parse(&reply.body).map_err(|e| {
            ShareError::Other(format!(
                "{at}: unreadable List Directories and Files body: {e}"
            ))
        })?;
        if doc.name != "EnumerationResults" {
            return Err(ShareError::Other(format!(
                "{at}: unexpected list body <{}>",
                doc.name
            )));
        }
        let join = |name: &str| {
            if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            }
        };
        let mut page = FilePage::default();
        for e in doc
            .child("Entries")
            .map(|e| e.children.as_slice())
            .unwrap_or(&[])
        {
            let Some(name) = e.child("Name").map(Node::entry_name) else {
                continue;
            };
            // A name that could climb out of the listed directory is refused, not followed.
            if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                return Err(ShareError::Other(format!(
                    "{at}: listing returned an invalid name"
                )));
            }
            match e.name.as_str() {
                "File" => {
                    let size = e
                        .text_at(&["Properties", "Content-Length"])
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .unwrap_or(0);
                    page.files.push(FileEntry {
                        path: join(&name),
                        size,
                    });
                }
                "Directory" => page.directories.push(join(&name)),
                _ => {}
            }
        }
        page.next = doc.text_at(&["NextMarker"]).filter(|m| !m.is_empty());
        Ok(page)
    }

    async fn open(&self, account: &str, share: &str, path: &str) -> ShareResult<FileReader> {
        let url = self.url(account, share, path)?;
        let at = format!("{share}/{}", redact_path(path));
        let head = self.send(Method::Head, &url, &[]).await?;
        if head.status != 200 {
            return Err(classify(&head, Target::File, &at));
        }
        let size = head
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| ShareError::Other(format!("{at}: no Content-Length")))?;
        let content_type = head.header("content-type").map(str::to_string);
        let rest = self.rest.clone();
        // Ranged reads, one chunk in memory at a time, each retried by the REST client.
        let body = futures::stream::try_unfold(0u64, move |offset| {
            let (rest, url, at) = (rest.clone(), url.clone(), at.clone());
            async move {
                if offset >= size {
                    return Ok(None);
                }
                let end = (offset + READ_CHUNK).min(size) - 1;
                let headers = [
                    ("x-ms-version", FILE_API_VERSION.to_string()),
                    ("x-ms-file-request-intent", FILE_REQUEST_INTENT.to_string()),
                    ("x-ms-range", format!("bytes={offset}-{end}")),
                ];
                let reply = rest
                    .send(Method::Get, &url, None, &headers)
                    .await
                    .map_err(|e| StoreError::Transient(redact_text(&e.to_string())))?;
                if reply.status != 206 && reply.status != 200 {
                    return Err(match classify(&reply, Target::File, &at) {
                        ShareError::FileNotFound(m) => StoreError::NotFound(m),
                        e if e.is_transient() => StoreError::Transient(e.to_string()),
                        e => StoreError::Other(e.to_string()),
                    });
                }
                let want = (end - offset + 1) as usize;
                let chunk: Bytes = if reply.status == 200 {
                    // A server that ignored the range sent the whole file: take our part.
                    let start = offset as usize;
                    if reply.body.len() < start + want {
                        return Err(StoreError::Transient(format!("{at}: short read")));
                    }
                    reply.body.slice(start..start + want)
                } else {
                    reply.body
                };
                if chunk.len() != want {
                    return Err(StoreError::Transient(format!("{at}: short read")));
                }
                Ok(Some((chunk, end + 1)))
            }
        })
        .boxed();
        Ok(FileReader {
            size,
            content_type,
            body,
        })
    }

    async fn delete_file(
        &self,
        account: &str,
        share: &str,
        path: &str,
    ) -> ShareResult<DeleteOutcome> {
        let url = self.url(account, share, path)?;
        let reply = self.send(Method::Delete, &url, &[]).await?;
        match reply.status {
            200..=299 => Ok(DeleteOutcome::Deleted),
            _ => match classify(
                &reply,
                Target::File,
                &format!("{share}/{}", redact_path(path)),
            ) {
                // Already gone (an earlier delivery deleted it).
                ShareError::FileNotFound(_) => Ok(DeleteOutcome::NotFound),
                e => Err(e),
            },
        }
    }

    async fn delete_directory(
        &self,
        account: &str,
        share: &str,
        dir: &str,
    ) -> ShareResult<DeleteOutcome> {
        let dir = dir.trim_matches('/');
        if dir.is_empty() {
            return Err(ShareError::Other(
                "the share root is not a directory to delete".into(),
            ));
        }
        let mut url = self.url(account, share, dir)?;
        url.query_pairs_mut().append_pair("restype", "directory");
        let reply = self.send(Method::Delete, &url, &[]).await?;
        match reply.status {
            200..=299 => Ok(DeleteOutcome::Deleted),
            _ => match classify(
                &reply,
                Target::Directory,
                &format!("{share}/{}", redact_path(dir)),
            ) {
                ShareError::DirectoryNotFound(_) => Ok(DeleteOutcome::NotFound),
                e => Err(e),
            },
        }
    }

    /// Get File Properties (HEAD) on the live share, then on each share snapshot
    /// (`sharesnapshot=<time>`): Azure Files has no per-file soft delete, so a deleted file
    /// survives only if it is back or in a snapshot.
    async fn recoverable(
        &self,
        account: &str,
        share: &str,
        path: &str,
        _now: time::OffsetDateTime,
    ) -> ShareResult<Vec<String>> {
        let url = self.url(account, share, path)?;
        let at = format!("{share}/{}", redact_path(path));
        let mut out = Vec::new();
        let head = self.send(Method::Head, &url, &[]).await?;
        match head.status {
            200 => out.push("the file itself (present again: restored or re-created)".to_string()),
            404 => {}
            _ => return Err(classify(&head, Target::File, &at)),
        }
        // The snapshot value is opaque and must be sent back exactly as listed
        // (`2026-11-20T10:00:00.0000000Z`); a reformatted time names no snapshot.
        for (snap, _) in self.snapshots(account, share).await? {
            let mut u = url.clone();
            u.query_pairs_mut().append_pair("sharesnapshot", &snap);
            let h = self.send(Method::Head, &u, &[]).await?;
            match h.status {
                200 => out.push(format!("share snapshot taken {snap}")),
                404 => {}
                _ => return Err(classify(&h, Target::File, &at)),
            }
        }
        Ok(out)
    }

    async fn retention(&self, account: &str, share: &str) -> ShareResult<ShareRetention> {
        Ok(ShareRetention {
            snapshots: self
                .snapshots(account, share)
                .await?
                .into_iter()
                .map(|(_, t)| t)
                .collect(),
        })
    }
}

impl AzureFileShare {
    /// The share's snapshots as List Shares (`include=snapshots`) names them: the opaque
    /// `Snapshot` value and the time it stands for.
    async fn snapshots(
        &self,
        account: &str,
        share: &str,
    ) -> ShareResult<Vec<(String, time::OffsetDateTime)>> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut url = self.account_url(account)?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("comp", "list")
                    .append_pair("prefix", share)
                    .append_pair("include", "snapshots");
                if let Some(m) = &marker {
                    q.append_pair("marker", m);
                }
            }
            let reply = self.send(Method::Get, &url, &[]).await?;
            if reply.status != 200 {
                return Err(classify(&reply, Target::Directory, share));
            }
            let doc = parse(&reply.body).map_err(|e| {
                ShareError::Other(format!("{share}: unreadable List Shares body: {e}"))
            })?;
            for s in doc
                .child("Shares")
                .map(|e| e.children.as_slice())
                .unwrap_or(&[])
            {
                if s.name != "Share" || s.text_at(&["Name"]).as_deref() != Some(share) {
                    continue;
                }
                if let Some(snap) = s.text_at(&["Snapshot"]).filter(|v| !v.is_empty()) {
                    let t = time::OffsetDateTime::parse(
                        &snap,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .map_err(|e| {
                        ShareError::Other(format!(
                            "{share}: unreadable snapshot time {snap:?}: {e}"
                        ))
                    })?;
                    out.push((snap, t));
                }
            }
            match doc.text_at(&["NextMarker"]).filter(|m| !m.is_empty()) {
                Some(m) => marker = Some(m),
                None => return Ok(out),
            }
        }
    }
}

/// A minimal XML element tree: enough for the File service's list and error bodies.
#[derive(Debug, Default, Clone)]
pub struct Node {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Text of the element at `path` below this one.
    pub fn text_at(&self, path: &[&str]) -> Option<String> {
        let mut n = self;
        for p in path {
            n = n.child(p)?;
        }
        Some(n.text.clone())
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A list entry's `Name`: `Encoded="true"` names are percent-encoded (characters XML
    /// cannot carry).
    fn entry_name(&self) -> String {
        if self
            .attr("Encoded")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            percent_decode(&self.text)
        } else {
            self.text.clone()
        }
    }
}

/// Parse an XML document into its root [`Node`].
pub fn parse(body: &[u8]) -> Result<Node, String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let text = text.trim_start_matches('\u{feff}');
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let element = |e: &quick_xml::events::BytesStart<'_>| -> Result<Node, String> {
        let mut attrs = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|e| e.to_string())?;
            let v = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| e.to_string())?;
            attrs.push((
                String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
                v.into_owned(),
            ));
        }
        Ok(Node {
            name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
            attrs,
            ..Default::default()
        })
    };
    loop {
        let ev = reader.read_event().map_err(|e| e.to_string())?;
        match ev {
            Event::Start(e) => stack.push(element(&e)?),
            Event::Empty(e) => {
                let n = element(&e)?;
                match stack.last_mut() {
                    Some(p) => p.children.push(n),
                    None => root = Some(n),
                }
            }
            Event::End(_) => {
                let n = stack.pop().ok_or("unbalanced end tag")?;
                match stack.last_mut() {
                    Some(p) => p.children.push(n),
                    None => root = Some(n),
                }
            }
            Event::Text(t) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&t.decode().map_err(|e| e.to_string())?);
                }
            }
            Event::CData(t) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&t.decode().map_err(|e| e.to_string())?);
                }
            }
            Event::GeneralRef(r) => {
                let s: Cow<'_, str> = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => Cow::Owned(c.to_string()),
                    None => match r.decode().map_err(|e| e.to_string())?.as_ref() {
                        "lt" => "<".into(),
                        "gt" => ">".into(),
                        "amp" => "&".into(),
                        "quot" => "\"".into(),
                        "apos" => "'".into(),
                        other => return Err(format!("unknown entity &{other};")),
                    },
                };
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&s);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("unexpected end of document".into());
    }
    root.ok_or_else(|| "empty document".into())
}

#[cfg(test)]
mod tests;
