//! A streaming ZIP writer and a ZIP entry reader for export archives. Pure: the writer turns
//! entry names and data into the bytes to append (local headers, data descriptors, the central
//! directory), the caller moves the bytes; nothing here holds an entry's data.
//!
//! Why hand-written: no ZIP or CRC-32 crate is in Cargo.lock, and the archive needs only the
//! simplest part of the format (APPNOTE.TXT 6.3.x): stored entries (method 0; most exported files
//! are already compressed or small JSON), data descriptors (flag bit 3, so the CRC-32 is written
//! after the data and nothing is read twice), UTF-8 names (bit 11), and ZIP64 records (4.3.14-
//! 4.5.3) as soon as an entry, an offset or the directory passes 4 GiB or the archive holds 65,535
//! entries. The writer keeps nothing per entry: each entry's central-directory record is handed
//! to the caller when the entry ends, and the caller appends the records, in order, right after
//! the last entry (the archive builder stages them as blocks of their own), so memory does not
//! grow with the number of entries either.

use std::fmt;

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) as ZIP uses it.
#[derive(Debug, Clone, Copy)]
pub struct Crc32(u32);

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    pub fn new() -> Self {
        Crc32(0xFFFF_FFFF)
    }
    pub fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        for &b in data {
            c = CRC_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }
    pub fn finish(&self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

const LOCAL_SIG: u32 = 0x0403_4b50;
const DESCRIPTOR_SIG: u32 = 0x0807_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
/// Bit 3: sizes and CRC follow the data; bit 11: the name is UTF-8.
const FLAGS: u16 = 0x0808;
const U32_MAX: u64 = 0xFFFF_FFFF;
/// An entry count this high is recorded only in the ZIP64 end record (APPNOTE 4.4.21).
const ZIP64_ENTRIES: usize = 0xFFFF;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZipError {
    /// The name cannot be an archive path (empty, absolute, `..`, backslash, control character).
    BadName(String),
    /// A call out of order (an entry started while one is open, data with none open).
    Sequence(&'static str),
    /// The data written differs from the size announced when the entry was started.
    SizeMismatch { name: String, want: u64, got: u64 },
    /// Not an archive this module can read.
    Corrupt(String),
}

impl fmt::Display for ZipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZipError::BadName(n) => write!(f, "not a valid archive path: {n:?}"),
            ZipError::Sequence(s) => write!(f, "zip writer used out of order: {s}"),
            ZipError::SizeMismatch { name, want, got } => {
                write!(f, "{name}: announced {want} bytes, got {got}")
            }
            ZipError::Corrupt(s) => write!(f, "not a readable archive: {s}"),
        }
    }
}

impl std::error::Error for ZipError {}

/// An archive path: relative, `/`-separated, no empty, `.` or `..` segments, no backslashes or
/// control characters (so no reader can be made to write outside its target folder).
pub fn check_name(name: &str) -> Result<(), ZipError> {
    let bad = name.is_empty()
        || name.len() > 0xFFFF
        || name.starts_with('/')
        || name.contains('\\')
        || name.chars().any(char::is_control)
        || name
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if bad {
        Err(ZipError::BadName(name.to_string()))
    } else {
        Ok(())
    }
}

/// MS-DOS date and time (local-time fields; we write UTC), as the ZIP headers carry them.
pub fn dos_time(t: time::OffsetDateTime) -> (u16, u16) {
    let t = t.to_offset(time::UtcOffset::UTC);
    let year = (t.year().clamp(1980, 2107) - 1980) as u16;
    let date = (year << 9) | ((u8::from(t.month()) as u16) << 5) | t.day() as u16;
    let time = ((t.hour() as u16) << 11) | ((t.minute() as u16) << 5) | (t.second() as u16 / 2);
    (time, date)
}

struct Open {
    name: String,
    want: u64,
    offset: u64,
    zip64: bool,
    crc: Crc32,
    got: u64,
}

/// An ended entry: the bytes to append after its data, and its central-directory record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The data descriptor (CRC-32 and sizes), appended right after the entry's data.
    pub descriptor: Vec<u8>,
    pub crc: u32,
    /// The entry's central-directory record: the caller keeps these, in order, and appends
    /// them after the last entry, before [`ZipWriter::end`]'s records.
    pub central: Vec<u8>,
}

