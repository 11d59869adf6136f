//! A slice of more than one chunk keeps its result in pages (`state::paged_result`), and the
//! aggregator writes the certificate from them a page at a time. What the person and the
//! auditor get must not change: the same request, paged and not, yields the same certificate
//! (items, counts, status, Merkle root, Markdown items), the audit record's `reportSha256` is
//! the SHA-256 of the certificate's bytes as stored, and a reader of the stored report still
//! sees every item.

use sha2::{Digest, Sha256};

use super::*;

/// Run a real delete of alice's data as `id` with `chunk_size`; returns the environment.
async fn delete_alice(chunk_size: usize, id: &str) -> Env {
    let e = env(HoldSet::default(), chunk_size).await;
    submit(&e, request(&e, id, "delete", "alice", false), 1).await;
    e
}

async fn reports_blob(e: &Env, name: String) -> bytes::Bytes {
    e.store
        .read_small(&BlobRef::new("dsrstate", "dsr-reports", name))
        .await
        .unwrap()
        .0
}

/// Where two JSON values first differ (a path and both sides), for a readable failure.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value::{Array, Object};
    match (a, b) {
        (Object(x), Object(y)) => x
            .keys()
            .chain(y.keys())
            .find_map(|k| first_difference(&x[k], &y[k], &format!("{at}.{k}")))
            .or_else(|| (x.len() != y.len()).then(|| format!("{at}: keys differ"))),
        (Array(x), Array(y)) => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(n, (p, q))| first_difference(p, q, &format!("{at}[{n}]")))
            .or_else(|| {
                (x.len() != y.len()).then(|| format!("{at}: {} vs {} entries", x.len(), y.len()))
            }),
        _ => (a != b).then(|| format!("{at}: {a} vs {b}")),
    }
}

