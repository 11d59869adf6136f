//! No subject identifier (object id, UPN, e-mail, display name) appears in clear text in any
//! log line or span field, at every level, while full requests run through the local runtime
//! (handler over HTTP, dispatcher, slices, aggregator) — including rejected ones.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azureml_dsr::cli::local::{LocalRuntime, StorageChoice};
use azureml_dsr::cli::requests::enqueue;
use azureml_dsr::cli::seed::{seed_into, SeedArgs};
use azureml_dsr::wiring::LocalPaths;
use serde_json::json;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The capturing subscriber is this test's own, not the process's global default: the other
/// tests of this binary run in the same process, and their log lines must neither land in this
/// capture nor be formatted at TRACE level. It is the default of the test's thread and of every
/// thread of the test's runtime (workers and blocking pool), where the code under test runs.
#[test]
fn a_full_dsr_logs_no_personal_data() {
    let capture = Capture::default();
    let writer = capture.clone();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let on_start = dispatch.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // Held for the thread's life: runtime threads end with the runtime.
            std::mem::forget(tracing::dispatcher::set_default(&on_start));
        })
        .build()
        .unwrap();
    rt.block_on(full_dsr(capture));
}

async fn full_dsr(capture: Capture) {
    let dir = tempfile::tempdir().unwrap();
    let truth = seed_into(
        dir.path(),
        &StorageChoice::Local,
        &SeedArgs {
            workspaces: 1,
            users: 3,
            runs_per_user: 3,
            files_per_run: 1,
            output_bytes: 64,
            seed: 5,
        },
    )
    .await
    .unwrap();
    let rt = LocalRuntime::start(
        dir.path(),
        &StorageChoice::Local,
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")),
    )
    .await
    .unwrap();
    let paths = LocalPaths::new(dir.path());
    let ws: Vec<String> = truth.workspaces.iter().map(|w| w.to_string()).collect();
    let alice = truth.user("alice").unwrap();
    let requests = vec![
        json!({"schemaVersion": "1.0", "requestId": "PII-1", "type": "export", "subject": {"upn": alice.upn, "displayName": alice.display_name}, "scope": {"workspaces": ws}}),
        json!({"schemaVersion": "1.0", "requestId": "PII-2", "type": "delete", "subject": {"objectId": alice.object_id.to_string()}, "scope": {"workspaces": ws}}),
        json!({"schemaVersion": "1.0", "requestId": "PII-3", "type": "delete", "dryRun": true, "subject": {"upn": truth.users[1].upn}, "scope": {"workspaces": ws}}),
        // Rejected ones still carry personal data in the payload.
        json!({"schemaVersion": "1.0", "requestId": "PII-4", "type": "erase", "subject": {"upn": truth.users[2].upn, "displayName": truth.users[2].display_name}, "scope": {"workspaces": ws}}),
        json!({"schemaVersion": "1.0", "requestId": "PII-5", "type": "export", "subject": {"upn": "someone.unknown@contoso.com"}, "scope": {"workspaces": ws}}),
    ];
    for r in &requests {
        enqueue(
            &azureml_dsr::wiring::open_local_queue(&paths.root).unwrap(),
            r.to_string().into_bytes(),
        )
        .await
        .unwrap();
    }
    // Personal data in the wrong field: a rejection reason must not quote it.
    let bob = &truth.users[1];
    enqueue(
        &azureml_dsr::wiring::open_local_queue(&paths.root).unwrap(),
        json!({"schemaVersion": "1.0", "requestId": "PII-6", "type": bob.upn, "regulation": bob.display_name,
               "subject": {"upn": bob.upn}, "scope": {"workspaces": ws}})
        .to_string()
        .into_bytes(),
    )
    .await
    .unwrap();
    // Forged or corrupted internal messages carrying a subject: refused (400, dead-lettered
    // after the queue's redeliveries) without the subject reaching a log line.
    let queue = azureml_dsr::wiring::open_local_queue(&paths.root).unwrap();
    let subject =
        json!({"objectId": alice.object_id.to_string(), "upn": alice.upn, "notebookAliases": []});
    let forged = [
        json!({"requestId": "PII-7", "type": alice.upn, "dryRun": false, "subject": subject,
               "workspace": ws[0], "resourceType": "jobs", "key": "k", "hold": null}),
        json!({"requestId": "PII-7", "type": "delete", "dryRun": false, "subject": subject,
               "workspace": ws[0], "resourceType": "jobs", "key": "k", "hold": null, "chunk": alice.display_name}),
        json!({"requestId": "PII-7", "type": "delete", "dryRun": false, "subject": subject,
               "workspace": ws[0], "resourceType": "jobs", "key": "k", "hold": null, "chunk": 0}),
    ];
    for (i, body) in forged.iter().enumerate() {
        use azureml_dsr::ports::bus::MessageBus;
        queue
            .send(azureml_dsr::ports::bus::OutMessage::json(
                "dsr-slice-jobs",
                format!("forged-{i}"),
                body,
            ))
            .await
            .unwrap();
    }
    // Control messages carrying personal data in free text and in a field name.
    for body in [
        json!({"type": "cancel", "version": 1, "requestId": "PII-3", "reason": format!("asked by {}", alice.upn)}),
        json!({"type": "extend", "version": 1, "requestId": "PII-1", "days": 5, "reason": alice.display_name}),
        json!({"type": "cancel", "version": 1, "requestId": "PII-2", bob.upn.clone(): bob.display_name}),
    ] {
        enqueue(&queue, body.to_string().into_bytes())
            .await
            .unwrap();
    }
    rt.drain(Duration::from_secs(120)).await.unwrap();
    rt.stop().await;

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).to_string();
    assert!(logs.contains("request finalised"), "the run produced logs");
    assert!(logs.contains("subj-"), "subjects are named by hash");
    assert!(
        logs.contains("not a valid slice task") && logs.contains("slice task refused"),
        "the forged messages were refused"
    );
    // Each invocation's lines carry its invocation id and its request's trace id.
    assert!(
        logs.contains("invocation_id=") && logs.contains("trace_id="),
        "no invocation span in the logs"
    );
    let mut secrets = vec!["someone.unknown@contoso.com".to_string()];
    for u in &truth.users {
        secrets.push(u.upn.clone());
        secrets.push(u.display_name.clone());
        secrets.push(u.object_id.to_string());
        secrets.push(u.object_id.simple().to_string());
        secrets.push(u.object_id.to_string().to_uppercase());
    }
    for s in secrets {
        assert!(
            !logs.to_lowercase().contains(&s.to_lowercase()),
            "personal data {s:?} found in logs"
        );
    }
}
