//! What goes into an export archive and how it is described to the person: the layout (which
//! exported blob becomes which readable path), the archive's own manifest (SHA-256 of every
//! entry), telemetry rows as CSV, and the plain-language `index.html`. Pure: the streaming
//! itself is `functions::archive`.

use std::collections::{BTreeMap, BTreeSet};

use super::plan::ResourceType;
use super::report::FinalReport;
use super::slice::{Item, ItemOutcome, ItemStatus, SliceResult, SliceStatus};

/// Schema of `manifest.json` inside the archive.
pub const MANIFEST_SCHEMA: &str = "dsr-export-archive/1.0";
pub const MANIFEST_NAME: &str = "manifest.json";
pub const INDEX_NAME: &str = "index.html";
pub const REPORT_JSON: &str = "report/export-report.json";
pub const REPORT_MD: &str = "report/export-report.md";

/// Which part of the archive an entry belongs to (the sections of `index.html`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Guide,
    Report,
    Jobs,
    Models,
    Data,
    Compute,
    Notebooks,
    Telemetry,
}

impl From<ResourceType> for Part {
    fn from(r: ResourceType) -> Self {
        match r {
            ResourceType::Jobs => Part::Jobs,
            ResourceType::Models => Part::Models,
            ResourceType::Data => Part::Data,
            ResourceType::Compute => Part::Compute,
            ResourceType::Notebooks => Part::Notebooks,
            ResourceType::Telemetry => Part::Telemetry,
        }
    }
}

impl Part {
    fn title(self) -> &'static str {
        match self {
            Part::Guide => "This guide",
            Part::Report => "The export report",
            Part::Jobs => "Jobs",
            Part::Models => "Models",
            Part::Data => "Data",
            Part::Compute => "Compute",
            Part::Notebooks => "Notebooks",
            Part::Telemetry => "Telemetry",
        }
    }

    fn explanation(self) -> &'static str {
        match self {
            Part::Guide => "This page, and manifest.json: the list of every file in this archive with its size and SHA-256 fingerprint, so anyone can check that nothing was changed.",
            Part::Report => "The export report: the request, every item found for you and what happened to it, and what was left out by kind and count (export-report.json for programs, export-report.md to read).",
            Part::Jobs => "Machine-learning jobs (training and pipeline runs) you submitted: the job descriptions Azure keeps (JSON files under resources/) and the files the jobs produced or logged (under files/).",
            Part::Models => "Models you registered: their descriptions (JSON) and the model files stored with them.",
            Part::Data => "Data assets you registered: their descriptions (JSON) and the data files stored with them.",
            Part::Compute => "Compute resources (compute instances) created for you or assigned to you: their descriptions as Azure keeps them (JSON).",
            Part::Notebooks => "Your notebooks and other files in your personal folder of the workspace's file share.",
            Part::Telemetry => "Usage records about you kept in Log Analytics / Application Insights: each table as JSON (exactly as stored) and as CSV (one row per record, for spreadsheets).",
        }
    }
}

/// One exported item to copy into the archive (planned a page of the report at a time by
/// [`Planner`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Blob name in the export area.
    pub source: String,
    pub size: u64,
    /// What the export step recorded: the archive must hold exactly these bytes.
    pub sha256: String,
    pub part: Part,
    /// Telemetry rows: a CSV rendering goes next to the JSON.
    pub telemetry: bool,
    /// The item, as the report names it (the manifest's `origin`).
    pub item: Item,
    /// 0, or n >= 2 when another source was cleaned to the same path first: `~n` is appended.
    pub dup: u32,
}

impl Planned {
    /// Path inside the archive.
    pub fn path(&self, request_prefix: &str) -> String {
        let base = archive_path(request_prefix, &self.source);
        match self.dup {
            0 => base,
            n => format!("{base}~{n}"),
        }
    }
}

/// Something found for the person that the archive does not hold, and why. Either one of the
/// person's own items (named, as the report names it), or a category with a count: what a
/// search note or a review candidate concerns may be another person's, so it is never named.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeftOut {
    pub item: String,
    pub reason: String,
}

