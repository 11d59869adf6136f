//! The printing commands and a reader that goes away: `azureml-dsr seed … | head -1` must end
//! as Unix tools do (SIGPIPE, nothing on stderr), never with a Rust panic ("failed printing to
//! stdout: Broken pipe"), which the brief's "no panic on any input" rules out.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

#[test]
fn a_printing_command_whose_reader_closed_ends_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_azureml-dsr"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["seed", "--users", "2", "--runs-per-user", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the command prints anything (it prints after seeding).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "the command panicked on a closed pipe: {stderr}"
    );
    assert_eq!(
        out.status.signal(),
        Some(13),
        "ended by SIGPIPE, as `head` expects of a writer; status {:?}, stderr {stderr}",
        out.status
    );
    // It did its work before printing: the seed is there.
    assert!(dir.path().join("seed-truth.json").exists());
}