#[tokio::test]
async fn a_paged_delete_certifies_exactly_what_an_inline_one_does() {
    let id = "PAGED-DEL";
    // Chunk size 3 pages every slice of more than three items; 100,000 keeps all inline.
    let (paged, inline) = (delete_alice(3, id).await, delete_alice(100_000, id).await);

    let doc = |b: &bytes::Bytes| serde_json::from_slice::<serde_json::Value>(b).unwrap();
    let (pj, ij) = (
        reports_blob(&paged, format!("{id}/certificate.json")).await,
        reports_blob(&inline, format!("{id}/certificate.json")).await,
    );
    let (p, i) = (doc(&pj), doc(&ij));
    // A telemetry purge's operation id and time are each run's own.
    let (mut pn, mut in_) = (p.clone(), i.clone());
    for d in [&mut pn, &mut in_] {
        for item in d["results"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .flat_map(|r| r["items"].as_array_mut().unwrap())
        {
            let o = item.as_object_mut().unwrap();
            o.remove("operation");
            o.remove("requestedAt");
        }
    }
    for field in ["status", "counts", "slices", "results"] {
        assert_eq!(
            first_difference(&pn[field], &in_[field], field),
            None,
            "paged and inline differ"
        );
    }
    // Her blobs are all in it, each deleted and checked gone.
    let r = report(&paged, id).await;
    let mut expected: Vec<String> = paged.truth.blobs_of("alice").into_iter().cloned().collect();
    expected.sort();
    assert_eq!(r.blob_keys(), expected);
    assert!(r.counts.items > 10, "{:?}", r.counts);
    assert_eq!(r.counts.failed, 0);
    assert_eq!(r.counts.verified_gone, r.counts.deleted);

    // The Markdown lists the same items (the purges' lines name each run's own operation).
    let items_of = |md: bytes::Bytes| {
        let md = String::from_utf8(md.to_vec()).unwrap();
        md[md.find("## Items").expect("an item list")..]
            .lines()
            .filter(|l| !l.contains("pending (operation"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        items_of(reports_blob(&paged, format!("{id}/certificate.md")).await),
        items_of(reports_blob(&inline, format!("{id}/certificate.md")).await)
    );

    // The audit record hashes the stored bytes, and its Merkle root is the document's.
    let state = paged.svc.state();
    let audit: serde_json::Value = state
        .store
        .read_json(&state.audit_ref(&RequestId::parse(id).unwrap()))
        .await
        .unwrap()
        .expect("the audit record");
    assert_eq!(
        audit["reportSha256"].as_str().unwrap(),
        hex::encode(Sha256::digest(&pj))
    );
    assert_eq!(
        audit["itemsMerkleRoot"].as_str(),
        azureml_dsr::domain::merkle::items_root_of_document(&p).as_deref()
    );

    // It was paged: the jobs slice's stored result is a head naming checked pages of at most
    // three items, and the stored report holds that head.
    let head = state
        .report_head(&RequestId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let jobs = head
        .results
        .iter()
        .find(|s| s.resource_type == ResourceType::Jobs)
        .expect("a jobs slice");
    let pages = jobs.pages.as_ref().expect("the jobs result is paged");
    assert!(jobs.items.is_empty());
    assert_eq!(pages.set, azureml_dsr::domain::slice::PageSet::Verified);
    assert!(pages.pages > 1, "{pages:?}");
    let mut in_pages = 0u64;
    for n in 0..pages.pages {
        let page = state.result_page(&head.request_id, jobs, n).await.unwrap();
        assert!(!page.is_empty() && page.len() <= 3, "{}", page.len());
        in_pages += page.len() as u64;
    }
    assert_eq!(in_pages, pages.items);
}

/// A page the stored report names that is gone is a fault, never "no items": fan-in retries,
/// and writes no certificate that would leave the page's items out.
#[tokio::test]
async fn a_missing_result_page_stops_fan_in_rather_than_certify_less() {
    let e = env(HoldSet::default(), 3).await;
    let body = request(&e, "PAGED-GAP", "delete", "alice", false).to_string();
    intake::run(&e.svc, body.as_bytes(), &support::pipeline::delivery())
        .await
        .unwrap();
    // Deliver everything but completions.
    let mut completions = Vec::new();
    while let Some(m) = e.bus.pop() {
        if m.queue == queues::COMPLETIONS {
            completions.push(m);
        } else {
            support::pipeline::deliver(&e.svc, &m).await;
        }
    }
    // A paged, checked result's second page.
    let page = state_blob(&e, "PAGED-GAP", "/result-pages/", "/000001.json").await;
    e.store.delete(&page).await.unwrap();
    let mut errors = 0;
    for m in &completions {
        let c: azureml_dsr::domain::slice::SliceCompletion =
            serde_json::from_slice(&m.body).unwrap();
        if azureml_dsr::functions::aggregate::run(&e.svc, &c)
            .await
            .is_err()
        {
            errors += 1;
        }
    }
    assert!(errors > 0, "the last completion's fan-in fails");
    assert!(
        certificate(&e, "PAGED-GAP", "certificate.json")
            .await
            .is_none(),
        "no certificate without every item"
    );
}

/// The export archive is built from the stored report a page at a time: for the same report
/// it is byte for byte the archive built from every item at once, and it verifies.
#[tokio::test]
async fn a_paged_export_archive_is_byte_for_byte_the_inline_one() {
    use azureml_dsr::functions::archive;
    let e = env(HoldSet::default(), 3).await;
    submit(&e, request(&e, "PAGED-EXP", "export", "alice", false), 1).await;
    let state = e.svc.state();
    let id = RequestId::parse("PAGED-EXP").unwrap();
    let head = state.report_head(&id).await.unwrap().unwrap();
    assert!(
        head.results.iter().any(|r| r.pages.is_some()),
        "the export's report is paged"
    );
    let blob = archive::archive_ref(&state, &head);
    let from_pages = e.store.read_small(&blob).await.unwrap().0;

    let full = state.report(&id).await.unwrap().unwrap();
    assert!(full.results.iter().all(|r| r.pages.is_none()));
    archive::build(e.store.as_ref(), &state, &full, archive::BLOCK_SIZE)
        .await
        .unwrap();
    let from_items = e.store.read_small(&blob).await.unwrap().0;
    assert_eq!(
        hex::encode(Sha256::digest(&from_pages)),
        hex::encode(Sha256::digest(&from_items))
    );
    assert!(from_pages.len() > 1000);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.zip");
    std::fs::write(&file, &from_pages).unwrap();
    let v = azureml_dsr::cli::export::verify(&file).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    // Every exported item of hers, plus the guide, the report (JSON, Markdown), the manifest
    // and a CSV per telemetry table.
    assert!(
        v.entries as u64 > full.counts.exported,
        "{} entries",
        v.entries
    );
}