/// One archive entry in `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub part: Part,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// `manifest.json`: every other entry of the archive with its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveManifest {
    pub schema: String,
    pub request_id: String,
    pub regulation: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    pub entries: Vec<ManifestEntry>,
    pub left_out: Vec<LeftOut>,
}

/// The fields of `manifest.json` other than its two lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub request_id: String,
    pub regulation: String,
    pub created_at: time::OffsetDateTime,
}

/// `manifest.json` piece by piece (its head, then one piece per entry and per left-out line),
/// so that a manifest of 100,000 entries is never one buffer. The same input gives the same
/// bytes, so the caller counts them first (the size goes in the entry's header), then writes
/// them. The result parses as [`ArchiveManifest`].
pub fn manifest_pieces<'a>(
    head: &'a ManifestHead,
    entries: impl Iterator<Item = ManifestEntry> + 'a,
    left_out: &'a [LeftOut],
) -> impl Iterator<Item = Result<Vec<u8>, String>> + 'a {
    std::iter::once(manifest_opening(head))
        .chain(entries.enumerate().map(|(i, e)| manifest_item(i == 0, &e)))
        .chain(manifest_closing(left_out))
}

/// An entry of the manifest's lists (`first`: no comma before it).
pub fn manifest_item<T: serde::Serialize>(first: bool, v: &T) -> Result<Vec<u8>, String> {
    list_item(first, v, "manifest")
}

/// An entry of a list in the pretty JSON of the archive's documents (the manifest, the
/// person's report), one per line; `doc` names the document in an error.
pub fn list_item<T: serde::Serialize>(first: bool, v: &T, doc: &str) -> Result<Vec<u8>, String> {
    let mut b = if first {
        b"\n    ".to_vec()
    } else {
        b",\n    ".to_vec()
    };
    serde_json::to_writer(&mut b, v).map_err(|e| format!("{doc}: {e}"))?;
    Ok(b)
}

/// The manifest up to its first entry.
pub fn manifest_opening(head: &ManifestHead) -> Result<Vec<u8>, String> {
    let created = head
        .created_at
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("manifest: {e}"))?;
    let j = |v: &str| serde_json::Value::String(v.to_string()).to_string();
    Ok(format!(
        "{{\n  \"schema\": {},\n  \"requestId\": {},\n  \"regulation\": {},\n  \"createdAt\": {},\n  \"entries\": [",
        j(MANIFEST_SCHEMA),
        j(&head.request_id),
        j(&head.regulation),
        j(&created)
    )
    .into_bytes())
}

/// The manifest after its last entry.
pub fn manifest_closing(
    left_out: &[LeftOut],
) -> impl Iterator<Item = Result<Vec<u8>, String>> + '_ {
    std::iter::once(Ok(b"\n  ],\n  \"leftOut\": [".to_vec()))
        .chain(
            left_out
                .iter()
                .enumerate()
                .map(|(i, l)| manifest_item(i == 0, l)),
        )
        .chain(std::iter::once(Ok(b"\n  ]\n}\n".to_vec())))
}

/// A path segment safe in any ZIP reader: `.`/`..`, empty segments, backslashes and control
/// characters cannot come through (blob names allow them; archive paths must not).
fn clean_segment(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| if c == '\\' || c.is_control() { '_' } else { c })
        .collect();
    if out == "." || out == ".." {
        "_".repeat(out.len())
    } else {
        out
    }
}

/// The readable archive path of an exported blob: `workspaces/<workspace>/<type>/…`, the
/// request prefix dropped and the telemetry folder not doubled.
pub fn archive_path(request_prefix: &str, source: &str) -> String {
    let rel = source.strip_prefix(request_prefix).unwrap_or(source);
    let rel = rel.replacen("/telemetry/telemetry/", "/telemetry/", 1);
    let segs: Vec<String> = rel
        .split('/')
        .filter(|s| !s.is_empty())
        .map(clean_segment)
        .collect();
    format!("workspaces/{}", segs.join("/"))
}

