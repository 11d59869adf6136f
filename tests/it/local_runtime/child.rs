//! The runtime as a child process: enqueue and lock, and `kill -9` mid delivery loses nothing.

use super::*;

const CHILD_ENV: &str = "DSR_LOCAL_RUNTIME_CHILD_QUEUE";

/// Not a test on its own: the child process of `kill_9_mid_delivery_loses_nothing`. It enqueues
/// 200 messages, locks the first 50 (each a first delivery), announces it, and waits to be killed.
#[test]
fn child_enqueue_and_lock() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let q = LocalQueue::open(&path).unwrap();
    let batch: Vec<_> = (0..200)
        .map(|i| msg("dsr-intake", &format!("m{i:03}"), json!({"i": i})))
        .collect();
    q.send_many_blocking(&batch).unwrap();
    // The locks must outlive the time the child takes to take all 50 of them. With 300 ms, a
    // loaded machine (50 fsync'd transactions) let the first locks expire while the child was
    // still locking, so the child re-received those instead of new messages and the parent saw
    // 46 second deliveries instead of 50. Three seconds is far beyond that; the parent does not
    // sleep it out, its drain waits for live locks (`pending` counts them). Each receive is
    // checked to be a first delivery of a new message, so an expired lock fails here, by name.
    let opts = azureml_dsr::adapters::local::sqlite_queue::ReceiveOptions {
        lock_duration: Duration::from_secs(3),
        max_delivery_count: 10,
    };
    for i in 0..50 {
        let d = q.receive_with("dsr-intake", opts).unwrap().unwrap();
        assert_eq!(
            (d.message_id.as_str(), d.delivery_count),
            (format!("m{i:03}").as_str(), 1),
            "a lock of this child expired before it had taken all 50"
        );
    }
    // libtest prints "test <name> ... " on the same line, so the parent matches the line end.
    println!("LOCKED");
    std::thread::sleep(Duration::from_secs(60));
}

/// `child_enqueue_and_lock` as libtest names it: `module_path!()` is `it::local_runtime::child`.
fn child_test_name() -> String {
    let module = module_path!();
    let module = module.split_once("::").map_or(module, |(_, m)| m);
    format!("{module}::child_enqueue_and_lock")
}

#[tokio::test]
async fn kill_9_mid_delivery_loses_nothing() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    let path = e.queue.path().to_path_buf();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            // Its name in the one test binary, derived from this module's path (without the
            // crate name), so moving the module cannot silently make the child run no test.
            child_test_name().as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.trim_end().ends_with("LOCKED"))
    });
    assert!(
        tokio::time::timeout(Duration::from_secs(60), ready)
            .await
            .unwrap()
            .unwrap(),
        "the child ({}) never announced its 50 locks; its stderr says why",
        child_test_name()
    );
    child.kill().unwrap(); // SIGKILL on Unix: no destructor, no settlement.
    child.wait().unwrap();

    let h = Handler::start(|_, _, _| (200, Duration::ZERO)).await;
    let queue = LocalQueue::open(&path).unwrap();
    let d = Dispatcher::new(&e.root, queue.clone(), &h.base_url, fast_options()).unwrap();
    let started = Instant::now();
    d.drain_until_idle(Duration::from_secs(60)).await.unwrap();
    let calls = h.calls();
    let mut by_id: BTreeMap<String, String> = BTreeMap::new();
    for c in &calls {
        let id = md(c, "MessageId").as_str().unwrap().to_string();
        assert!(by_id
            .insert(id, md(c, "DeliveryCount").as_str().unwrap().to_string())
            .is_none());
    }
    assert_eq!(calls.len(), 200, "drained in {:?}", started.elapsed());
    assert_eq!(by_id.values().filter(|c| *c == "2").count(), 50);
    assert_eq!(by_id.values().filter(|c| *c == "1").count(), 150);
    assert_eq!(
        queue.counts("dsr-intake").unwrap(),
        QueueCounts {
            completed: 200,
            ..Default::default()
        }
    );
}
