//! Unit tests of the parent module (kept apart so the module reads at a readable size).

use super::*;

fn build(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = ZipWriter::new(time::macros::datetime!(2026-11-28 12:00 UTC));
    let mut out = Vec::new();
    let mut dir = Vec::new();
    for (name, data) in entries {
        out.extend(w.start(name, data.len() as u64).unwrap());
        w.data(data).unwrap();
        out.extend_from_slice(data);
        let f = w.finish_entry().unwrap();
        out.extend(f.descriptor);
        dir.extend(f.central);
    }
    out.extend(dir);
    out.extend(w.end().unwrap());
    out
}

fn read(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let tail = &zip[zip.len().saturating_sub(70_000)..];
    let (off, size, n) = locate_directory(tail, zip.len() as u64).unwrap();
    let entries = parse_directory(&zip[off as usize..(off + size) as usize], n).unwrap();
    entries
        .into_iter()
        .map(|e| {
            let at = data_offset(&e, &zip[e.local_offset as usize..]).unwrap() as usize;
            let data = zip[at..at + e.size as usize].to_vec();
            let mut c = Crc32::new();
            c.update(&data);
            assert_eq!(c.finish(), e.crc);
            (e.name, data)
        })
        .collect()
}

#[test]
fn crc32_known_value() {
    let mut c = Crc32::new();
    c.update(b"123456789");
    assert_eq!(c.finish(), 0xCBF4_3926);
}

#[test]
fn round_trip_and_names() {
    let zip = build(&[("a/b.txt", b"hello"), ("empty", b""), ("ü.json", b"{}")]);
    let got = read(&zip);
    assert_eq!(got[0], ("a/b.txt".into(), b"hello".to_vec()));
    assert_eq!(got[1].1, b"");
    assert_eq!(got[2].0, "ü.json");
    for bad in ["", "/abs", "a/../b", "a\\b", "a//b", "./a", "a\u{0}b"] {
        assert!(check_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn size_must_match_announcement() {
    let mut w = ZipWriter::new(time::OffsetDateTime::UNIX_EPOCH);
    w.start("x", 3).unwrap();
    w.data(b"ab").unwrap();
    assert!(matches!(
        w.finish_entry(),
        Err(ZipError::SizeMismatch { .. })
    ));
    let mut w = ZipWriter::new(time::OffsetDateTime::UNIX_EPOCH);
    w.start("x", 1).unwrap();
    assert!(w.data(b"ab").is_err());
    assert!(ZipWriter::new(time::OffsetDateTime::UNIX_EPOCH)
        .data(b"a")
        .is_err());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for junk in [
        &b""[..],
        b"PK\x05\x06",
        b"PK\x05\x06\0\0\0\0\x01\0\x01\0\xff\xff\xff\xff\0\0\0\0\0\0",
    ] {
        let r = locate_directory(junk, junk.len() as u64).and_then(|(o, s, n)| {
            parse_directory(junk.get(o as usize..(o + s) as usize).unwrap_or(&[]), n)
        });
        assert!(r.is_err(), "{junk:?}");
    }
}

/// More than 65,535 entries: the count lives only in the ZIP64 end record. Python's
/// zipfile (not our reader) must list every entry with the right bytes.
#[test]
fn zip64_entry_count_read_by_python() {
    let n = 70_000usize;
    let names: Vec<String> = (0..n).map(|i| format!("d/{i}.txt")).collect();
    let datas: Vec<Vec<u8>> = (0..n).map(|i| i.to_string().into_bytes()).collect();
    let entries: Vec<(&str, &[u8])> = names
        .iter()
        .map(String::as_str)
        .zip(datas.iter().map(Vec::as_slice))
        .collect();
    let zip = build(&entries);
    assert_eq!(read(&zip).len(), n);
    let script = "import sys, zipfile\n\
z = zipfile.ZipFile(sys.argv[1])\n\
assert z.testzip() is None\n\
names = z.namelist()\n\
assert len(names) == int(sys.argv[2]), len(names)\n\
for i in range(0, len(names), 997): assert z.read('d/%d.txt' % i) == str(i).encode()\n\
print('ok', len(names))\n";
    assert_eq!(python_reads(&zip, script, &[&n.to_string()]), "ok 70000");
}

fn python_reads(zip: &[u8], script: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.zip");
    std::fs::write(&path, zip).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .args(args)
        .output()
        .expect("python3 (a standard ZIP reader) is needed for this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Sizes and offsets past the 32-bit limit: the limit lowered to 100 bytes, so every field
/// past it goes to ZIP64 records (local extra, 8-byte descriptor, central extra, ZIP64 end
/// record) with small data. Python's zipfile and our reader must both read it back.
#[test]
fn zip64_sizes_and_offsets_read_by_python() {
    let big = vec![7u8; 300];
    let mut w = ZipWriter::new(time::OffsetDateTime::UNIX_EPOCH).with_limit(100);
    let mut zip = Vec::new();
    let mut dir = Vec::new();
    for (name, data) in [("small", &b"abc"[..]), ("big.bin", &big), ("after", b"xyz")] {
        let h = w.start(name, data.len() as u64).unwrap();
        zip.extend(h);
        w.data(data).unwrap();
        zip.extend_from_slice(data);
        let f = w.finish_entry().unwrap();
        zip.extend(f.descriptor);
        dir.extend(f.central);
    }
    zip.extend(dir);
    zip.extend(w.end().unwrap());
    let got = read(&zip);
    assert_eq!(got[1].1, big);
    assert_eq!(got[2].1, b"xyz");
    let script = "import sys, zipfile\n\
z = zipfile.ZipFile(sys.argv[1])\n\
assert z.testzip() is None\n\
assert z.read('small') == b'abc'\n\
assert z.read('big.bin') == bytes([7]) * 300\n\
assert z.read('after') == b'xyz'\n\
print('ok')\n";
    assert_eq!(python_reads(&zip, script, &[]), "ok");
}