/// Builds a ZIP archive as a sequence of byte slices to append, in order.
pub struct ZipWriter {
    offset: u64,
    /// Entries ended, the bytes of their central records, and whether any needed ZIP64.
    entries: u64,
    cd_size: u64,
    any_zip64: bool,
    open: Option<Open>,
    time: u16,
    date: u16,
    /// Sizes and offsets from this value up go to ZIP64 fields: 2^32 - 1 (the format's limit);
    /// tests lower it to exercise the ZIP64 records with small data.
    limit: u64,
}

fn put16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

impl ZipWriter {
    /// Every entry carries `modified` (the report's time: the same request gives the same bytes).
    pub fn new(modified: time::OffsetDateTime) -> Self {
        let (time, date) = dos_time(modified);
        Self {
            offset: 0,
            entries: 0,
            cd_size: 0,
            any_zip64: false,
            open: None,
            time,
            date,
            limit: U32_MAX,
        }
    }

    #[cfg(test)]
    fn with_limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    fn slot(&self, v: u64) -> u32 {
        if v >= self.limit {
            0xFFFF_FFFF
        } else {
            v as u32
        }
    }

    /// Bytes produced so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Entries ended so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Start an entry of `size` bytes; returns its local header.
    pub fn start(&mut self, name: &str, size: u64) -> Result<Vec<u8>, ZipError> {
        check_name(name)?;
        if self.open.is_some() {
            return Err(ZipError::Sequence("start while an entry is open"));
        }
        // ZIP64 when the data or where it starts cannot be written in 32 bits.
        let zip64 = size >= self.limit || self.offset >= self.limit;
        let mut b = Vec::with_capacity(30 + name.len() + 20);
        put32(&mut b, LOCAL_SIG);
        put16(&mut b, if zip64 { 45 } else { 20 });
        put16(&mut b, FLAGS);
        put16(&mut b, 0); // stored
        put16(&mut b, self.time);
        put16(&mut b, self.date);
        put32(&mut b, 0); // CRC-32: in the data descriptor
        if zip64 {
            put32(&mut b, 0xFFFF_FFFF);
            put32(&mut b, 0xFFFF_FFFF);
        } else {
            put32(&mut b, 0);
            put32(&mut b, 0);
        }
        put16(&mut b, name.len() as u16);
        put16(&mut b, if zip64 { 20 } else { 0 });
        b.extend_from_slice(name.as_bytes());
        if zip64 {
            // Marks the entry as ZIP64 so readers expect 8-byte sizes in its descriptor.
            put16(&mut b, 0x0001);
            put16(&mut b, 16);
            put64(&mut b, 0);
            put64(&mut b, 0);
        }
        self.open = Some(Open {
            name: name.to_string(),
            want: size,
            offset: self.offset,
            zip64,
            crc: Crc32::new(),
            got: 0,
        });
        self.offset += b.len() as u64;
        Ok(b)
    }

    /// Account for `chunk` of the open entry's data (the caller appends the chunk itself).
    pub fn data(&mut self, chunk: &[u8]) -> Result<(), ZipError> {
        let open = self
            .open
            .as_mut()
            .ok_or(ZipError::Sequence("data with no entry open"))?;
        open.crc.update(chunk);
        open.got += chunk.len() as u64;
        self.offset += chunk.len() as u64;
        if open.got > open.want {
            return Err(ZipError::SizeMismatch {
                name: open.name.clone(),
                want: open.want,
                got: open.got,
            });
        }
        Ok(())
    }

    /// End the open entry: its data descriptor and its central-directory record.
    pub fn finish_entry(&mut self) -> Result<Finished, ZipError> {
        let open = self
            .open
            .take()
            .ok_or(ZipError::Sequence("finish with no entry open"))?;
        if open.got != open.want {
            return Err(ZipError::SizeMismatch {
                name: open.name,
                want: open.want,
                got: open.got,
            });
        }
        let crc = open.crc.finish();
        let mut b = Vec::with_capacity(24);
        put32(&mut b, DESCRIPTOR_SIG);
        put32(&mut b, crc);
        if open.zip64 {
            put64(&mut b, open.got);
            put64(&mut b, open.got);
        } else {
            put32(&mut b, open.got as u32);
            put32(&mut b, open.got as u32);
        }
        self.offset += b.len() as u64;
        let central = self.central_record(&open.name, crc, open.got, open.offset, open.zip64);
        self.entries += 1;
        self.cd_size += central.len() as u64;
        self.any_zip64 |= open.zip64;
        Ok(Finished {
            descriptor: b,
            crc,
            central,
        })
    }