/// Kinds of search notes, as the guide names them. A note is free text that can name another
/// person's job or asset (why it was left alone), so the archive only ever counts them.
fn note_category(note: &str) -> &'static str {
    if note == super::lifecycle::CANCELLED_BEFORE_START {
        "not searched: the request was cancelled before this part was started"
    } else if note.starts_with(super::attribution::UNATTRIBUTED_NOTE) {
        "left untouched: whose they are could not be established from Azure's records, so a person decides; they are not in this archive"
    } else if note.contains("shared with another user") {
        "left in place: files shared with other people's work"
    } else if note.contains("left in place") || note.contains("left untouched") {
        "left in place: files that could not be shown to be yours alone"
    } else if note.contains("not searched") || note.contains("could not") {
        "not searched completely: a folder or listing could not be read"
    } else {
        "other remarks from the search (the privacy team has the details)"
    }
}

/// Plans the archive a page of items at a time, in report order: which exported items are
/// copied (each export path once; a second source cleaned to a taken archive path gets `~n`)
/// and what is left out, and why. The same pages in the same order give the same plan, so the
/// archive's writer can go over them again instead of keeping the plan.
///
/// What it keeps depends on what is known of the items ([`Planner::optimistic`],
/// [`Planner::distinct`], [`Planner::exact`]): nearly always every export path and every
/// archive path is different, and then the plan is every exported item under its own path and
/// nothing need be remembered between pages.
pub struct Planner {
    prefix: String,
    keys: Keys,
    cancelled: usize,
    left_out: Vec<LeftOut>,
}

enum Keys {
    /// 16 bytes of SHA-256 per export path and per archive path taken (~36 MB per set for a
    /// million items, in tables sized once).
    Exact { seen: KeySet, taken: KeySet },
    /// Every export path and every archive path is known to be different: nothing to keep.
    Distinct,
    /// Plans as [`Keys::Distinct`] and keeps 8 bytes per export path and per archive path, to
    /// check that afterwards ([`Planner::all_distinct`]).
    Collecting { paths: Vec<u64>, bases: Vec<u64> },
}

/// The planner's keys are SHA-256 prefixes, already uniform: their low 64 bits are the hash
/// (SipHash over them would cost time and change nothing).
type KeySet = std::collections::HashSet<u128, std::hash::BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not reached for `u128` keys (`write_u128` below); folded for completeness.
        for c in bytes.chunks(8) {
            let mut a = [0u8; 8];
            a[..c.len()].copy_from_slice(c);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(a);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

fn key16(s: &str) -> u128 {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 16];
    k.copy_from_slice(&Sha256::digest(s.as_bytes())[..16]);
    u128::from_le_bytes(k)
}

/// The low half of [`key16`]: two strings with different 8-byte keys have different 16-byte
/// keys, so "all 8-byte keys differ" proves the exact planner would find no collision.
fn key8(s: &str) -> u64 {
    key16(s) as u64
}

