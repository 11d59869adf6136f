//! What goes into an export archive and how it is described to the person: the layout (which
//! exported blob becomes which readable path), the archive's own manifest (SHA-256 of every
//! entry), telemetry rows as CSV, and the plain-language `index.html`. Pure: the streaming
//! itself is `functions::archive`.

use std::collections::{BTreeMap, BTreeSet};

use super::plan::ResourceType;
use super::report::FinalReport;
use super::slice::{Item, ItemStatus, SliceStatus};

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
            Part::Report => "The export report: every item found for you, what happened to it and where it came from (export-report.json for programs, export-report.md to read).",
            Part::Jobs => "Machine-learning jobs (training and pipeline runs) you submitted: the job descriptions Azure keeps (JSON files under resources/) and the files the jobs produced or logged (under files/).",
            Part::Models => "Models you registered: their descriptions (JSON) and the model files stored with them.",
            Part::Data => "Data assets you registered: their descriptions (JSON) and the data files stored with them.",
            Part::Compute => "Compute resources (compute instances) created for you or assigned to you: their descriptions as Azure keeps them (JSON).",
            Part::Notebooks => "Your notebooks and other files in your personal folder of the workspace's file share.",
            Part::Telemetry => "Usage records about you kept in Log Analytics / Application Insights: each table as JSON (exactly as stored) and as CSV (one row per record, for spreadsheets).",
        }
    }
}

/// One exported item to copy into the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Blob name in the export area.
    pub source: String,
    /// Path inside the archive.
    pub path: String,
    pub size: u64,
    /// What the export step recorded: the archive must hold exactly these bytes.
    pub sha256: String,
    pub part: Part,
    /// Telemetry rows: a CSV rendering goes next to the JSON.
    pub telemetry: bool,
    /// Where it came from, as the report names it.
    pub origin: String,
}

/// Something found for the person that the archive does not hold, and why.
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

/// The entries to copy (in report order, each exported path once) and what was left out.
pub fn plan(report: &FinalReport, request_prefix: &str) -> (Vec<Planned>, Vec<LeftOut>) {
    let mut planned = Vec::new();
    let mut left_out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut taken = BTreeSet::new();
    for r in &report.results {
        for o in &r.items {
            let reason = match &o.status {
                ItemStatus::Exported {
                    path, sha256, size, ..
                } => {
                    if !seen.insert(path.clone()) {
                        continue;
                    }
                    let mut p = archive_path(request_prefix, path);
                    // Two sources cleaned to one path: keep both, the later one renamed.
                    let mut n = 1;
                    while !taken.insert(p.clone()) {
                        n += 1;
                        p = format!("{}~{n}", archive_path(request_prefix, path));
                    }
                    planned.push(Planned {
                        source: path.clone(),
                        path: p,
                        size: *size,
                        sha256: sha256.clone(),
                        part: r.resource_type.into(),
                        telemetry: matches!(o.item, Item::Telemetry { .. }),
                        origin: o.item.label(),
                    });
                    continue;
                }
                ItemStatus::Skipped { reason } => reason.clone(),
                ItemStatus::Failed { reason } => format!("could not be exported: {reason}"),
                ItemStatus::Held { reason, .. } => format!("under a legal hold: {reason}"),
                ItemStatus::Pending { operation, .. } => {
                    format!("still being processed ({operation})")
                }
                other => format!("not exported ({other:?})"),
            };
            left_out.push(LeftOut {
                item: o.item.label(),
                reason,
            });
        }
        if r.status == SliceStatus::Failed {
            left_out.push(LeftOut {
                item: format!(
                    "{} in workspace {}",
                    r.resource_type.as_str(),
                    r.workspace.name()
                ),
                reason: format!(
                    "this part could not be searched completely: {}",
                    r.reason.as_deref().unwrap_or("no reason recorded")
                ),
            });
        }
    }
    for s in &report.slices {
        if let Some(hold) = &s.hold {
            if !report.results.iter().any(|r| r.key == s.key) {
                left_out.push(LeftOut {
                    item: format!(
                        "{} in workspace {}",
                        s.resource_type.as_str(),
                        s.workspace.name()
                    ),
                    reason: format!("under a legal hold ({hold})"),
                });
            }
        }
    }
    (planned, left_out)
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

/// The plain-language guide. `entries` are the archive's data entries (path, size, part).
pub fn render_index(
    report: &FinalReport,
    entries: &[(String, u64, Part)],
    left_out: &[LeftOut],
) -> String {
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
    let mut by_part: BTreeMap<Part, Vec<&(String, u64, Part)>> = BTreeMap::new();
    for e in entries {
        by_part.entry(e.2).or_default().push(e);
    }
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
        let files = by_part.get(&part).map(Vec::as_slice).unwrap_or(&[]);
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
            _ if files.is_empty() => {
                h.push_str("<p><em>Nothing of this kind was found for you.</em></p>\n");
                continue;
            }
            _ => {}
        }
        let total: u64 = files.iter().map(|e| e.1).sum();
        h.push_str(&format!(
            "<p>{} file(s), {} in all.</p>\n<table><tr><th>file</th><th>size</th></tr>\n",
            files.len(),
            human(total)
        ));
        for e in files.iter().take(INDEX_LIST_MAX) {
            h.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td></tr>\n",
                esc(&e.0),
                human(e.1)
            ));
        }
        h.push_str("</table>\n");
        if files.len() > INDEX_LIST_MAX {
            h.push_str(&format!(
                "<p>… and {} more, all listed in <code>manifest.json</code>.</p>\n",
                files.len() - INDEX_LIST_MAX
            ));
        }
    }
    h.push_str("<h2>What was left out, and why</h2>\n");
    if left_out.is_empty() {
        h.push_str("<p>Nothing that was found for you was left out.</p>\n");
    } else {
        h.push_str("<ul>\n");
        for l in left_out {
            h.push_str(&format!("<li>{} — {}</li>\n", esc(&l.item), esc(&l.reason)));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("<p>Not included in any export: data about other people (only items attributed to you are exported; items whose owner is uncertain are reviewed by a person first), the workspace's own configuration, and copies that exist only in backups or as deleted versions kept by the storage account for a limited time.</p>\n");
    h.push_str("<p>Questions about this export go to the privacy contact who sent you the link; quote the request id above.</p>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_readable_and_safe() {
        assert_eq!(
            archive_path("r1/", "r1/ws/jobs/files/acct/azureml/ExperimentRun/x.txt"),
            "workspaces/ws/jobs/files/acct/azureml/ExperimentRun/x.txt"
        );
        assert_eq!(
            archive_path("r1/", "r1/ws/telemetry/telemetry/la/AppEvents.json"),
            "workspaces/ws/telemetry/la/AppEvents.json"
        );
        let p = archive_path("r1/", "r1/ws/data/files/a/c/../x\\y//z");
        assert_eq!(p, "workspaces/ws/data/files/a/c/__/x_y/z");
        assert!(super::super::zip::check_name(&p).is_ok());
    }

    #[test]
    fn csv_quotes_and_columns() {
        let doc = serde_json::json!([
            {"a": "x,y", "b": 1},
            {"b": {"k": "v"}, "c": "say \"hi\""}
        ]);
        let csv = telemetry_csv(&doc).unwrap();
        assert_eq!(
            csv,
            "a,b,c\r\n\"x,y\",1,\r\n,\"{\"\"k\"\":\"\"v\"\"}\",\"say \"\"hi\"\"\"\r\n"
        );
        assert_eq!(telemetry_csv(&serde_json::json!({"a": 1})), None);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(esc("<b>&\""), "&lt;b&gt;&amp;&quot;");
    }
}
