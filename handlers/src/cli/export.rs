//! `azureml-dsr export verify <zip>`: checks an export archive the way its recipient (or an
//! auditor) would — every entry's bytes against the SHA-256 in its `manifest.json` and the
//! CRC-32 in the ZIP directory, every entry listed, nothing listed missing. Reads the file as a
//! stream (an archive can be larger than memory).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use sha2::{Digest, Sha256};

use crate::domain::archive::{ArchiveManifest, MANIFEST_NAME};
use crate::domain::zip::{self, Crc32, ZipEntry};

#[derive(Subcommand, Debug)]
pub enum ExportAction {
    /// Check every entry of an export archive against its manifest (SHA-256) and the ZIP's
    /// CRC-32; exits non-zero and names each entry that does not match.
    Verify { zip: PathBuf },
}

/// What a verification found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Verification {
    pub entries: usize,
    pub bytes: u64,
    /// One line per problem; empty means the archive is intact.
    pub problems: Vec<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn read_at(f: &mut std::fs::File, at: u64, len: usize) -> std::io::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(at))?;
    let mut b = vec![0u8; len];
    f.read_exact(&mut b)?;
    Ok(b)
}

/// (SHA-256 hex, CRC-32) of one stored entry's data, read in 256 KiB pieces.
fn hash_entry(f: &mut std::fs::File, e: &ZipEntry) -> anyhow::Result<(String, u32)> {
    let head = read_at(f, e.local_offset, 30)?;
    let start = zip::data_offset(e, &head)?;
    f.seek(SeekFrom::Start(start))?;
    let mut left = e.compressed_size;
    let mut sha = Sha256::new();
    let mut crc = Crc32::new();
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let n = (buf.len() as u64).min(left) as usize;
        f.read_exact(&mut buf[..n])?;
        sha.update(&buf[..n]);
        crc.update(&buf[..n]);
        left -= n as u64;
    }
    Ok((hex::encode(sha.finalize()), crc.finish()))
}

/// Verify the archive at `path`. An archive that cannot be read at all is an `Err`.
pub fn verify(path: &Path) -> anyhow::Result<Verification> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let tail_len = len.min(65_557 + 20 + 56 + 1024) as usize;
    let tail = read_at(&mut f, len - tail_len as u64, tail_len)?;
    let (cd_at, cd_size, n) = zip::locate_directory(&tail, len)?;
    let cd_len = usize::try_from(cd_size)?;
    let cd = read_at(&mut f, cd_at, cd_len)?;
    let entries = zip::parse_directory(&cd, n)?;
    drop(cd);

    let mut v = Verification {
        entries: entries.len(),
        ..Default::default()
    };
    let Some(m) = entries.iter().find(|e| e.name == MANIFEST_NAME) else {
        v.problems
            .push(format!("no {MANIFEST_NAME} in the archive"));
        return Ok(v);
    };
    if m.method != 0 || m.size > 256 * 1024 * 1024 {
        v.problems.push(format!(
            "{MANIFEST_NAME} is not a stored entry of a sane size"
        ));
        return Ok(v);
    }
    let head = read_at(&mut f, m.local_offset, 30)?;
    let body = read_at(&mut f, zip::data_offset(m, &head)?, m.size as usize)?;
    let manifest: ArchiveManifest = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            v.problems
                .push(format!("{MANIFEST_NAME} is unreadable: {e}"));
            return Ok(v);
        }
    };
    let mut listed: BTreeMap<&str, (&str, u64)> = BTreeMap::new();
    for e in &manifest.entries {
        if listed
            .insert(e.path.as_str(), (e.sha256.as_str(), e.size))
            .is_some()
        {
            v.problems
                .push(format!("{}: listed twice in the manifest", e.path));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for e in &entries {
        if !seen.insert(e.name.as_str()) {
            v.problems.push(format!("{}: in the archive twice", e.name));
        }
        let (sha, crc) = if e.method == 0 && e.compressed_size == e.size {
            match hash_entry(&mut f, e) {
                Ok(h) => h,
                Err(err) => {
                    v.problems.push(format!("{}: unreadable: {err}", e.name));
                    continue;
                }
            }
        } else {
            v.problems.push(format!(
                "{}: compressed (method {}); export archives store entries",
                e.name, e.method
            ));
            continue;
        };
        v.bytes += e.size;
        if crc != e.crc {
            v.problems.push(format!(
                "{}: CRC-32 does not match the ZIP directory",
                e.name
            ));
        }
        if e.name == MANIFEST_NAME {
            continue;
        }
        match listed.get(e.name.as_str()) {
            None => v.problems.push(format!(
                "{}: in the archive but not in the manifest",
                e.name
            )),
            Some((want, size)) => {
                if *size != e.size {
                    v.problems.push(format!(
                        "{}: {} bytes, the manifest says {size}",
                        e.name, e.size
                    ));
                }
                if *want != sha {
                    v.problems
                        .push(format!("{}: SHA-256 does not match the manifest", e.name));
                }
            }
        }
    }
    for path in listed.keys() {
        if !seen.contains(path) {
            v.problems
                .push(format!("{path}: in the manifest but not in the archive"));
        }
    }
    Ok(v)
}

pub fn run(action: ExportAction, json: bool) -> anyhow::Result<()> {
    match action {
        ExportAction::Verify { zip } => {
            let v = verify(&zip)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if v.ok() {
                println!(
                    "ok: {} entries, {} bytes, every one matches manifest.json",
                    v.entries, v.bytes
                );
            } else {
                for p in &v.problems {
                    println!("MISMATCH {p}");
                }
            }
            anyhow::ensure!(
                v.ok(),
                "{} problem(s) in {}",
                v.problems.len(),
                zip.display()
            );
            Ok(())
        }
    }
}
