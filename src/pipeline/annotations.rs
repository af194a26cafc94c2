//! The `annotate-export` stage: at stage start, the votes in an annotation database are
//! exported as preference pairs (annotate's own export and manifest), and their consent
//! and provenance are summarised for the lineage of every stage that trains on them.
//!
//! With `min_votes`, the stage first counts the live votes: too few, and the pipeline
//! stops there with [`WaitingForVotes`] (`tiller run` exits with status
//! [`WaitingForVotes::EXIT_STATUS`]) after printing the links and the serve command; the
//! stages before it are cached, so the next `tiller run` continues from here. With
//! `wait = true` it polls every `poll_secs` instead, printing the count, until enough
//! votes are in.
//!
//! `include` appends the rows of other files in the export's format (the project's own
//! pairs, say) after the human rows, so one DPO stage trains on both; they are hashed
//! as the stage's data, and the annotation summary counts the human rows only.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use tiller_annotate::{export, Aggregation, ExportFormat, ExportOptions, Store, TiePolicy};
use tiller_data::{
    load_records, read_table, write_table, OnBadRow, PreferenceRecord, UnpairedRecord,
};

use crate::pipeline::annotate_queue::print_links;
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
    /// Files whose rows follow the human rows in the pairs file (same format; JSONL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<PathBuf>,
    /// Stop (or wait) until the campaign has this many live votes. Left out of the
    /// resolved config when absent, like the keys below, so older stage keys stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_votes: Option<usize>,
    /// Poll until `min_votes` votes are in instead of stopping.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait: bool,
    /// Seconds between two counts while waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_secs: Option<f64>,
}

/// The pipeline stopped at an export stage for want of votes (not a failure: people
/// have not voted yet).
#[derive(Debug)]
pub struct WaitingForVotes {
    pub stage: String,
    pub campaign: String,
    pub database: String,
    pub votes: usize,
    pub min_votes: usize,
}

impl std::fmt::Display for WaitingForVotes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stage {}: {} of the {} votes it needs are in ({} in {}); the pipeline stops here until people vote",
            self.stage, self.votes, self.min_votes, self.campaign, self.database
        )
    }
}

impl std::error::Error for WaitingForVotes {}

impl WaitingForVotes {
    /// `tiller run`'s exit status when it stops for votes (1 is an error, 2 a usage error).
    pub const EXIT_STATUS: u8 = 3;
}

const DEFAULT_POLL_SECS: f64 = 30.0;

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

    pub fn validate(&self, at: &str) -> Result<()> {
        let jsonl = Path::new(&self.file)
            .extension()
            .is_some_and(|e| e == "jsonl");
        if !self.include.is_empty() && !jsonl {
            anyhow::bail!(
                "{at}: `include` needs a `.jsonl` pairs file (`file` = {:?}): rows of several files need not share one Parquet schema",
                self.file
            );
        }
        if self.min_votes == Some(0) {
            anyhow::bail!("{at}: `min_votes` = 0 always holds; leave it out");
        }
        if (self.wait || self.poll_secs.is_some()) && self.min_votes.is_none() {
            anyhow::bail!(
                "{at}: `wait` and `poll_secs` need `min_votes` (how many votes to wait for)"
            );
        }
        if let Some(p) = self.poll_secs {
            if !(p.is_finite() && p > 0.0) {
                anyhow::bail!("{at}: `poll_secs` = {p}: must be a number of seconds > 0");
            }
        }
        Ok(())
    }

    /// Live votes in the campaign (every campaign when none is named).
    fn count_votes(&self) -> Result<usize> {
        let store = Store::open(&self.database)?;
        let votes: i64 = store
            .campaigns()?
            .iter()
            .filter(|c| self.campaign.as_ref().is_none_or(|n| *n == c.campaign.name))
            .map(|c| c.votes)
            .sum();
        Ok(votes.max(0) as usize)
    }

    /// Waits for (or stops for want of) `min_votes`, then exports and summarises.
    pub fn run(&self, stage: &str) -> Result<AnnotationSummary> {
        if !self.database.is_file() {
            anyhow::bail!(
                "stage {stage} (annotate-export): `database` {} does not exist",
                self.database.display()
            );
        }
        if let Some(min_votes) = self.min_votes {
            self.await_votes(stage, min_votes)?;
        }
        self.export()
            .with_context(|| format!("stage {stage} (annotate-export)"))
    }

    fn await_votes(&self, stage: &str, min_votes: usize) -> Result<()> {
        let campaign = self
            .campaign
            .clone()
            .unwrap_or_else(|| "every campaign".into());
        let mut votes = self.count_votes()?;
        if votes >= min_votes {
            println!("    {votes} votes ({min_votes} needed)");
            return Ok(());
        }
        match &self.campaign {
            Some(name) => print_links(&self.database, name),
            None => println!(
                "    serve the app with: tiller annotate serve --db {}",
                self.database.display()
            ),
        }
        if !self.wait {
            return Err(WaitingForVotes {
                stage: stage.to_owned(),
                campaign,
                database: self.database.display().to_string(),
                votes,
                min_votes,
            }
            .into());
        }
        let poll = Duration::from_secs_f64(self.poll_secs.unwrap_or(DEFAULT_POLL_SECS));
        while votes < min_votes {
            println!("    waiting for votes: {votes}/{min_votes} in {campaign}");
            std::thread::sleep(poll);
            votes = self.count_votes()?;
        }
        println!("    {votes} votes ({min_votes} needed)");
        Ok(())
    }

    /// Exports now and summarises what was exported.
    fn export(&self) -> Result<AnnotationSummary> {
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
        let human = summarize(
            &self.database,
            &pairs,
            &summary.manifest,
            summary.counts.votes,
            &summary.content_sha256,
        )?;
        self.append_included(&pairs)?;
        Ok(human)
    }

    /// Appends the `include` files' rows, each checked as a record of the export's format
    /// first (so a bad row is named in its own file, not in the pairs file).
    fn append_included(&self, pairs: &Path) -> Result<()> {
        if self.include.is_empty() {
            return Ok(());
        }
        let mut rows: Vec<_> = read_table(pairs)?.into_iter().map(|(_, r)| r).collect();
        for path in &self.include {
            match self.format {
                ExportFormat::Pairs => {
                    drop(load_records::<PreferenceRecord>(path, OnBadRow::Stop)?)
                }
                ExportFormat::Kto => drop(load_records::<UnpairedRecord>(path, OnBadRow::Stop)?),
            }
            let extra = read_table(path)?;
            println!("    + {} rows of {}", extra.len(), path.display());
            rows.extend(extra.into_iter().map(|(_, r)| r));
        }
        write_table(pairs, &rows)?;
        Ok(())
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
    let rows = read_table(pairs)?;
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