    fn central_record(&self, name: &str, crc: u32, size: u64, offset: u64, zip64: bool) -> Vec<u8> {
        let big_size = size >= self.limit;
        let big_offset = offset >= self.limit;
        let mut extra = Vec::new();
        if big_size {
            put64(&mut extra, size);
            put64(&mut extra, size);
        }
        if big_offset {
            put64(&mut extra, offset);
        }
        let mut b = Vec::with_capacity(46 + name.len() + 4 + extra.len());
        put32(&mut b, CENTRAL_SIG);
        put16(&mut b, (3 << 8) | 45); // made by: Unix, spec 4.5
        put16(&mut b, if zip64 || big_offset { 45 } else { 20 });
        put16(&mut b, FLAGS);
        put16(&mut b, 0);
        put16(&mut b, self.time);
        put16(&mut b, self.date);
        put32(&mut b, crc);
        put32(&mut b, if big_size { 0xFFFF_FFFF } else { size as u32 });
        put32(&mut b, if big_size { 0xFFFF_FFFF } else { size as u32 });
        put16(&mut b, name.len() as u16);
        put16(
            &mut b,
            if extra.is_empty() {
                0
            } else {
                extra.len() as u16 + 4
            },
        );
        put16(&mut b, 0); // comment
        put16(&mut b, 0); // disk
        put16(&mut b, 0); // internal attributes
        put32(&mut b, 0o100644 << 16); // a regular file, rw-r--r--
        put32(&mut b, self.slot(offset));
        b.extend_from_slice(name.as_bytes());
        if !extra.is_empty() {
            put16(&mut b, 0x0001);
            put16(&mut b, extra.len() as u16);
            b.extend_from_slice(&extra);
        }
        b
    }

    /// The end records (ZIP64 end record and locator when needed, then the classic one), for
    /// an archive whose central records (from [`ZipWriter::finish_entry`], in order) follow the
    /// last entry directly: appended after them, this ends the archive.
    pub fn end(self) -> Result<Vec<u8>, ZipError> {
        if self.open.is_some() {
            return Err(ZipError::Sequence("finish while an entry is open"));
        }
        let (cd_start, cd_size, n) = (self.offset, self.cd_size, self.entries);
        let zip64 = n >= ZIP64_ENTRIES as u64
            || cd_start >= self.limit
            || cd_size >= self.limit
            || self.any_zip64;
        let mut buf = Vec::with_capacity(22 + 76);
        if zip64 {
            let eocd64_at = cd_start + cd_size;
            put32(&mut buf, ZIP64_EOCD_SIG);
            put64(&mut buf, 44); // size of the rest of this record
            put16(&mut buf, (3 << 8) | 45);
            put16(&mut buf, 45);
            put32(&mut buf, 0);
            put32(&mut buf, 0);
            put64(&mut buf, n);
            put64(&mut buf, n);
            put64(&mut buf, cd_size);
            put64(&mut buf, cd_start);
            put32(&mut buf, ZIP64_LOCATOR_SIG);
            put32(&mut buf, 0);
            put64(&mut buf, eocd64_at);
            put32(&mut buf, 1);
        }
        put32(&mut buf, EOCD_SIG);
        put16(&mut buf, 0);
        put16(&mut buf, 0);
        let n16 = if zip64 { 0xFFFF } else { n as u16 };
        put16(&mut buf, n16);
        put16(&mut buf, n16);
        put32(&mut buf, self.slot(cd_size));
        put32(&mut buf, if zip64 { 0xFFFF_FFFF } else { cd_start as u32 });
        put16(&mut buf, 0);
        Ok(buf)
    }
}

/// One entry as the central directory describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    pub name: String,
    pub crc: u32,
    pub compressed_size: u64,
    pub size: u64,
    pub method: u16,
    pub local_offset: u64,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, ZipError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| ZipError::Corrupt("truncated record".into()))
}
fn u32_at(b: &[u8], at: usize) -> Result<u32, ZipError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| ZipError::Corrupt("truncated record".into()))
}
fn u64_at(b: &[u8], at: usize) -> Result<u64, ZipError> {
    let lo = u32_at(b, at)? as u64;
    let hi = u32_at(b, at + 4)? as u64;
    Ok(lo | (hi << 32))
}

