//! `tiller annotate export`: preference pairs (or KTO rows) in TRL's format plus a manifest.
//!
//! For `--out pairs.jsonl` it writes `pairs.jsonl`, with [`TiePolicy::Separate`] also
//! `pairs.ties.jsonl`, and always `pairs.manifest.json` with the counts, the provenance
//! (every vote id, every annotator's pseudonym and gold accuracy) and a sha256 of the
//! content. The content hash is taken over the rows serialized as JSONL (pairs then
//! ties), so it names the data whatever container (JSONL or Parquet) holds it.

mod rows;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

pub use rows::{
    Aggregation, AnnotatorProvenance, ExportCounts, ExportFormat, ExportRows, Provenance, Row,
    TiePolicy,
};

use crate::error::{AppError, Result};
use crate::store::Store;
use crate::util::{now_ms, rfc3339, sha256_hex};

/// Version of the manifest's layout (2 added `provenance`).
pub const MANIFEST_VERSION: u32 = 2;

/// Choices for an export.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportOptions {
    /// Export only this campaign (by name); all campaigns when `None`.
    #[serde(default)]
    pub campaign: Option<String>,
    #[serde(default)]
    pub format: ExportFormat,
    #[serde(default)]
    pub ties: TiePolicy,
    #[serde(default)]
    pub aggregation: Aggregation,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    pub counts: ExportCounts,
    /// Data files written (pairs first, then ties if any).
    pub files: Vec<PathBuf>,
    pub manifest: PathBuf,
    pub content_sha256: String,
}

/// An export held in memory (what the admin page downloads).
#[derive(Debug, Clone, Serialize)]
pub struct ExportBundle {
    pub manifest: serde_json::Value,
    /// The pairs as JSONL text.
    pub pairs: String,
    /// Ties and both-bad rows as JSONL text, under [`TiePolicy::Separate`].
    pub ties: Option<String>,
}

/// Exports the votes in the store at `db` to `out` (`.jsonl` or `.parquet`, written by
/// tiller-data's table writer), plus the manifest beside it.
/// A missing `db` is an error (opening would create an empty store and export nothing).
pub fn export(db: &Path, out: &Path, options: ExportOptions) -> Result<ExportSummary> {
    if !crate::store::exists(db) {
        return Err(AppError::not_found("database", db.display()));
    }
    let store = Store::open(db)?;
    store.export_to(out, &options)
}

impl Store {
    /// Builds the export rows for `options` from one consistent snapshot.
    pub fn export_rows(&self, options: &ExportOptions) -> Result<ExportRows> {
        let campaign_id = match &options.campaign {
            Some(name) => Some(self.campaign_by_name(name)?.id),
            None => None,
        };
        self.read(|conn| {
            rows::build_rows(
                conn,
                campaign_id,
                options.format,
                options.ties,
                options.aggregation,
            )
        })
    }

    /// Writes an export to `out` (see [`export`]).
    pub fn export_to(&self, out: &Path, options: &ExportOptions) -> Result<ExportSummary> {
        check_extension(out)?;
        let rows = self.export_rows(options)?;
        let ties_path = sibling(out, "ties");
        let manifest_path = sibling(out, "manifest").with_extension("json");
        let mut files = vec![out.to_path_buf()];
        tiller_data::write_table(out, &rows.pairs)?;
        if options.ties == TiePolicy::Separate {
            tiller_data::write_table(&ties_path, &rows.ties)?;
            files.push(ties_path);
        }
        let content_sha256 = content_hash(&rows)?;
        let manifest = manifest(self.path(), options, &rows, &content_sha256, &files)?;
        let text = serde_json::to_string_pretty(&manifest)?;
        std::fs::write(&manifest_path, text + "\n")
            .map_err(|err| AppError::io(format!("writing {}", manifest_path.display()), err))?;
        Ok(ExportSummary {
            counts: rows.counts,
            files,
            manifest: manifest_path,
            content_sha256,
        })
    }

    /// An export as in-memory JSONL, for the admin API.
    pub fn export_bundle(&self, options: &ExportOptions) -> Result<ExportBundle> {
        let rows = self.export_rows(options)?;
        let content_sha256 = content_hash(&rows)?;
        let names = match options.ties {
            TiePolicy::Drop | TiePolicy::Keep => vec![PathBuf::from("pairs.jsonl")],
            TiePolicy::Separate => vec![
                PathBuf::from("pairs.jsonl"),
                PathBuf::from("pairs.ties.jsonl"),
            ],
        };
        let manifest = manifest(self.path(), options, &rows, &content_sha256, &names)?;
        let ties = (options.ties == TiePolicy::Separate)
            .then(|| to_jsonl(&rows.ties))
            .transpose()?;
        Ok(ExportBundle {
            manifest,
            pairs: to_jsonl(&rows.pairs)?,
            ties,
        })
    }
}

/// Rows as JSONL text, one object per line.
pub fn to_jsonl(rows: &[Row]) -> Result<String> {
    let mut text = String::new();
    for row in rows {
        text.push_str(&serde_json::to_string(row)?);
        text.push('\n');
    }
    Ok(text)
}

fn content_hash(rows: &ExportRows) -> Result<String> {
    let mut text = to_jsonl(&rows.pairs)?;
    text.push_str(&to_jsonl(&rows.ties)?);
    Ok(sha256_hex(text.as_bytes()))
}

fn manifest(
    db: &Path,
    options: &ExportOptions,
    rows: &ExportRows,
    content_sha256: &str,
    files: &[PathBuf],
) -> Result<serde_json::Value> {
    let file_rows = [rows.pairs.len(), rows.ties.len()];
    let files: Vec<serde_json::Value> = files
        .iter()
        .zip(file_rows)
        .map(|(path, count)| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            json!({ "file": name, "rows": count })
        })
        .collect();
    Ok(json!({
        "format_version": MANIFEST_VERSION,
        "created_at": rfc3339(now_ms()),
        "database": db.display().to_string(),
        "options": options,
        "columns": columns(options.format),
        "counts": rows.counts,
        "provenance": rows.provenance,
        "files": files,
        "content_sha256": content_sha256,
    }))
}

fn columns(format: ExportFormat) -> &'static str {
    match format {
        ExportFormat::Pairs => {
            "prompt, chosen, rejected (TRL preference format) + chosen_model, rejected_model, outcome, \
             item_id, external_id, campaign, annotator (pseudonym), voted_at, strength, rationale, \
             consent, consent_at, consent_version"
        }
        ExportFormat::Kto => {
            "prompt, completion, label (TRL unpaired/KTO format) + model, outcome, item_id, external_id, \
             campaign, annotator (pseudonym), voted_at, strength, rationale, consent, consent_at, \
             consent_version"
        }
    }
}

/// `dir/pairs.jsonl` + `ties` → `dir/pairs.ties.jsonl`.
fn sibling(out: &Path, tag: &str) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pairs".into());
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}.{tag}.{ext}"))
}

/// Exports are `.jsonl` or `.parquet`; tiller-data's `write_table` picks the format from
/// the extension, writes beside the target, fsyncs and renames into place.
fn check_extension(path: &Path) -> Result<()> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl" | "parquet") => Ok(()),
        _ => Err(AppError::field(
            "out",
            format!("{} must end in .jsonl or .parquet", path.display()),
        )),
    }
}
