//! The `BlobStore` conformance suite: one body of checks that every store — the file store, the
//! in-memory store, the Azure store on Azurite — and every decorator around them must pass, so
//! the stores agree on what the pipeline relies on (paging, prefixes, conditions, batch delete,
//! links, error classes). Called once per store from `tests/it/azure_blob/conformance.rs`.
//!
//! [`forwarding`] checks the decorators themselves: each trait method called on the wrapper
//! must reach the same method of the wrapped store (a wrapper that turned `delete_many` into N
//! deletes, or answered `read_link` itself, fails it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azureml_dsr::adapters::local::memory_blob::MemoryBlobStore;
use azureml_dsr::ports::blob::*;
use azureml_dsr::ports::blob_layer::{BlobLayer, Op, StoreFuture};
use bytes::Bytes;

/// Where the suite writes, and what the store can do.
pub struct Target<'a> {
    pub store: &'a dyn BlobStore,
    pub account: &'a str,
    /// A container of its own (created by the suite), so runs can share a server.
    pub container: &'a str,
    /// The store issues read links (`read_link` returns `Some`).
    pub links: bool,
}

impl Target<'_> {
    fn blob(&self, name: &str) -> BlobRef {
        BlobRef::new(self.account, self.container, name)
    }

    async fn put(&self, name: &str, body: &'static [u8], cond: Condition) -> StoreResult<String> {
        self.store
            .put(
                &self.blob(name),
                Bytes::from_static(body),
                "text/plain",
                cond,
                &BTreeMap::new(),
            )
            .await
    }
}

/// Every check, in order.
pub async fn run_all(t: &Target<'_>) {
    t.store
        .create_container(t.account, t.container)
        .await
        .unwrap_or_else(|e| panic!("{}: create container: {e}", t.store.kind()));
    // Creating it again is not an error.
    t.store
        .create_container(t.account, t.container)
        .await
        .unwrap();
    paging_and_prefixes(t).await;
    conditions(t).await;
    deletes(t).await;
    batch_delete(t).await;
    links(t).await;
    errors(t).await;
    blocks(t).await;
}

/// A blob written in blocks: nothing visible until the commit, then exactly the committed
/// blocks in the committed order (not the staging order); a later commit replaces it whole;
/// an unknown block id is refused.
pub async fn blocks(t: &Target<'_>) {
    let kind = t.store.kind();
    let b = t.blob("blocks/archive.zip");
    for (id, body) in [
        ("blk-002", &b"world"[..]),
        ("blk-001", b"hello "),
        ("blk-003", b"unused"),
    ] {
        t.store
            .stage_block(&b, id, Bytes::from_static(body))
            .await
            .unwrap_or_else(|e| panic!("{kind}: stage {id}: {e}"));
    }
    assert!(
        matches!(t.store.open(&b).await, Err(StoreError::NotFound(_))),
        "{kind}: staged blocks are not a blob"
    );
    let ids = ["blk-001".to_string(), "blk-002".to_string()];
    t.store
        .commit_blocks(&b, &ids, "application/zip")
        .await
        .unwrap_or_else(|e| panic!("{kind}: commit: {e}"));
    let (body, _) = t.store.read_small(&b).await.unwrap();
    assert_eq!(&body[..], b"hello world", "{kind}");
    t.store
        .stage_block(&b, "blk-001", Bytes::from_static(b"again"))
        .await
        .unwrap();
    t.store
        .commit_blocks(&b, &ids[..1], "application/zip")
        .await
        .unwrap();
    let (body, _) = t.store.read_small(&b).await.unwrap();
    assert_eq!(&body[..], b"again", "{kind}: a commit replaces the blob");
    assert!(
        t.store
            .commit_blocks(&b, &["blk-009".to_string()], "application/zip")
            .await
            .is_err(),
        "{kind}: a block never staged cannot be committed"
    );
    assert!(
        t.store
            .stage_block(&b, "../x", Bytes::from_static(b"x"))
            .await
            .is_err(),
        "{kind}: a block id is checked"
    );
}

