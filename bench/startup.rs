//! Start-up scenario: exec of `azureml-dsr handler` to the first answered `GET /`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{median, Opts, Row};
use anyhow::{ensure, Context};

pub(crate) fn product_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/bench -> target/<profile>/azureml-dsr
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("exe location")?
        .to_path_buf();
    let bin = profile_dir.join("azureml-dsr");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    // Always (re)build: cargo is a no-op when it is fresh, and a stale binary would lie.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--bin",
        "azureml-dsr",
        "--manifest-path",
    ])
    .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    // Into the target folder this bench runs from, wherever the caller's cargo put it.
    if let Some(target) = profile_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("cargo build --bin azureml-dsr")?;
    ensure!(status.success(), "building azureml-dsr failed");
    ensure!(bin.exists(), "{} missing", bin.display());
    Ok(bin)
}

pub(crate) async fn bench_startup(o: &Opts) -> anyhow::Result<Vec<Row>> {
    let bin = tokio::task::spawn_blocking(product_binary).await??;
    let tmp = tempfile::tempdir()?;
    let mut times = Vec::new();
    for _ in 0..o.startup_n {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let t = Instant::now();
        let mut child = tokio::process::Command::new(&bin)
            .arg("handler")
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("DSR_DATA_DIR", tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                if get_root(s).await.unwrap_or(false) {
                    break;
                }
            }
            ensure!(Instant::now() < deadline, "handler did not answer GET /");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        let _ = child.kill().await;
    }
    let m = median(times.clone());
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(vec![Row {
        scenario: "start-up: exec to first GET / answered".into(),
        unit: "ms (lower is better)",
        ours: m,
        ceiling: None,
        azcopy: None,
        note: format!(
            "{} ({}), median of {}, max {:.1} ms; goal < 50 ms",
            bin.file_name().unwrap_or_default().to_string_lossy(),
            bin.parent()
                .and_then(Path::file_name)
                .unwrap_or_default()
                .to_string_lossy(),
            times.len(),
            times.last().copied().unwrap_or(f64::NAN)
        ),
    }])
}

pub(crate) async fn get_root(mut s: tokio::net::TcpStream) -> anyhow::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await?;
    Ok(n >= 12 && &buf[..12] == b"HTTP/1.1 200")
}
