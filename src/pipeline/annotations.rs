//! The `annotate-export` stage: at stage start, the votes in an annotation database are
//! exported as preference pairs (annotate's own export and manifest), and their consent
//! and provenance are summarised for the lineage of every stage that trains on them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tiller_annotate::{export, Aggregation, ExportFormat, ExportOptions, TiePolicy};

use crate::pipeline::manifest::AnnotationSummary;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportStage {
    /// The annotation store (SQLite) `tiller annotate serve` writes.
    pub database: PathBuf,
    /// The stage directory (set by the pipeline).
    pub out: PathBuf,
    /// The pairs file's name in the stage directory (`.jsonl` or `.parquet`).
    #[serde(default = "default_file")]
    pub file: String,
    /// Only this campaign; all when absent.
    #[serde(default)]
    pub campaign: Option<String>,
    /// `pairs` (prompt/chosen/rejected) or `kto` (prompt/completion/label). Left out of
    /// the resolved config when `pairs`, so stage keys of configs from before it existed
    /// stay the same (no retraining after an upgrade).
    #[serde(default, skip_serializing_if = "is_pairs")]
    pub format: ExportFormat,
    #[serde(default)]
    pub ties: TiePolicy,
    #[serde(default)]
    pub aggregation: Aggregation,
}

fn is_pairs(format: &ExportFormat) -> bool {
    *format == ExportFormat::Pairs
}

fn default_file() -> String {
    "pairs.jsonl".into()
}

impl ExportStage {
    /// The pairs file later stages read (`"stages.NAME"`).
    pub fn pairs_path(&self) -> PathBuf {
        self.out.join(&self.file)
    }

    /// Exports now and summarises what was exported.
    pub fn run(&self) -> Result<AnnotationSummary> {
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("cannot create {}", self.out.display()))?;
        let options = ExportOptions {
            campaign: self.campaign.clone(),
            format: self.format,
            ties: self.ties,
            aggregation: self.aggregation,
        };
        let pairs = self.pairs_path();
        let summary = export(&self.database, &pairs, options)
            .with_context(|| format!("exporting votes from {}", self.database.display()))?;
        summarize(
            &self.database,
            &pairs,
            &summary.manifest,
            summary.counts.votes,
            &summary.content_sha256,
        )
    }
}

/// Campaigns, annotators, consent and time range of the rows in `pairs`.
fn summarize(
    database: &Path,
    pairs: &Path,
    export_manifest: &Path,
    votes: usize,
    content_sha256: &str,
) -> Result<AnnotationSummary> {
    let rows = tiller_data::read_table(pairs)?;
    let (mut campaigns, mut annotators, mut times) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut consented = 0;
    for (_, row) in &rows {
        let text = |k: &str| row.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        campaigns.extend(text("campaign"));
        if let Some(names) = text("annotator") {
            annotators.extend(
                names
                    .split(',')
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned),
            );
        }
        times.extend(text("voted_at"));
        if row.get("consent").and_then(|v| v.as_bool()) == Some(true) {
            consented += 1;
        }
    }
    Ok(AnnotationSummary {
        database: database.display().to_string(),
        campaigns: campaigns.into_iter().collect(),
        annotators: annotators.len(),
        votes,
        pairs: rows.len(),
        consented_rows: consented,
        first_vote: times.first().cloned(),
        last_vote: times.last().cloned(),
        content_sha256: content_sha256.to_owned(),
        export_manifest: export_manifest.display().to_string(),
    })
}