/// Where the central directory is, from the archive's tail (its last up to 65,557 + 20 + 56
/// bytes) and the archive's length. Returns (offset, size, entries).
pub fn locate_directory(tail: &[u8], len: u64) -> Result<(u64, u64, u64), ZipError> {
    let tail_start = len - tail.len() as u64;
    let at = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(tail, i).ok() == Some(EOCD_SIG))
        .ok_or_else(|| ZipError::Corrupt("no end of central directory record".into()))?;
    let mut entries = u16_at(tail, at + 10)? as u64;
    let mut size = u32_at(tail, at + 12)? as u64;
    let mut offset = u32_at(tail, at + 16)? as u64;
    if at >= 20 && u32_at(tail, at - 20)? == ZIP64_LOCATOR_SIG {
        let eocd64 = u64_at(tail, at - 20 + 8)?;
        let rel = eocd64
            .checked_sub(tail_start)
            .ok_or_else(|| ZipError::Corrupt("ZIP64 end record outside the tail".into()))?
            as usize;
        if u32_at(tail, rel)? != ZIP64_EOCD_SIG {
            return Err(ZipError::Corrupt("bad ZIP64 end record".into()));
        }
        entries = u64_at(tail, rel + 32)?;
        size = u64_at(tail, rel + 40)?;
        offset = u64_at(tail, rel + 48)?;
    }
    if offset.checked_add(size).is_none_or(|end| end > len) {
        return Err(ZipError::Corrupt(
            "central directory beyond the end of the file".into(),
        ));
    }
    Ok((offset, size, entries))
}

/// Parse a central directory (`cd` is its bytes) into entries.
pub fn parse_directory(cd: &[u8], entries: u64) -> Result<Vec<ZipEntry>, ZipError> {
    let mut out = Vec::with_capacity(entries.min(1 << 20) as usize);
    let mut at = 0usize;
    while at < cd.len() {
        if u32_at(cd, at)? != CENTRAL_SIG {
            return Err(ZipError::Corrupt(format!(
                "bad central directory record at {at}"
            )));
        }
        let method = u16_at(cd, at + 10)?;
        let crc = u32_at(cd, at + 16)?;
        let mut compressed_size = u32_at(cd, at + 20)? as u64;
        let mut size = u32_at(cd, at + 24)? as u64;
        let name_len = u16_at(cd, at + 28)? as usize;
        let extra_len = u16_at(cd, at + 30)? as usize;
        let comment_len = u16_at(cd, at + 32)? as usize;
        let mut local_offset = u32_at(cd, at + 42)? as u64;
        let name_bytes = cd
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| ZipError::Corrupt("truncated name".into()))?;
        let name = String::from_utf8(name_bytes.to_vec())
            .map_err(|_| ZipError::Corrupt("a name is not UTF-8".into()))?;
        let extra = cd
            .get(at + 46 + name_len..at + 46 + name_len + extra_len)
            .ok_or_else(|| ZipError::Corrupt("truncated extra field".into()))?;
        // ZIP64 extended information: only the fields whose 32-bit slot is saturated, in order.
        let mut e = 0usize;
        while e + 4 <= extra.len() {
            let id = u16_at(extra, e)?;
            let n = u16_at(extra, e + 2)? as usize;
            if id == 0x0001 {
                let mut f = e + 4;
                for field in [&mut size, &mut compressed_size, &mut local_offset] {
                    if *field == U32_MAX {
                        *field = u64_at(extra, f)?;
                        f += 8;
                    }
                }
            }
            e += 4 + n;
        }
        out.push(ZipEntry {
            name,
            crc,
            compressed_size,
            size,
            method,
            local_offset,
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    if out.len() as u64 != entries {
        return Err(ZipError::Corrupt(format!(
            "the end record counts {entries} entries, the directory holds {}",
            out.len()
        )));
    }
    Ok(out)
}

/// Where an entry's data starts, from its 30-byte local header (name and extra lengths).
pub fn data_offset(entry: &ZipEntry, local_header: &[u8]) -> Result<u64, ZipError> {
    if u32_at(local_header, 0)? != LOCAL_SIG {
        return Err(ZipError::Corrupt(format!(
            "{}: bad local header",
            entry.name
        )));
    }
    let n = u16_at(local_header, 26)? as u64;
    let e = u16_at(local_header, 28)? as u64;
    Ok(entry.local_offset + 30 + n + e)
}

#[cfg(test)]
mod tests;