/// Listings are in name order, limited to the prefix, and page through continuation markers.
pub async fn paging_and_prefixes(t: &Target<'_>) {
    let kind = t.store.kind();
    for n in [
        "page/c", "page/a", "page/e", "page/b", "page/d", "pagex/z", "other/y",
    ] {
        t.put(n, b"x", Condition::None).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut marker = None;
    let mut pages = 0;
    loop {
        let page = t
            .store
            .list_page(t.account, t.container, "page/", marker, 2)
            .await
            .unwrap();
        assert!(page.items.len() <= 2, "{kind}: page larger than asked");
        pages += 1;
        seen.extend(page.items.into_iter().map(|i| i.name));
        match page.next {
            Some(m) => marker = Some(m),
            None => break,
        }
        assert!(pages < 10, "{kind}: listing does not end");
    }
    assert_eq!(
        seen,
        ["page/a", "page/b", "page/c", "page/d", "page/e"],
        "{kind}: paged listing"
    );
    assert!(
        pages >= 3,
        "{kind}: 5 items in pages of 2 took {pages} pages"
    );
    let all = t
        .store
        .list_all(t.account, t.container, "page")
        .await
        .unwrap();
    assert_eq!(all.len(), 6, "{kind}: prefix 'page' covers pagex/ too");
    let containers = t.store.list_containers(t.account, "").await.unwrap();
    assert!(
        containers.iter().any(|c| c == t.container),
        "{kind}: {containers:?}"
    );
}

/// IfNotExists creates once; IfMatch replaces only the version it names.
pub async fn conditions(t: &Target<'_>) {
    let kind = t.store.kind();
    let e1 = t
        .put("cond/doc", b"1", Condition::IfNotExists)
        .await
        .unwrap();
    let again = t.put("cond/doc", b"2", Condition::IfNotExists).await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists(_))),
        "{kind}: {again:?}"
    );
    let e2 = t
        .put("cond/doc", b"3", Condition::IfMatch(e1.clone()))
        .await
        .unwrap();
    assert_ne!(e1, e2, "{kind}: a write changes the ETag");
    let stale = t.put("cond/doc", b"4", Condition::IfMatch(e1)).await;
    assert!(
        matches!(stale, Err(StoreError::ConditionFailed(_))),
        "{kind}: {stale:?}"
    );
    let (body, etag) = t.store.read_small(&t.blob("cond/doc")).await.unwrap();
    assert_eq!(&body[..], b"3", "{kind}");
    assert_eq!(etag, e2, "{kind}: read returns the current ETag");
}

/// A delete reports what it did, and a second one finds nothing.
pub async fn deletes(t: &Target<'_>) {
    let kind = t.store.kind();
    t.put("del/one", b"x", Condition::None).await.unwrap();
    let b = t.blob("del/one");
    assert_eq!(
        t.store.delete(&b).await.unwrap(),
        DeleteOutcome::Deleted,
        "{kind}"
    );
    assert_eq!(
        t.store.delete(&b).await.unwrap(),
        DeleteOutcome::NotFound,
        "{kind}"
    );
    assert!(
        matches!(t.store.open(&b).await, Err(StoreError::NotFound(_))),
        "{kind}: deleted blob still readable"
    );
}

/// One result per name, in order; the blobs are gone afterwards.
pub async fn batch_delete(t: &Target<'_>) {
    let kind = t.store.kind();
    for n in ["batch/a", "batch/c"] {
        t.put(n, b"x", Condition::None).await.unwrap();
    }
    let names: Vec<String> = ["batch/a", "batch/b", "batch/c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let r = t
        .store
        .delete_many(t.account, t.container, &names)
        .await
        .unwrap();
    let r: Vec<DeleteOutcome> = r.into_iter().map(|x| x.unwrap()).collect();
    assert_eq!(
        r,
        [
            DeleteOutcome::Deleted,
            DeleteOutcome::NotFound,
            DeleteOutcome::Deleted
        ],
        "{kind}"
    );
    let left = t
        .store
        .list_all(t.account, t.container, "batch/")
        .await
        .unwrap();
    assert!(left.is_empty(), "{kind}: {left:?}");
}

/// A store that issues links issues one that reads the blob; the others say `None`.
pub async fn links(t: &Target<'_>) {
    let kind = t.store.kind();
    t.put("link/a.json", b"linked", Condition::None)
        .await
        .unwrap();
    let link = t
        .store
        .read_link(&t.blob("link/a.json"), time::Duration::hours(1))
        .await
        .unwrap();
    if !t.links {
        assert_eq!(link, None, "{kind}");
        return;
    }
    let link = link.unwrap_or_else(|| panic!("{kind}: no read link"));
    let body = reqwest::get(&link)
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], b"linked", "{kind}");
}

