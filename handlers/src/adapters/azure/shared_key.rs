//! Shared Key request signing for Azure Storage, hand-written because `azure_storage_blob` 1.x
//! only authenticates with Entra ID tokens, and the SDK refuses token credentials over plain
//! http — which is how Azurite runs in tests. Shared Key is therefore used only against Azurite
//! (and any account where key access is deliberately kept); production uses [`super::Auth::Token`].
//!
//! Two entry points:
//! - [`SharedKeyPolicy`], a per-try pipeline policy (it must run on every retry, because the
//!   signature covers `x-ms-date`);
//! - [`SharedKeyCredential::authorization`], also used for the sub-requests of a Blob Batch,
//!   which each carry their own signature.
//!
//! String-to-sign as specified in "Authorize with Shared Key" (Storage REST docs, version
//! 2015-02-21 and later: an empty Content-Length for a zero-length body).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::http::{
    policies::{Policy, PolicyResult},
    Context, Request,
};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::Url;

use crate::ports::blob::StoreError;

/// Well-known Azurite / storage-emulator key (public, documented by Microsoft; not a secret),
/// copied from the Azurite 3.37.0 sources.
pub const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// An account name with its decoded key.
#[derive(Clone)]
pub struct SharedKeyCredential {
    account: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for SharedKeyCredential {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedKeyCredential")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl SharedKeyCredential {
    /// `key` is the base64 account key as shown in the portal.
    pub fn new(account: impl Into<String>, key: &str) -> Result<Self, StoreError> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|e| StoreError::Other(format!("account key is not base64: {e}")))?;
        Ok(Self {
            account: account.into(),
            key,
        })
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// Base64 HMAC-SHA256 of `string_to_sign` with the account key.
    pub fn sign(&self, string_to_sign: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(string_to_sign.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    /// The `Authorization` header value for a request. `headers` are (name, value) pairs as sent
    /// (names in any case); `content_length` is the body length.
    pub fn authorization(
        &self,
        method: &str,
        url: &Url,
        headers: &[(String, String)],
        content_length: u64,
    ) -> String {
        let sts = string_to_sign(&self.account, method, url, headers, content_length);
        format!("SharedKey {}:{}", self.account, self.sign(&sts))
    }
}

/// The Shared Key string-to-sign for the Blob service.
pub(crate) fn string_to_sign(
    account: &str,
    method: &str,
    url: &Url,
    headers: &[(String, String)],
    content_length: u64,
) -> String {
    let get = |name: &str| -> &str {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let length = if content_length == 0 {
        String::new()
    } else {
        content_length.to_string()
    };
    let mut s = String::with_capacity(256);
    for part in [
        method,
        get("content-encoding"),
        get("content-language"),
        &length,
        get("content-md5"),
        get("content-type"),
        "", // Date: x-ms-date is always sent instead.
        get("if-modified-since"),
        get("if-match"),
        get("if-none-match"),
        get("if-unmodified-since"),
        get("range"),
    ] {
        s.push_str(part);
        s.push('\n');
    }
    // Canonicalized headers: x-ms-*, lower-cased, sorted, one per line.
    let mut ms: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in headers {
        let k = k.to_ascii_lowercase();
        if k.starts_with("x-ms-") {
            ms.insert(k, v.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    for (k, v) in &ms {
        s.push_str(k);
        s.push(':');
        s.push_str(v);
        s.push('\n');
    }
    s.push_str(&canonicalized_resource(account, url));
    s
}

/// `/<account><path>` then one `\n<name>:<v1,v2>` line per query parameter, names lower-cased
/// and sorted, values decoded and sorted. With path-style (Azurite) URLs the path already
/// starts with the account, so it appears twice — that is what the emulator expects.
fn canonicalized_resource(account: &str, url: &Url) -> String {
    let mut s = format!("/{account}{}", url.path());
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in url.query_pairs() {
        params
            .entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.into_owned());
    }
    for (k, mut vs) in params {
        vs.sort();
        s.push('\n');
        s.push_str(&k);
        s.push(':');
        s.push_str(&vs.join(","));
    }
    s
}

/// RFC 1123 date for `x-ms-date`.
pub fn http_date(t: time::OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .expect("formattable date")
}

/// Per-try pipeline policy: stamps `x-ms-date` and signs the request.
#[derive(Debug, Clone)]
pub struct SharedKeyPolicy {
    cred: Arc<SharedKeyCredential>,
}

impl SharedKeyPolicy {
    pub fn new(cred: Arc<SharedKeyCredential>) -> Self {
        Self { cred }
    }
}

#[async_trait]
impl Policy for SharedKeyPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        request.insert_header("x-ms-date", http_date(time::OffsetDateTime::now_utc()));
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.as_str().to_string()))
            .collect();
        // Prefer an explicit Content-Length; else the body's length (the transport adds the header).
        let length = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .or_else(|| request.body().len())
            .unwrap_or(0);
        let auth =
            self.cred
                .authorization(request.method().as_str(), request.url(), &headers, length);
        request.insert_header("authorization", auth);
        next[0].send(ctx, request, &next[1..]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_to_sign_layout() {
        let url = Url::parse("http://127.0.0.1:10000/acct/c/b%20x?comp=list&restype=container&include=versions,snapshots").unwrap();
        let headers = vec![
            ("x-ms-version".to_string(), "2025-01-05".to_string()),
            (
                "X-MS-Date".to_string(),
                "Sat, 28 Nov 2026 20:00:00 GMT".to_string(),
            ),
            ("If-None-Match".to_string(), "*".to_string()),
        ];
        let s = string_to_sign("acct", "PUT", &url, &headers, 0);
        assert_eq!(
            s,
            "PUT\n\n\n\n\n\n\n\n\n*\n\n\n\
             x-ms-date:Sat, 28 Nov 2026 20:00:00 GMT\nx-ms-version:2025-01-05\n\
             /acct/acct/c/b%20x\ncomp:list\ninclude:versions,snapshots\nrestype:container"
        );
    }

    #[test]
    fn http_date_is_rfc1123() {
        let t = time::macros::datetime!(2026-11-28 08:03:04 UTC);
        assert_eq!(http_date(t), "Sat, 28 Nov 2026 08:03:04 GMT");
    }

    #[test]
    fn signature_is_base64_hmac() {
        let c = SharedKeyCredential::new("a", DEV_KEY).unwrap();
        let sig = c.sign("x");
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&sig)
                .unwrap()
                .len(),
            32
        );
        assert!(format!("{c:?}").contains("\"a\"") && !format!("{c:?}").contains("Eby8"));
    }
}
