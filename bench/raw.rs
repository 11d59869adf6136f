//! A tight raw REST client for Azurite: the "storage ceiling" baseline. reqwest + the crate's
//! Shared Key signer, nothing else (no SDK pipeline, no retries, no policy lookups).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, Context};
use azureml_dsr::adapters::azure::shared_key::{http_date, SharedKeyCredential, DEV_KEY};
use bytes::Bytes;
use futures::StreamExt;
use reqwest::Method;
use sha2::{Digest, Sha256};
use url::Url;

pub const VERSION: &str = "2025-01-05";

#[derive(Clone)]
pub struct Raw {
    pub http: reqwest::Client,
    pub base: String,
    creds: Arc<HashMap<String, Arc<SharedKeyCredential>>>,
}

impl Raw {
    pub fn new(base: &str, accounts: &[&str]) -> Raw {
        let creds = accounts
            .iter()
            .map(|a| {
                (
                    a.to_string(),
                    Arc::new(SharedKeyCredential::new(*a, DEV_KEY).expect("dev key")),
                )
            })
            .collect();
        Raw {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                // Azurite (Node) closes idle keep-alive connections after 5 s; reusing one as it
                // closes fails with "connection reset". Drop idle ones first.
                .pool_idle_timeout(std::time::Duration::from_secs(3))
                .build()
                .expect("http client"),
            base: base.trim_end_matches('/').to_string(),
            creds: Arc::new(creds),
        }
    }

    pub fn cred(&self, account: &str) -> &SharedKeyCredential {
        &self.creds[account]
    }

    pub fn url(&self, account: &str, container: &str, name: Option<&str>) -> Url {
        let mut u = Url::parse(&format!("{}/{account}", self.base)).expect("base url");
        {
            let mut p = u.path_segments_mut().expect("base");
            p.push(container);
            if let Some(n) = name {
                p.push(n);
            }
        }
        u
    }