/// Whether a sorted list holds a value twice.
fn has_repeats(keys: &mut [u64]) -> bool {
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

impl Planner {
    fn with_keys(request_prefix: &str, keys: Keys) -> Self {
        Self {
            prefix: request_prefix.to_string(),
            keys,
            cancelled: 0,
            left_out: Vec::new(),
        }
    }

    /// The exact planner for up to `items` items: it remembers every export path and archive
    /// path it has planned, in tables allocated once (never a table and its doubled copy).
    pub fn exact(request_prefix: &str, items: usize) -> Self {
        let set = || KeySet::with_capacity_and_hasher(items, Default::default());
        Self::with_keys(
            request_prefix,
            Keys::Exact {
                seen: set(),
                taken: set(),
            },
        )
    }

    /// For items an optimistic pass over the same pages found all different
    /// ([`Planner::all_distinct`]): plans exactly as [`Planner::exact`] would, keeping nothing.
    pub fn distinct(request_prefix: &str) -> Self {
        Self::with_keys(request_prefix, Keys::Distinct)
    }

    /// Plans as [`Planner::distinct`] and keeps 8 bytes per export path and per archive path
    /// (16 MB for a million items) so that [`Planner::all_distinct`] can say whether the plan
    /// is the exact one. When it is not, plan again with [`Planner::exact`].
    pub fn optimistic(request_prefix: &str, items: usize) -> Self {
        Self::with_keys(
            request_prefix,
            Keys::Collecting {
                paths: Vec::with_capacity(items),
                bases: Vec::with_capacity(items),
            },
        )
    }

    /// Whether the plan so far is the exact one: always for [`Planner::exact`] and
    /// [`Planner::distinct`]; for [`Planner::optimistic`], when no two exported items shared an
    /// export path or an archive path (its keys are freed).
    pub fn all_distinct(&mut self) -> bool {
        match &mut self.keys {
            Keys::Collecting { paths, bases } => {
                let distinct = !has_repeats(paths) && !has_repeats(bases);
                self.keys = Keys::Distinct;
                distinct
            }
            Keys::Exact { .. } | Keys::Distinct => true,
        }
    }

    /// Plan one exported path: `None` when it was planned already, else its `~n` (0: none).
    fn take(&mut self, path: &str) -> Option<u32> {
        match &mut self.keys {
            Keys::Exact { seen, taken } => {
                if !seen.insert(key16(path)) {
                    return None;
                }
                let base = archive_path(&self.prefix, path);
                let mut n = 1u32;
                while !taken.insert(if n == 1 {
                    key16(&base)
                } else {
                    key16(&format!("{base}~{n}"))
                }) {
                    n += 1;
                }
                Some(if n == 1 { 0 } else { n })
            }
            Keys::Distinct => Some(0),
            Keys::Collecting { paths, bases } => {
                paths.push(key8(path));
                bases.push(key8(&archive_path(&self.prefix, path)));
                Some(0)
            }
        }
    }

    /// The entries to copy among `items` (some or all of `r`'s, in order).
    pub fn page(&mut self, r: &SliceResult, items: &[ItemOutcome]) -> Vec<Planned> {
        let part = Part::from(r.resource_type);
        let mut planned = Vec::new();
        for o in items {
            let reason = match &o.status {
                ItemStatus::Exported {
                    path, sha256, size, ..
                } => {
                    let Some(dup) = self.take(path) else {
                        continue;
                    };
                    planned.push(Planned {
                        source: path.clone(),
                        size: *size,
                        sha256: sha256.clone(),
                        part,
                        telemetry: matches!(o.item, Item::Telemetry { .. }),
                        item: o.item.clone(),
                        dup,
                    });
                    continue;
                }
                s if super::lifecycle::is_cancelled_skip(s) => {
                    self.cancelled += 1;
                    continue;
                }
                ItemStatus::Skipped { reason } => reason.clone(),
                // An error's text can quote what the service met (another person's names
                // among them): the fact only, as for a failed part.
                ItemStatus::Failed { .. } => {
                    "could not be exported (the privacy team has the details)".into()
                }
                // The hold's own text is the organisation's (it can name a case or its
                // parties): only the fact is the person's.
                ItemStatus::Held { .. } => "kept under a legal hold".to_string(),
                ItemStatus::Pending { operation, .. } => {
                    format!("still being processed ({operation})")
                }
                ItemStatus::RetainedUntil { .. } => {
                    "kept by the storage account's retention".into()
                }
                ItemStatus::InShareSnapshots { .. } => {
                    "deleted from the file share; may remain in its snapshots".into()
                }
                ItemStatus::Deleted { .. } => "deleted, not exported".into(),
                ItemStatus::WouldExport | ItemStatus::WouldDelete => {
                    "not exported (a dry run)".into()
                }
            };
            self.left_out.push(LeftOut {
                item: o.item.label(),
                reason,
            });
        }
        planned
    }

    /// After the last page of `r`: what is left out of the slice as a whole.
    pub fn end_slice(&mut self, r: &SliceResult) {
        let part = Part::from(r.resource_type);
        let place = format!("{} in workspace {}", part.title(), r.workspace.name());
        let left_out = &mut self.left_out;
        let cancelled = std::mem::take(&mut self.cancelled);
        if cancelled > 0 {
            left_out.push(LeftOut {
                item: format!("{cancelled} item(s) among {place}"),
                reason: "not exported: the request was cancelled before they were reached".into(),
            });
        }
        if !r.review.is_empty() {
            left_out.push(LeftOut {
                item: format!("{} item(s) among {place}", r.review.len()),
                reason: "awaiting a person's review: they may be yours, but Azure's records do not prove it; they are not in this archive".into(),
            });
        }
        let mut notes: BTreeMap<&'static str, usize> = BTreeMap::new();
        for n in &r.notes {
            *notes.entry(note_category(n)).or_default() += 1;
        }
        for (category, count) in notes {
            left_out.push(LeftOut {
                item: format!("{count} note(s) from the search of {place}"),
                reason: category.into(),
            });
        }
        if r.status == SliceStatus::Failed {
            // The failure's own text can quote what the search met (another person's names
            // among them): the category only.
            left_out.push(LeftOut {
                item: place.clone(),
                reason:
                    "this part could not be searched completely (the privacy team has the details)"
                        .into(),
            });
        }
    }

    /// After every slice: what was left out, the parts under a legal hold included.
    pub fn finish(mut self, report: &FinalReport) -> Vec<LeftOut> {
        for s in &report.slices {
            if s.hold.is_some() && !report.results.iter().any(|r| r.key == s.key) {
                self.left_out.push(LeftOut {
                    item: format!(
                        "{} in workspace {}",
                        Part::from(s.resource_type).title(),
                        s.workspace.name()
                    ),
                    reason: "under a legal hold: not searched".into(),
                });
            }
        }
        self.left_out
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Telemetry rows (a JSON array of objects) as CSV: one column per field, in the order the
/// parsed rows list their fields (alphabetical) and first appearance across rows; strings as
/// they are, other values as JSON. `None` if the document is not rows.
pub fn telemetry_csv(doc: &serde_json::Value) -> Option<String> {
    let rows = doc.as_array()?;
    let mut cols: Vec<String> = Vec::new();
    let mut known = BTreeSet::new();
    for row in rows {
        for k in row.as_object()?.keys() {
            if known.insert(k.clone()) {
                cols.push(k.clone());
            }
        }
    }
    let mut out = cols
        .iter()
        .map(|c| csv_field(c))
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    for row in rows {
        let obj = row.as_object()?;
        let line = cols
            .iter()
            .map(|c| match obj.get(c) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => csv_field(s),
                Some(v) => csv_field(&v.to_string()),
            })
            .collect::<Vec<_>>()
            .join(",");
        out.push_str(&line);
        out.push_str("\r\n");
    }
    Some(out)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} bytes"),
    }
}