/// Errors keep their class: NotFound, AlreadyExists, ConditionFailed (above), InvalidName.
pub async fn errors(t: &Target<'_>) {
    let kind = t.store.kind();
    let missing = t.store.open(&t.blob("err/missing")).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{kind}: open missing"
    );
    let copy = t
        .store
        .copy(&t.blob("err/missing"), &t.blob("err/copy"))
        .await;
    assert!(
        matches!(copy, Err(StoreError::NotFound(_))),
        "{kind}: copy missing: {copy:?}"
    );
    let bad = t
        .store
        .put(
            &BlobRef::new("bad/account", t.container, "x"),
            Bytes::from_static(b"x"),
            "text/plain",
            Condition::None,
            &BTreeMap::new(),
        )
        .await;
    assert!(
        matches!(bad, Err(StoreError::InvalidName(_))),
        "{kind}: bad account: {bad:?}"
    );
}

/// Which methods reached the wrapped store.
#[derive(Default)]
pub struct Probe {
    inner: MemoryBlobStore,
    calls: Mutex<Vec<&'static str>>,
}

impl Probe {
    fn saw(&self, m: &'static str) {
        self.calls.lock().unwrap().push(m);
    }
    pub fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }
}

/// The link the probe issues, to tell it from a wrapper's own answer.
pub const PROBE_LINK: &str = "https://probe.invalid/link";

/// Records each call's method at its entry ([`BlobLayer::around`]), answers `read_link` itself,
/// and forwards the rest to its memory store.
#[async_trait]
impl BlobLayer for Probe {
    fn inner(&self) -> &dyn BlobStore {
        &self.inner
    }
    fn kind(&self) -> &'static str {
        "probe"
    }
    fn around<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        call: &'a (dyn Fn() -> StoreFuture<'a, T> + Send + Sync + 'a),
    ) -> StoreFuture<'a, T> {
        self.saw(op.name());
        call()
    }
    async fn read_link(&self, _b: &BlobRef, _e: time::Duration) -> StoreResult<Option<String>> {
        Ok(Some(PROBE_LINK.to_string()))
    }
}

/// Every method called on `wrap(probe)` reaches the probe's same method, once.
pub async fn forwarding(name: &str, wrap: impl Fn(Arc<dyn BlobStore>) -> Arc<dyn BlobStore>) {
    let probe = Arc::new(Probe::default());
    let store = wrap(probe.clone());
    let (a, c) = ("acct", "cont");
    let b = BlobRef::new(a, c, "x");
    let expect = |m: &'static str| {
        let calls = probe.calls();
        assert_eq!(
            calls.last().copied(),
            Some(m),
            "{name}: {m} did not reach the wrapped store: {calls:?}"
        );
        assert_eq!(
            calls.iter().filter(|x| **x == m).count(),
            1,
            "{name}: {m} reached it more than once: {calls:?}"
        );
    };
    store.create_container(a, c).await.unwrap();
    expect("create_container");
    store.list_containers(a, "").await.unwrap();
    expect("list_containers");
    store
        .put(
            &b,
            Bytes::from_static(b"x"),
            "text/plain",
            Condition::None,
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    expect("put");
    store.list_page(a, c, "", None, 10).await.unwrap();
    expect("list_page");
    let _ = store.open(&b).await.unwrap();
    expect("open");
    store.copy(&b, &BlobRef::new(a, c, "y")).await.unwrap();
    expect("copy");
    assert_eq!(
        store
            .read_link(&b, time::Duration::hours(1))
            .await
            .unwrap()
            .as_deref(),
        Some(PROBE_LINK),
        "{name}: read_link answered by the wrapper"
    );
    expect("read_link");
    store.delete_many(a, c, &["y".to_string()]).await.unwrap();
    expect("delete_many");
    assert!(
        !probe.calls().contains(&"delete"),
        "{name}: delete_many became single deletes"
    );
    let z = BlobRef::new(a, c, "z");
    store
        .stage_block(&z, "b0", Bytes::from_static(b"z"))
        .await
        .unwrap();
    expect("stage_block");
    store
        .commit_blocks(&z, &["b0".to_string()], "text/plain")
        .await
        .unwrap();
    expect("commit_blocks");
    store.delete(&b).await.unwrap();
    expect("delete");
    store.delete_container(a, c).await.unwrap();
    expect("delete_container");
}
