//! The runtime as a child process: enqueue and lock, and `kill -9` mid delivery loses nothing.

use super::*;

const CHILD_ENV: &str = "DSR_LOCAL_RUNTIME_CHILD_QUEUE";

/// Not a test on its own: the child process of `kill_9_mid_delivery_loses_nothing`. It enqueues
/// 200 messages, locks 50, announces it, and waits to be killed.
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
    let opts = azureml_dsr::adapters::local::sqlite_queue::ReceiveOptions {
        lock_duration: Duration::from_millis(300),
        max_delivery_count: 10,
    };
    for _ in 0..50 {
        q.receive_with("dsr-intake", opts).unwrap().unwrap();
    }
    // libtest prints "test <name> ... " on the same line, so the parent matches the line end.
    println!("LOCKED");
    std::thread::sleep(Duration::from_secs(60));
}

#[tokio::test]
async fn kill_9_mid_delivery_loses_nothing() {
    let e = env(16, &[("dsr-intake", sb("dsr-intake"))]);
    let path = e.queue.path().to_path_buf();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            // Its name in the one test binary (`tests/it/main.rs`: module `local_runtime`).
            "local_runtime::child_enqueue_and_lock",
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
    assert!(tokio::time::timeout(Duration::from_secs(60), ready)
        .await
        .unwrap()
        .unwrap());
    child.kill().unwrap(); // SIGKILL on Unix: no destructor, no settlement.
    child.wait().unwrap();

    tokio::time::sleep(Duration::from_millis(350)).await; // let the child's locks expire
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
