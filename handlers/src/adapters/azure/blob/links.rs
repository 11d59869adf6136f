//! Read links: user delegation SAS (Entra ID) or service SAS (Shared Key, Azurite) for one
//! blob, a container or every blob under a prefix, and the cached user delegation keys.

use super::*;

impl AzureBlobStore {
    /// A time-limited read-only link to one blob. `expiry` defaults to and is capped at 7 days.
    pub async fn read_link(&self, blob: &BlobRef, expiry: Option<Duration>) -> StoreResult<Url> {
        let acct = self.account(&blob.account)?;
        let res = SasResource::Blob {
            container: &blob.container,
            name: &blob.name,
        };
        let query = self
            .sas_for(&blob.account, &acct, &res, sas::clamp_expiry(expiry))
            .await?;
        Ok(sas::with_sas(
            blob_url(&acct.url, &blob.container, &blob.name),
            &query,
        ))
    }

    /// One read link per blob under `prefix` (name, link), for sharing a prefix without
    /// exposing the rest of the container.
    pub async fn prefix_read_links(
        &self,
        account: &str,
        container: &str,
        prefix: &str,
        expiry: Option<Duration>,
    ) -> StoreResult<Vec<(String, Url)>> {
        use crate::ports::blob::BlobStoreExt;
        let items = self.list_all(account, container, prefix).await?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let link = self
                .read_link(&BlobRef::new(account, container, item.name.clone()), expiry)
                .await?;
            out.push((item.name, link));
        }
        Ok(out)
    }

    pub(super) async fn sas_for(
        &self,
        name: &str,
        acct: &Account,
        res: &SasResource<'_>,
        lifetime: Duration,
    ) -> StoreResult<String> {
        let now = OffsetDateTime::now_utc();
        let https_only = acct.url.scheme() == "https";
        match &acct.shared_key {
            Some(cred) => sas::sas_query(
                &SasSigner::SharedKey(cred),
                res,
                now,
                now + lifetime,
                https_only,
            ),
            None => {
                let key = self.delegation_key(name, acct, now + lifetime).await?;
                let expiry = (now + lifetime).min(key.signed_expiry);
                sas::sas_query(
                    &SasSigner::UserDelegation {
                        account: name,
                        key: &key,
                    },
                    res,
                    now,
                    expiry,
                    https_only,
                )
            }
        }
    }

    /// A user delegation key valid at least until `until` (cached; keys last up to 7 days).
    pub(super) async fn delegation_key(
        &self,
        name: &str,
        acct: &Account,
        until: OffsetDateTime,
    ) -> StoreResult<DelegationKey> {
        let mut cache = self.delegation_keys.lock().await;
        if let Some(k) = cache.get(name) {
            if k.signed_expiry >= until {
                return Ok(k.clone());
            }
        }
        let now = OffsetDateTime::now_utc();
        let info = KeyInfo {
            start: Some(now - Duration::minutes(5)),
            expiry: Some(now + sas::MAX_EXPIRY),
            ..Default::default()
        };
        let content = info
            .try_into()
            .map_err(|e| StoreError::Other(format!("key info: {e}")))?;
        let k = acct
            .service
            .get_user_delegation_key(content, None)
            .await
            .map_err(|e| map_err(e, &format!("user delegation key of {name}")))?
            .into_model()
            .map_err(|e| StoreError::Other(format!("user delegation key of {name}: {e}")))?;
        let missing = || StoreError::Other("incomplete user delegation key".into());
        let key = DelegationKey {
            signed_oid: k.signed_oid.ok_or_else(missing)?,
            signed_tid: k.signed_tid.ok_or_else(missing)?,
            signed_start: k.signed_start.ok_or_else(missing)?,
            signed_expiry: k.signed_expiry.ok_or_else(missing)?,
            signed_service: k.signed_service.ok_or_else(missing)?,
            signed_version: k.signed_version.ok_or_else(missing)?,
            value: k.value.ok_or_else(missing)?,
        };
        cache.insert(name.to_string(), key.clone());
        Ok(key)
    }
}
