//! Azurite (the Azure Storage emulator) for integration tests, with no manual step and no global
//! install: the pinned npm package is installed once into the repository's ignored `.build/`,
//! and each [`Azurite`] is a private in-memory blob server on a free port, killed on drop.
//!
//! Concurrent test binaries may race to install: each installs into its own temporary prefix
//! and publishes it with an atomic directory rename; the loser discards its copy.
//!
//! [`Azurite::start_https_oauth`] runs it the way the production blob adapter needs (bearer
//! tokens are only sent over https): `--oauth basic` with a certificate for `IP:127.0.0.1`
//! signed by a throw-away CA made with the `openssl` CLI ([`test_tls`]). The SDK's TLS stack
//! (reqwest + rustls with `rustls-platform-verifier`, which reads roots through
//! `rustls-native-certs`) trusts that CA when `SSL_CERT_FILE` names a bundle containing it:
//! [`trust_test_ca`] sets it once per process, before the first TLS client is built.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Pinned emulator version (npm `azurite`).
pub const AZURITE_VERSION: &str = "3.37.0";
/// The key every test account is given (Azurite's well-known development key).
pub const KEY: &str = azureml_dsr::adapters::azure::shared_key::DEV_KEY;

/// A running Azurite blob service.
pub struct Azurite {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:<port>`; account URLs are `<base_url>/<account>`.
    pub base_url: String,
    /// The CA bundle that verifies this server's certificate (https only).
    pub ca_bundle: Option<PathBuf>,
}

impl Azurite {
    /// Start Azurite hosting `accounts` (each with [`KEY`]).
    pub fn start(accounts: &[&str]) -> Azurite {
        Self::launch(accounts, None, None)
    }

    /// Start Azurite over https with `--oauth basic` (bearer tokens checked for issuer,
    /// audience and lifetime), hosting `accounts` (each with [`KEY`], so tests can still seed
    /// with Shared Key). `base_url` is `https://127.0.0.1:<port>`. Call [`trust_test_ca`] before
    /// building any TLS client in this process.
    pub fn start_https_oauth(accounts: &[&str]) -> Azurite {
        Self::launch(accounts, Some(test_tls()), None)
    }

    /// [`Azurite::start_https_oauth`] with Azurite's debug log written to `debug_log`: one
    /// line per request with its method, URL and headers, so a test can count and classify
    /// the storage transactions a scenario makes (`twin::counts`).
    pub fn start_https_oauth_debug(accounts: &[&str], debug_log: &Path) -> Azurite {
        Self::launch(accounts, Some(test_tls()), Some(debug_log))
    }

    fn launch(
        accounts: &[&str],
        tls: Option<&'static TestTls>,
        debug_log: Option<&Path>,
    ) -> Azurite {
        let main_js = ensure_installed();
        let port = free_port();
        let accounts_env = accounts
            .iter()
            .map(|a| format!("{a}:{KEY}"))
            .collect::<Vec<_>>()
            .join(";");
        let access_log = std::env::var_os("AZURITE_ACCESS_LOG")
            .map(|p| std::fs::File::create(p).expect("create AZURITE_ACCESS_LOG file"));
        let child = Command::new("node")
            .arg(&main_js)
            .args([
                "--inMemoryPersistence",
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
            ])
            .arg(port.to_string())
            .args(["--skipApiVersionCheck", "--loose"])
            .args(tls.iter().flat_map(|t| {
                [
                    "--oauth".into(),
                    "basic".into(),
                    "--cert".into(),
                    t.cert.clone().into_os_string(),
                    "--key".into(),
                    t.key.clone().into_os_string(),
                ]
            }))
            // AZURITE_ACCESS_LOG=<file>: keep Azurite's access log (one line per request), to
            // count the round trips a scenario makes; silent otherwise.
            .args(access_log.is_none().then_some("--silent"))
            .args(
                debug_log
                    .iter()
                    .flat_map(|p| ["--debug".as_ref(), p.as_os_str()]),
            )
            .env("AZURITE_ACCOUNTS", accounts_env)
            // Copy Blob from another account makes Azurite fetch the source URL itself, over
            // https from Node: it must trust the same test CA.
            .envs(tls.map(|t| ("NODE_EXTRA_CA_CERTS", t.ca.clone())))
            .stdin(Stdio::null())
            .stdout(match &access_log {
                Some(f) => Stdio::from(f.try_clone().expect("access log handle")),
                None => Stdio::null(),
            })
            .stderr(match &access_log {
                Some(f) => Stdio::from(f.try_clone().expect("access log handle")),
                None => Stdio::null(),
            })
            .spawn()
            .expect("spawn node (Node.js is required for the Azurite tests)");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut az = Azurite {
            child,
            port,
            base_url: format!("{scheme}://127.0.0.1:{port}"),
            ca_bundle: tls.map(|t| t.bundle.clone()),
        };
        az.wait_ready();
        az
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("azurite exited early: {status}");
            }
            // Over https a listening socket is enough (Azurite listens once it is ready).
            if self.ca_bundle.is_some() && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            // Any HTTP answer means the server is up (an unauthenticated request gets 4xx).
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!(
                    "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                    self.port
                );
                let mut buf = [0u8; 12];
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read(&mut buf).map(|n| n > 0).unwrap_or(false)
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "azurite did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn build_dir() -> PathBuf {
    // handlers/ -> repository root -> .build (ignored by .gitignore).
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(".build")
}

