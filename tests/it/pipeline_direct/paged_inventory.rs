//! A heavy slice's inventory is frozen in pages of one chunk (`state::paged_inventory`): each
//! chunk invocation reads its own page, and the chunk boundaries are the frozen pages', so a
//! `DSR_CHUNK_SIZE` changed while a request is in flight (an app-settings change restarts the
//! app with the new value) neither repeats nor skips an item.

use super::*;

/// Intake `kind` for alice as `id`, then deliver (with `e`'s chunk size) until the jobs slice
/// has frozen its inventory and processed its first chunk; returns that slice's task.
async fn start_until_first_jobs_chunk(e: &Env, id: &str, kind: &str) -> SliceTask {
    let body = request(e, id, kind, "alice", false).to_string();
    intake::run(&e.svc, body.as_bytes(), &support::pipeline::delivery())
        .await
        .unwrap();
    loop {
        let m = e
            .bus
            .pop()
            .expect("the jobs slice's first chunk is delivered");
        support::pipeline::deliver(&e.svc, &m).await;
        if m.queue == "dsr-slice-jobs" {
            let t: SliceTask = serde_json::from_slice(&m.body).unwrap();
            if t.chunk == 0 {
                return t;
            }
        }
    }
}

#[tokio::test]
async fn a_chunk_size_changed_mid_request_neither_repeats_nor_skips_an_item() {
    let e = env(HoldSet::default(), 5).await;
    // Chunk size 5 until the jobs slice has frozen its inventory and done its first chunk…
    start_until_first_jobs_chunk(&e, "PAGED-1", "export").await;
    // …then the app restarts with chunk size 3 for everything after.
    let mut restarted = e.svc.clone();
    restarted.settings.chunk_size = 3;
    support::pipeline::drive(&restarted, &e.bus, 1).await;

    let r = report(&e, "PAGED-1").await;
    let keys = r.blob_keys();
    let mut expected: Vec<String> = e.truth.blobs_of("alice").into_iter().cloned().collect();
    expected.sort();
    assert_eq!(keys, expected, "every blob of hers exactly once");
    let jobs_items: Vec<String> = r
        .results
        .iter()
        .filter(|s| s.resource_type == ResourceType::Jobs)
        .flat_map(|s| &s.items)
        .map(|o| format!("{:?}", o.item))
        .collect();
    let distinct: std::collections::BTreeSet<&String> = jobs_items.iter().collect();
    assert_eq!(distinct.len(), jobs_items.len(), "no item repeated");

    // The jobs slice's head holds no entries; its pages hold them, 5 at most each.
    let state = e.svc.state();
    let names: Vec<String> = state
        .store
        .list_all("dsrstate", "dsr-state", "requests/PAGED-1/slices/")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .filter(|n| n.contains("-jobs") && n.contains("/inventory"))
        .collect();
    let head = names
        .iter()
        .find(|n| n.ends_with("/inventory.json"))
        .expect("the jobs slice's inventory head");
    let head: serde_json::Value = state
        .store
        .read_json(&BlobRef::new("dsrstate", "dsr-state", head.clone()))
        .await
        .unwrap()
        .unwrap();
    assert!(
        head["entries"].as_array().is_none_or(|a| a.is_empty()),
        "{head}"
    );
    assert_eq!(head["pages"]["pageSize"], 5);
    let pages: Vec<&String> = names
        .iter()
        .filter(|n| n.contains("/inventory-pages/"))
        .collect();
    assert_eq!(pages.len() as u64, head["pages"]["pages"].as_u64().unwrap());
    let mut in_pages = 0;
    for p in pages {
        let page: Vec<serde_json::Value> = state
            .store
            .read_json(&BlobRef::new("dsrstate", "dsr-state", p.clone()))
            .await
            .unwrap()
            .unwrap();
        assert!(page.len() <= 5);
        in_pages += page.len();
    }
    assert_eq!(in_pages, jobs_items.len());
}

/// A page of a frozen inventory that does not parse (here: a kind the product does not know,
/// naming another user's compute) is refused like a whole inventory that does not parse: the
/// slice fails, the request says so, and nothing the page names is touched.
#[tokio::test]
async fn a_damaged_inventory_page_fails_the_slice_and_touches_nothing() {
    let e = env(HoldSet::default(), 5).await;
    let jobs_task = start_until_first_jobs_chunk(&e, "PAGED-2", "delete").await;
    // The jobs slice's second page.
    let page = state_blob(&e, "PAGED-2", "-jobs/inventory-pages/", "/000001.json").await;
    let bob_compute = compute_of(&e, "bob");
    e.store
        .write_json(
            &page,
            &json!([{"item": {"kind": "resource", "resourceType": "datastore", "id": bob_compute}}]),
        )
        .await
        .unwrap();
    drive(&e, 1).await;
    let jobs = assert_slice_refused(&e, "PAGED-2", &jobs_task.key, &bob_compute).await;
    assert!(
        jobs.reason.as_deref().is_some_and(|r| r.contains("page")),
        "{:?}",
        jobs.reason
    );
}