/// Most files listed per part in the guide (all of them are in manifest.json).
const INDEX_LIST_MAX: usize = 200;

/// What the guide says about one part: how many files, how large, and the first few by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartFiles {
    pub files: usize,
    pub bytes: u64,
    /// At most [`INDEX_LIST_MAX`] (path, size), in archive order.
    pub shown: Vec<(String, u64)>,
}

/// The archive's data entries by part, as the guide lists them (bounded however many files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents(BTreeMap<Part, PartFiles>);

impl Contents {
    pub fn add(&mut self, part: Part, path: impl FnOnce() -> String, size: u64) {
        let p = self.0.entry(part).or_default();
        p.files += 1;
        p.bytes += size;
        if p.shown.len() < INDEX_LIST_MAX {
            p.shown.push((path(), size));
        }
    }
}

/// The plain-language guide.
pub fn render_index(report: &FinalReport, contents: &Contents, left_out: &[LeftOut]) -> String {
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let law = match report.regulation {
        super::deadline::Regulation::Gdpr => {
            "the EU General Data Protection Regulation (articles 15 and 20: your right of access and to data portability)"
        }
        super::deadline::Regulation::Ccpa => {
            "the California Consumer Privacy Act (your right to know)"
        }
    };
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Your data export</title>\n<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.5}code{background:#f3f3f3}td,th{padding:0 .8em;text-align:left}</style></head><body>\n");
    h.push_str("<h1>Your data export</h1>\n");
    h.push_str(&format!(
        "<p>This archive holds a copy of the personal data about you that an Azure Machine Learning environment keeps, as requested under {law}. Request <code>{}</code>, received {}, prepared {}.</p>\n",
        esc(&report.request_id.to_string()),
        esc(&rfc(report.received_at)),
        esc(&rfc(report.finished_at)),
    ));
    h.push_str("<p>Everything is in common formats: JSON (open with any text editor or a browser), CSV (open with a spreadsheet) and the files exactly as they were stored. <code>manifest.json</code> lists every file with its SHA-256 fingerprint; the tool that made this archive checks it with <code>azureml-dsr export verify &lt;archive&gt;</code>, and any SHA-256 tool can check each file.</p>\n");
    h.push_str("<h2>What is in this archive</h2>\n");
    for part in [
        Part::Guide,
        Part::Report,
        Part::Jobs,
        Part::Models,
        Part::Data,
        Part::Compute,
        Part::Notebooks,
        Part::Telemetry,
    ] {
        let empty = PartFiles::default();
        let files = contents.0.get(&part).unwrap_or(&empty);
        h.push_str(&format!(
            "<h3>{}</h3>\n<p>{}</p>\n",
            part.title(),
            part.explanation()
        ));
        match part {
            Part::Guide => {
                h.push_str("<ul><li><code>index.html</code></li><li><code>manifest.json</code></li></ul>\n");
                continue;
            }
            _ if files.files == 0 => {
                h.push_str("<p><em>Nothing of this kind was found for you.</em></p>\n");
                continue;
            }
            _ => {}
        }
        h.push_str(&format!(
            "<p>{} file(s), {} in all.</p>\n<table><tr><th>file</th><th>size</th></tr>\n",
            files.files,
            human(files.bytes)
        ));
        for e in &files.shown {
            h.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td></tr>\n",
                esc(&e.0),
                human(e.1)
            ));
        }
        h.push_str("</table>\n");
        if files.files > files.shown.len() {
            h.push_str(&format!(
                "<p>… and {} more, all listed in <code>manifest.json</code>.</p>\n",
                files.files - files.shown.len()
            ));
        }
    }
    h.push_str("<h2>What was left out, and why</h2>\n");
    if left_out.is_empty() {
        h.push_str("<p>Nothing that was found for you was left out.</p>\n");
    } else {
        h.push_str("<p>Items of yours are named; where something concerns what may be another person's (notes from the search, items awaiting review), only how many and why.</p>\n<ul>\n");
        for l in left_out.iter().take(INDEX_LIST_MAX) {
            h.push_str(&format!("<li>{} — {}</li>\n", esc(&l.item), esc(&l.reason)));
        }
        h.push_str("</ul>\n");
        if left_out.len() > INDEX_LIST_MAX {
            h.push_str(&format!(
                "<p>… and {} more, all listed in <code>manifest.json</code> (<code>leftOut</code>).</p>\n",
                left_out.len() - INDEX_LIST_MAX
            ));
        }
    }
    h.push_str("<p>Not included in any export: data about other people (only items attributed to you are exported; items whose owner is uncertain are reviewed by a person first), the workspace's own configuration, and copies that exist only in backups or as deleted versions kept by the storage account for a limited time.</p>\n");
    h.push_str("<p>Questions about this export go to the privacy contact who sent you the link; quote the request id above.</p>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests;