    /// Send a signed request; returns status, headers and the whole body.
    pub async fn send(
        &self,
        account: &str,
        method: Method,
        url: Url,
        headers: Vec<(String, String)>,
        body: Bytes,
    ) -> anyhow::Result<(u16, reqwest::header::HeaderMap, Bytes)> {
        // Like any real client (the SDK's retry policy does the same for ours), a request whose
        // connection was reset is sent again: Azurite resets some connections under load.
        let mut attempt = 0;
        loop {
            let mut hs = headers.clone();
            let sent = self
                .request(account, method.clone(), url.clone(), &mut hs, body.clone())
                .send()
                .await;
            let result = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let h = resp.headers().clone();
                    resp.bytes().await.map(|b| (status, h, b))
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(r) => return Ok(r),
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    eprintln!("bench: raw {method} retried after: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn request(
        &self,
        account: &str,
        method: Method,
        url: Url,
        headers: &mut Vec<(String, String)>,
        body: Bytes,
    ) -> reqwest::RequestBuilder {
        headers.push((
            "x-ms-date".into(),
            http_date(time::OffsetDateTime::now_utc()),
        ));
        headers.push(("x-ms-version".into(), VERSION.into()));
        let auth =
            self.cred(account)
                .authorization(method.as_str(), &url, headers, body.len() as u64);
        let mut rb = self.http.request(method, url);
        for (k, v) in headers.iter() {
            rb = rb.header(k.as_str(), v.as_str());
        }
        rb.header("authorization", auth).body(body)
    }

    pub async fn create_container(&self, account: &str, container: &str) -> anyhow::Result<()> {
        let mut u = self.url(account, container, None);
        u.query_pairs_mut().append_pair("restype", "container");
        let (s, _, b) = self
            .send(account, Method::PUT, u, vec![], Bytes::new())
            .await?;
        if s != 201 && s != 409 {
            bail!(
                "create container {account}/{container}: {s} {}",
                String::from_utf8_lossy(&b)
            );
        }
        Ok(())
    }

    pub async fn put(
        &self,
        account: &str,
        container: &str,
        name: &str,
        body: Bytes,
    ) -> anyhow::Result<()> {
        let u = self.url(account, container, Some(name));
        let h = vec![
            ("x-ms-blob-type".into(), "BlockBlob".into()),
            ("content-type".into(), "application/octet-stream".into()),
        ];
        let (s, _, b) = self.send(account, Method::PUT, u, h, body).await?;
        if s != 201 {
            bail!("put {name}: {s} {}", String::from_utf8_lossy(&b));
        }
        Ok(())
    }

    /// A large blob in blocks (never more than one block in memory here).
    pub async fn put_large(
        &self,
        account: &str,
        container: &str,
        name: &str,
        total: usize,
        block: usize,
    ) -> anyhow::Result<()> {
        let mut ids = Vec::new();
        let mut rng_state = 0x9e3779b97f4a7c15u64;
        let mut done = 0;
        let mut i = 0u32;
        while done < total {
            let n = block.min(total - done);
            let mut buf = vec![0u8; n];
            for chunk in buf.chunks_mut(8) {
                rng_state ^= rng_state << 13;
                rng_state ^= rng_state >> 7;
                rng_state ^= rng_state << 17;
                let b = rng_state.to_le_bytes();
                chunk.copy_from_slice(&b[..chunk.len()]);
            }
            use base64::Engine;
            let id = base64::engine::general_purpose::STANDARD.encode(format!("blk{i:08}"));
            let mut u = self.url(account, container, Some(name));
            u.query_pairs_mut()
                .append_pair("comp", "block")
                .append_pair("blockid", &id);
            let (s, _, b) = self
                .send(account, Method::PUT, u, vec![], Bytes::from(buf))
                .await?;
            if s != 201 {
                bail!("put block: {s} {}", String::from_utf8_lossy(&b));
            }
            ids.push(id);
            done += n;
            i += 1;
        }
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in &ids {
            xml.push_str(&format!("<Latest>{id}</Latest>"));
        }
        xml.push_str("</BlockList>");
        let mut u = self.url(account, container, Some(name));
        u.query_pairs_mut().append_pair("comp", "blocklist");
        let (s, _, b) = self
            .send(account, Method::PUT, u, vec![], Bytes::from(xml))
            .await?;
        if s != 201 {
            bail!("put block list: {s} {}", String::from_utf8_lossy(&b));
        }
        Ok(())
    }

    /// Single DELETE; returns the status.
    pub async fn delete(&self, account: &str, container: &str, name: &str) -> anyhow::Result<u16> {
        let u = self.url(account, container, Some(name));
        let h = vec![("x-ms-delete-snapshots".into(), "include".into())];
        let (s, _, _) = self
            .send(account, Method::DELETE, u, h, Bytes::new())
            .await?;
        Ok(s)
    }

    /// One Blob Batch of DELETEs; returns the number of 202 sub-responses.
    pub async fn batch_delete(
        &self,
        account: &str,
        container: &str,
        names: &[String],
    ) -> anyhow::Result<usize> {
        let boundary = format!("batch_{}", uuid::Uuid::new_v4());
        let date = http_date(time::OffsetDateTime::now_utc());
        let mut body = String::with_capacity(names.len() * 400);
        for (i, name) in names.iter().enumerate() {
            let url = self.url(account, container, Some(name));
            let headers = vec![
                ("x-ms-date".to_string(), date.clone()),
                ("x-ms-delete-snapshots".to_string(), "include".to_string()),
                ("x-ms-version".to_string(), VERSION.to_string()),
            ];
            let auth = self
                .cred(account)
                .authorization("DELETE", &url, &headers, 0);
            body.push_str(&format!(
                "--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {i}\r\n\r\nDELETE {} HTTP/1.1\r\n",
                url.path()
            ));
            for (k, v) in &headers {
                body.push_str(&format!("{k}: {v}\r\n"));
            }
            body.push_str(&format!(
                "Authorization: {auth}\r\nContent-Length: 0\r\n\r\n\r\n"
            ));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        let mut u = Url::parse(&format!("{}/{account}", self.base))?;
        u.query_pairs_mut().append_pair("comp", "batch");
        let h = vec![(
            "content-type".to_string(),
            format!("multipart/mixed; boundary={boundary}"),
        )];
        let (s, _, b) = self
            .send(account, Method::POST, u, h, Bytes::from(body))
            .await?;
        if s != 202 {
            bail!("batch: {s} {}", String::from_utf8_lossy(&b));
        }
        let text = String::from_utf8_lossy(&b);
        // 404 = already gone (a batch sent again after a reset): deleted all the same.
        Ok(text.matches("HTTP/1.1 202").count() + text.matches("HTTP/1.1 404").count())
    }

    /// Copy Blob (server-side) from a SAS URL; waits for success (Azurite copies synchronously).
    pub async fn copy(
        &self,
        source: &Url,
        account: &str,
        container: &str,
        name: &str,
    ) -> anyhow::Result<()> {
        let u = self.url(account, container, Some(name));
        let h = vec![("x-ms-copy-source".to_string(), source.to_string())];
        let (s, headers, b) = self.send(account, Method::PUT, u, h, Bytes::new()).await?;
        if s != 202 {
            bail!("copy: {s} {}", String::from_utf8_lossy(&b));
        }
        let status = headers
            .get("x-ms-copy-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("success");
        if status != "success" {
            bail!("copy pending ({status}): the raw baseline does not poll");
        }
        Ok(())
    }

    /// GET streaming into SHA-256; returns (bytes, hex digest).
    pub async fn get_sha256(
        &self,
        account: &str,
        container: &str,
        name: &str,
    ) -> anyhow::Result<(u64, String)> {
        let u = self.url(account, container, Some(name));
        let mut headers = Vec::new();
        let resp = self
            .request(account, Method::GET, u, &mut headers, Bytes::new())
            .send()
            .await?;
        if resp.status().as_u16() != 200 {
            bail!("get {name}: {}", resp.status());
        }
        let mut stream = resp.bytes_stream();
        let mut h = Sha256::new();
        let mut n = 0u64;
        while let Some(c) = stream.next().await {
            let c = c.context("body")?;
            n += c.len() as u64;
            h.update(&c);
        }
        Ok((n, hex::encode(h.finalize())))
    }

    /// Names under `prefix` (flat listing, 5000 per page).
    pub async fn list(
        &self,
        account: &str,
        container: &str,
        prefix: &str,
    ) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut u = self.url(account, container, None);
            {
                let mut q = u.query_pairs_mut();
                q.append_pair("restype", "container")
                    .append_pair("comp", "list")
                    .append_pair("prefix", prefix)
                    .append_pair("maxresults", "5000");
                if let Some(m) = &marker {
                    q.append_pair("marker", m);
                }
            }
            let (s, _, b) = self
                .send(account, Method::GET, u, vec![], Bytes::new())
                .await?;
            if s != 200 {
                bail!("list: {s}");
            }
            let text = String::from_utf8_lossy(&b);
            for part in text.split("<Name>").skip(1) {
                if let Some(end) = part.find("</Name>") {
                    out.push(xml_unescape(&part[..end]));
                }
            }
            marker = text
                .split("<NextMarker>")
                .nth(1)
                .and_then(|p| p.split("</NextMarker>").next())
                .map(xml_unescape)
                .filter(|m| !m.is_empty());
            if marker.is_none() {
                return Ok(out);
            }
        }
    }

    /// A service SAS on a container with the given permissions (`sp`), e.g. "racwdl" for azcopy.
    pub fn container_sas(&self, account: &str, container: &str, sp: &str) -> String {
        let fmt =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        let now = time::OffsetDateTime::now_utc();
        let st = (now - time::Duration::minutes(5)).format(&fmt).unwrap();
        let se = (now + time::Duration::hours(6)).format(&fmt).unwrap();
        let sv = "2022-11-02";
        let canonical = format!("/blob/{account}/{container}");
        let sts = [
            sp,
            &st,
            &se,
            &canonical,
            "",
            "",
            "https,http",
            sv,
            "c",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ]
        .join("\n");
        let sig = self.cred(account).sign(&sts);
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("sv", sv)
            .append_pair("st", &st)
            .append_pair("se", &se)
            .append_pair("sr", "c")
            .append_pair("sp", sp)
            .append_pair("spr", "https,http")
            .append_pair("sig", &sig);
        q.finish()
    }
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}
