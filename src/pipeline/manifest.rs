//! `manifest.json`: what went into a stage's output and what came out — parent
//! checkpoints, base models and datasets with their sha256, the resolved config, seed,
//! tiller version and source revision, start and end time, final metrics, and the
//! consent/provenance summary of any human annotations used. It is written last, so its
//! presence (with a matching key) is what marks a stage as done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::pipeline::annotate_queue::QueuedItems;
use crate::pipeline::config::StageKind;

pub const MANIFEST_FILE: &str = "manifest.json";
/// Bumped when the manifest changes shape.
pub const MANIFEST_VERSION: u32 = 1;

/// The tiller version and the git revision it was built from (when built from a checkout).
pub fn tiller_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
pub fn git_revision() -> Option<&'static str> {
    option_env!("TILLER_GIT_REVISION").filter(|r| !r.is_empty())
}

/// An earlier stage of the same run this one reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parent {
    pub stage: String,
    pub kind: StageKind,
    /// The output used (a checkpoint directory, a report directory or a data file).
    pub path: String,
    /// Where the parent's own manifest is (lineage follows it).
    pub manifest: String,
    /// The parent's cache key and the sha256 of its output.
    pub key: String,
    pub output_sha256: String,
}

/// A model directory read by the stage that no stage of this run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseModel {
    pub path: String,
    pub sha256: String,
    /// Its own manifest, when it came from another tiller run.
    #[serde(default)]
    pub manifest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// What the file is for (`data.train`, `data.eval`, `harmful`, ...).
    pub role: String,
    pub path: String,
    pub sha256: String,
    /// Rows (lines of JSONL, records of Parquet, CSV rows without the header), when known.
    pub rows: Option<usize>,
}

/// Consent and provenance of human votes exported from an annotation database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnotationSummary {
    pub database: String,
    /// Campaigns the exported rows come from.
    pub campaigns: Vec<String>,
    /// Distinct annotator pseudonyms behind the exported rows.
    pub annotators: usize,
    /// Live votes considered by the export.
    pub votes: usize,
    /// Preference rows written.
    pub pairs: usize,
    /// Rows whose every vote came from an annotator who gave consent.
    pub consented_rows: usize,
    /// Earliest and latest vote behind the rows (RFC 3339), when there are rows.
    pub first_vote: Option<String>,
    pub last_vote: Option<String>,
    /// The export's content hash (annotate's manifest `content_sha256`).
    pub content_sha256: String,
    /// annotate's own export manifest beside the pairs file.
    pub export_manifest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub stage: String,
    pub kind: StageKind,
    /// The stage's cache key: sha256 over its resolved config, parent keys and output
    /// hashes, base model and data hashes, and the tiller version.
    pub key: String,
    /// The stage's output (checkpoint directory, report directory or data file).
    pub output: String,
    pub output_sha256: String,
    pub parents: Vec<Parent>,
    pub base_models: Vec<BaseModel>,
    pub datasets: Vec<Dataset>,
    /// The stage's config with references resolved, as the trainer received it.
    pub config: serde_json::Value,
    pub seed: Option<u64>,
    pub tiller_version: String,
    pub git_revision: Option<String>,
    /// UTC, `YYYY-MM-DD HH:MM:SS UTC`.
    pub started_at: String,
    pub finished_at: String,
    pub metrics: BTreeMap<String, f64>,
    /// Human annotations this stage used (directly, or its own export).
    pub annotations: Vec<AnnotationSummary>,
    /// An `annotate-queue` stage's items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<QueuedItems>,
}

impl Manifest {
    pub fn read(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a tiller manifest", path.display()))?;
        if manifest.format_version != MANIFEST_VERSION {
            anyhow::bail!(
                "{}: manifest format_version {} (this tiller reads {MANIFEST_VERSION})",
                path.display(),
                manifest.format_version
            );
        }
        Ok(manifest)
    }

    /// The directory the manifest lives in: the output itself, or (an export) the
    /// directory holding the output file.
    pub fn output_dir(&self) -> PathBuf {
        let output = Path::new(&self.output);
        match self.kind {
            StageKind::AnnotateExport => output.parent().unwrap_or(output).to_path_buf(),
            _ => output.to_path_buf(),
        }
    }

    /// Writes `path` through a temporary file and a rename: a manifest is whole or absent.
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)? + "\n";
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Where the manifest of a stage output lives: inside a directory, or beside a file in
/// the stage's directory.
pub fn manifest_path(stage_dir: &Path) -> PathBuf {
    stage_dir.join(MANIFEST_FILE)
}
