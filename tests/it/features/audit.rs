//! The audit chain: concurrent appends form one chain (Azurite and local), verify names each tampering.

use super::*;

/// `n` writers appending `each` records at once; the chain must hold every record exactly
/// once, at consecutive positions, with every link intact.
async fn concurrent_appends(state: StateStore, n: usize, each: usize) {
    state.ensure_containers().await.unwrap();
    let tasks: Vec<_> = (0..n)
        .map(|w| {
            let state = state.clone();
            tokio::spawn(async move {
                for i in 0..each {
                    let rec = json!({"requestId": format!("W{w}-{i}"), "status": "completed"});
                    audit_trail::record(&state, &format!("requests/W{w}-{i}.json"), &rec)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let v = audit_trail::verify(&state).await.unwrap();
    assert!(v.ok(), "{:?}", v.findings);
    assert_eq!(v.entries, (n * each) as u64);
    let mut refs = Vec::new();
    for seq in 0..(n * each) as u64 {
        let (b, _) = state
            .store
            .read_small(&state.blob(AUDIT, entry_name(seq)))
            .await
            .unwrap();
        let e: ChainEntry = serde_json::from_slice(&b).unwrap();
        refs.push(e.record_ref);
    }
    refs.sort();
    refs.dedup();
    assert_eq!(refs.len(), n * each, "every record chained exactly once");
    assert!(v.unchained.is_empty(), "{:?}", v.unchained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_chain_concurrent_appends_against_azurite_form_one_chain() {
    let az = support::azurite::Azurite::start(&["dsrstate"]);
    let store: Arc<dyn BlobStore> = Arc::new(AzureBlobStore::azurite(&az.base_url));
    concurrent_appends(StateStore::new(store, "dsrstate"), 8, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_chain_concurrent_appends_on_the_local_store_form_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(&LocalPaths::new(dir.path()));
    concurrent_appends(StateStore::new(store, "dsrstate"), 8, 5).await;
}

async fn overwrite(store: &dyn BlobStore, b: &BlobRef, body: Vec<u8>) {
    store
        .put(
            b,
            body.into(),
            "application/json",
            Condition::None,
            &Default::default(),
        )
        .await
        .unwrap();
}

/// A trail copied out of the WORM container (the local store allows overwrites): verify passes
/// untouched and names the position of a changed, a removed and a reordered record, and of a
/// certificate whose items were changed.
#[tokio::test]
async fn audit_verify_passes_untouched_and_names_each_tampering() {
    let e = env_with(Settings::default()).await;
    submit(&e, "EXP-A1", "export", "alice").await;
    submit(&e, "DEL-A1", "delete", "bob").await;
    submit(&e, "DEL-A2", "delete", "carol").await;
    let state = e.svc.state();
    let v = audit_trail::verify(&state).await.unwrap();
    assert!(v.ok(), "{:?}", v.findings);
    assert!(v.entries >= 3, "{v:?}");
    assert_eq!(v.roots_recomputed, 3, "{v:?}");

    let entry = |seq| state.blob(AUDIT, entry_name(seq));
    let original: Vec<Vec<u8>> = {
        let mut out = Vec::new();
        for seq in 0..v.entries {
            out.push(e.store.read_small(&entry(seq)).await.unwrap().0.to_vec());
        }
        out
    };
    let restore = || async {
        for (seq, b) in original.iter().enumerate() {
            overwrite(e.store.as_ref(), &entry(seq as u64), b.clone()).await;
        }
    };

    // Changed: a record's status edited in the chain entry (hash recomputed to hide it).
    let mut changed: ChainEntry = serde_json::from_slice(&original[1]).unwrap();
    changed.record["status"] = json!("completed_by_hand");
    changed.record_sha256 = azureml_dsr::domain::audit_chain::record_hash(&changed.record);
    overwrite(
        e.store.as_ref(),
        &entry(1),
        serde_json::to_vec_pretty(&changed).unwrap(),
    )
    .await;
    let v = audit_trail::verify(&state).await.unwrap();
    assert!(
        v.findings
            .iter()
            .any(|f| f.position == 2 && f.problem.contains("position 1")),
        "{:?}",
        v.findings
    );
    restore().await;

    // Removed: entry 1 deleted.
    e.store.delete(&entry(1)).await.unwrap();
    let v = audit_trail::verify(&state).await.unwrap();
    assert!(
        v.findings
            .iter()
            .any(|f| f.position == 1 && f.problem.contains("missing")),
        "{:?}",
        v.findings
    );
    restore().await;

    // Reordered: entries 0 and 1 swapped.
    overwrite(e.store.as_ref(), &entry(0), original[1].clone()).await;
    overwrite(e.store.as_ref(), &entry(1), original[0].clone()).await;
    let v = audit_trail::verify(&state).await.unwrap();
    assert_eq!(
        v.findings.first().map(|f| f.position),
        Some(0),
        "{:?}",
        v.findings
    );
    assert!(
        v.findings.iter().any(|f| f.problem.contains("reordered")),
        "{:?}",
        v.findings
    );
    restore().await;
    assert!(audit_trail::verify(&state).await.unwrap().ok());

    // A certificate's item changed after the fact.
    let cert = state.blob(REPORTS, "DEL-A1/certificate.json");
    let (bytes, _) = e.store.read_small(&cert).await.unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let items = doc["results"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| !r["items"].as_array().unwrap().is_empty())
        .unwrap();
    items["items"].as_array_mut().unwrap().remove(0);
    overwrite(
        e.store.as_ref(),
        &cert,
        serde_json::to_vec_pretty(&doc).unwrap(),
    )
    .await;
    let v = audit_trail::verify(&state).await.unwrap();
    assert!(
        v.findings
            .iter()
            .any(|f| f.problem.contains("Merkle root differs")),
        "{:?}",
        v.findings
    );

    // The command reports it and exits non-zero.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_azureml-dsr"))
        .arg("--data-dir")
        .arg(e.dir.path())
        .args(["audit", "verify"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("Merkle root differs"), "{stdout}");
    overwrite(e.store.as_ref(), &cert, bytes.to_vec()).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_azureml-dsr"))
        .arg("--data-dir")
        .arg(e.dir.path())
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
