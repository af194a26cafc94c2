//! `tiller annotate export`: votes as TRL prompt/chosen/rejected pairs or KTO rows
//! (.jsonl or .parquet) plus a manifest.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use tiller_annotate::{export, Aggregation, ExportFormat, ExportOptions, TiePolicy};

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Only this campaign (all when absent).
    #[arg(long)]
    campaign: Option<String>,
    /// `pairs`: prompt/chosen/rejected; `kto`: prompt/completion/label, both-bad answers
    /// as undesirable examples.
    #[arg(long, value_enum, default_value = "pairs")]
    format: FormatArg,
    /// Ties and both-bad votes: drop, write to a separate file, or keep in the pairs file.
    #[arg(long, value_enum, default_value = "drop")]
    ties: TiesArg,
    #[arg(long, value_enum, default_value = "majority")]
    aggregation: AggregationArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum TiesArg {
    Drop,
    Separate,
    Keep,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Pairs,
    Kto,
}

#[derive(Clone, Copy, ValueEnum)]
enum AggregationArg {
    Majority,
    EveryVote,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let options = ExportOptions {
        campaign: args.campaign,
        format: match args.format {
            FormatArg::Pairs => ExportFormat::Pairs,
            FormatArg::Kto => ExportFormat::Kto,
        },
        ties: match args.ties {
            TiesArg::Drop => TiePolicy::Drop,
            TiesArg::Separate => TiePolicy::Separate,
            TiesArg::Keep => TiePolicy::Keep,
        },
        aggregation: match args.aggregation {
            AggregationArg::Majority => Aggregation::Majority,
            AggregationArg::EveryVote => Aggregation::EveryVote,
        },
    };
    let summary = export(&args.db, &args.out, options)?;
    for file in &summary.files {
        println!("wrote {}", file.display());
    }
    println!(
        "manifest {} (sha256 {})",
        summary.manifest.display(),
        summary.content_sha256
    );
    Ok(())
}
