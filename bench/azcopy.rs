//! The pinned azcopy baseline (npm `@azure-tools/azcopy-linux` ships the official binary).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// Pinned azcopy (npm `@azure-tools/azcopy-linux` ships the official Linux binary).
pub(crate) const AZCOPY_VERSION: &str = "10.32.2";

pub(crate) struct Azcopy {
    bin: PathBuf,
    /// Extra library folder (a libsecret unpacked from Debian's package), when the machine
    /// lacks it.
    lib_dir: Option<PathBuf>,
}

impl Azcopy {
    pub(crate) fn find() -> Option<Azcopy> {
        if let Ok(p) = std::env::var("AZCOPY_BIN") {
            return Some(Azcopy {
                bin: p.into(),
                lib_dir: None,
            });
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../.build/azcopy/node_modules/@azure-tools/azcopy-linux/dist/bin");
        let bin = root.join("azcopy_linux_amd64");
        if !bin.exists() && std::env::var_os("BENCH_NO_AZCOPY_INSTALL").is_none() {
            // Like the Azurite harness: the pinned npm package into the ignored .build/.
            eprintln!("bench: installing azcopy {AZCOPY_VERSION} (npm @azure-tools/azcopy-linux)");
            let prefix = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.build/azcopy");
            let ok = Command::new("npm")
                .args(["install", "--prefix"])
                .arg(&prefix)
                .args(["--no-audit", "--no-fund", "--loglevel=error"])
                .arg(format!("@azure-tools/azcopy-linux@{AZCOPY_VERSION}"))
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                eprintln!("bench: npm install of azcopy failed");
            }
        }
        if !bin.exists() {
            return None;
        }
        // npm does not keep the executable bit of this package's binary.
        use std::os::unix::fs::PermissionsExt;
        let mut perm = std::fs::metadata(&bin).ok()?.permissions();
        if perm.mode() & 0o111 == 0 {
            perm.set_mode(0o755);
            std::fs::set_permissions(&bin, perm).ok()?;
        }
        let lib_dir = Self::libsecret(&bin);
        Some(Azcopy { bin, lib_dir })
    }

    /// azcopy links libsecret-1.so.0, which slim Debian images lack. Without root or an
    /// install step, fetch Debian's `libsecret-1-0` package (`apt-get download`, from the
    /// Debian mirror the machine already uses) and unpack it into .build/azcopy/sysroot; its
    /// own dependencies (glib, libgcrypt) are part of a base system.
    fn libsecret(bin: &Path) -> Option<PathBuf> {
        let loads = |lib: Option<&Path>| {
            let mut c = Command::new(bin);
            c.arg("--version");
            if let Some(l) = lib {
                c.env("LD_LIBRARY_PATH", l);
            }
            c.output().map(|o| o.status.success()).unwrap_or(false)
        };
        if loads(None) {
            return None;
        }
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.build/azcopy");
        let lib = base.join("sysroot/usr/lib/x86_64-linux-gnu");
        if !lib.join("libsecret-1.so.0").exists() {
            eprintln!("bench: azcopy cannot load libsecret-1.so.0; unpacking Debian's libsecret-1-0 into .build/azcopy/sysroot");
            let debs = base.join("debs");
            let _ = std::fs::create_dir_all(&debs);
            let fetched = Command::new("apt-get")
                .args(["download", "libsecret-1-0"])
                .current_dir(&debs)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            let deb = std::fs::read_dir(&debs).ok()?.flatten().find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("libsecret-1-0_")
            });
            let unpacked = match (fetched, deb) {
                (true, Some(deb)) => Command::new("dpkg")
                    .args(["-x"])
                    .arg(deb.path())
                    .arg(base.join("sysroot"))
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false),
                _ => false,
            };
            if !unpacked {
                eprintln!("bench: could not fetch libsecret-1-0 (apt-get download / dpkg -x); install it with apt-get install libsecret-1-0");
                return None;
            }
        }
        if loads(Some(&lib)) {
            Some(lib)
        } else {
            eprintln!("bench: azcopy still does not start with {}", lib.display());
            None
        }
    }

    pub(crate) async fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        let work = std::env::temp_dir().join(format!("bench-azcopy-{}", std::process::id()));
        std::fs::create_dir_all(&work)?;
        let mut cmd = tokio::process::Command::new(&self.bin);
        if let Some(lib) = &self.lib_dir {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        let out = cmd
            .args(args)
            .args(["--output-level=essential", "--log-level=ERROR"])
            .env("AZCOPY_LOG_LOCATION", &work)
            .env("AZCOPY_JOB_PLAN_LOCATION", &work)
            .env("AZCOPY_DISABLE_SYSLOG", "true")
            .output()
            .await
            .context("run azcopy")?;
        let mut log_errors = String::new();
        if !out.status.success() {
            for e in std::fs::read_dir(&work).into_iter().flatten().flatten() {
                if let Ok(text) = std::fs::read_to_string(e.path()) {
                    for l in text
                        .lines()
                        .filter(|l| {
                            l.contains("ERR")
                                || l.contains("RESPONSE STATUS")
                                || l.contains("x-ms-error-code")
                        })
                        .take(8)
                    {
                        log_errors.push_str(l);
                        log_errors.push('\n');
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&work);
        if !out.status.success() {
            bail!(
                "azcopy {}: {}{}{log_errors}",
                args[0],
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}