fn installed_version(prefix: &Path) -> Option<String> {
    let pkg = std::fs::read_to_string(prefix.join("node_modules/azurite/package.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&pkg).ok()?;
    v["version"].as_str().map(str::to_string)
}

/// Install the pinned Azurite if needed; returns the path of its blob server entry point.
pub fn ensure_installed() -> PathBuf {
    // Tests in one binary run on parallel threads of one process: install once per process
    // (the temp-folder-and-rename below handles several processes).
    static INSTALLED: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut guard = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = guard.as_ref() {
        return p.clone();
    }
    let p = install();
    *guard = Some(p.clone());
    p
}

fn install() -> PathBuf {
    let build = build_dir();
    let prefix = build.join("azurite");
    let main_js = prefix.join("node_modules/azurite/dist/src/blob/main.js");
    if installed_version(&prefix).as_deref() == Some(AZURITE_VERSION) && main_js.exists() {
        return main_js;
    }
    std::fs::create_dir_all(&build).expect("create .build");
    let tmp = build.join(format!("azurite.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let status = Command::new("npm")
        .args(["install", "--prefix"])
        .arg(&tmp)
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .arg(format!("azurite@{AZURITE_VERSION}"))
        .status()
        .expect("run npm (Node.js/npm are required for the Azurite tests)");
    assert!(
        status.success(),
        "npm install azurite@{AZURITE_VERSION} failed"
    );
    if installed_version(&prefix).is_some() {
        // Wrong version installed: move it aside first (another process may be doing the same).
        let old = build.join(format!("azurite.old-{}", std::process::id()));
        if std::fs::rename(&prefix, &old).is_ok() {
            let _ = std::fs::remove_dir_all(&old);
        }
    }
    if std::fs::rename(&tmp, &prefix).is_err() {
        // Lost the race: someone else published an install first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert_eq!(
        installed_version(&prefix).as_deref(),
        Some(AZURITE_VERSION),
        "azurite install"
    );
    main_js
}

/// Turn on blob soft delete (DeleteRetentionPolicy) for `account` on a running Azurite.
/// Azurite stores the policy (and the adapter reads it) but deletes data at once.
pub async fn set_soft_delete(base_url: &str, account: &str, days: i32) {
    use azure_core::http::{ClientOptions, Url};
    use azure_storage_blob::models::{BlobServiceProperties, RetentionPolicy};
    use azure_storage_blob::{BlobServiceClient, BlobServiceClientOptions};
    use azureml_dsr::adapters::azure::shared_key::{SharedKeyCredential, SharedKeyPolicy};
    let cred = std::sync::Arc::new(SharedKeyCredential::new(account, KEY).unwrap());
    let options = BlobServiceClientOptions {
        client_options: ClientOptions {
            per_try_policies: vec![std::sync::Arc::new(SharedKeyPolicy::new(cred))],
            ..Default::default()
        },
        ..Default::default()
    };
    let client = BlobServiceClient::new(
        Url::parse(&format!("{base_url}/{account}")).unwrap(),
        None,
        Some(options),
    )
    .unwrap();
    let props = BlobServiceProperties {
        delete_retention_policy: Some(RetentionPolicy {
            enabled: Some(true),
            days: Some(days),
            allow_permanent_delete: None,
        }),
        ..Default::default()
    };
    client
        .set_properties(props.try_into().unwrap(), None)
        .await
        .unwrap();
}

/// A throw-away CA and a server certificate for `IP:127.0.0.1` (PEM files in a temp folder that
/// lives as long as the process).
pub struct TestTls {
    pub dir: PathBuf,
    /// CA certificate (PEM).
    pub ca: PathBuf,
    /// Server certificate (PEM, SAN `IP:127.0.0.1`, signed by `ca`).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// `ca` followed by the system roots, for `SSL_CERT_FILE`.
    pub bundle: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl (the openssl CLI is required for the https Azurite tests)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The process's test certificate, generated on first use with the `openssl` CLI.
pub fn test_tls() -> &'static TestTls {
    static TLS: std::sync::OnceLock<TestTls> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("dsr-test-tls-")
            .tempdir()
            .expect("temp dir for the test certificate")
            .keep();
        // A CA (rustls-webpki refuses a CA certificate as the server's own), then a leaf
        // certificate for the loopback address signed by it.
        openssl(
            &dir,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
                "ca.pem", "-days", "3", "-subj", "/CN=azureml-dsr test CA", "-addext",
                "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        openssl(
            &dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "server.csr",
                "-subj", "/CN=127.0.0.1",
            ],
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write server.ext");
        openssl(
            &dir,
            &[
                "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "cert.pem", "-days", "3", "-extfile", "server.ext",
            ],
        );
        let mut bundle = std::fs::read(dir.join("ca.pem")).expect("read ca.pem");
        for system in ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"] {
            if let Ok(b) = std::fs::read(system) {
                bundle.push(b'\n');
                bundle.extend(b);
                break;
            }
        }
        std::fs::write(dir.join("bundle.pem"), bundle).expect("write bundle.pem");
        TestTls {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            bundle: dir.join("bundle.pem"),
            dir,
        }
    })
}

/// Make this process's TLS clients trust [`test_tls`]'s CA: `SSL_CERT_FILE` = its bundle. Set
/// once, before any TLS client is built (rustls-native-certs reads it when roots are loaded);
/// a child process needs the same variable.
pub fn trust_test_ca() -> &'static Path {
    static SET: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        let bundle = test_tls().bundle.clone();
        std::env::set_var("SSL_CERT_FILE", &bundle);
        bundle
    })
}
