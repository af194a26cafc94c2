//! `tiller annotate campaign`: a new campaign (guidelines, consent, overlap, withdrawal
//! policy, optionally an arena's models) and its annotator links.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use tiller_annotate::{ArenaConfig, CampaignPolicy, NewCampaign, OnWithdrawal, Store};

#[derive(Args)]
pub struct CampaignArgs {
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    name: String,
    /// Guidelines shown to annotators (text, or @FILE to read them from a file).
    #[arg(long, default_value = "")]
    guidelines: String,
    /// Distinct annotators per item.
    #[arg(long, default_value_t = 1)]
    overlap: u32,
    /// An annotator to create a link for (repeatable).
    #[arg(long = "annotator")]
    annotators: Vec<String>,
    /// The consent statement (text, or @FILE); a default statement when absent.
    #[arg(long)]
    consent: Option<String>,
    /// On withdrawal of consent: keep the votes out of exports, or erase them.
    #[arg(long, value_enum, default_value = "keep")]
    on_withdrawal: OnWithdrawalArg,
    /// Leave annotators below this accuracy on gold items (0..1) out of exports.
    #[arg(long)]
    min_gold_accuracy: Option<f64>,
    /// Make it an arena campaign: a JSON file with its models, as
    /// `POST /api/admin/campaigns/{id}/arena` takes (`{"models": [{"name", "base_url",
    /// "model", "api_key"?}, ...], "max_tokens"?: 512, ...}`).
    #[arg(long)]
    arena: Option<PathBuf>,
    /// Base URL the links point at.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum OnWithdrawalArg {
    Keep,
    Erase,
}

pub fn run(args: CampaignArgs) -> Result<()> {
    let guidelines = text_or_file("--guidelines", args.guidelines)?;
    let consent = args
        .consent
        .map(|c| text_or_file("--consent", c))
        .transpose()?;
    // Checked before the campaign exists, so a bad file creates nothing.
    let arena = args.arena.as_deref().map(read_arena).transpose()?;
    let store = Store::open(&args.db)?;
    let (campaign, links) = store.create_campaign(NewCampaign {
        name: args.name,
        guidelines,
        consent,
        overlap: args.overlap,
        annotators: args.annotators,
        policy: CampaignPolicy {
            on_withdrawal: match args.on_withdrawal {
                OnWithdrawalArg::Keep => OnWithdrawal::Keep,
                OnWithdrawalArg::Erase => OnWithdrawal::Erase,
            },
            min_gold_accuracy: args.min_gold_accuracy,
        },
    })?;
    println!("campaign {} created", campaign.name);
    for link in &links {
        println!("{}\t{}", link.name, link.url(&args.base_url));
    }
    if let Some(arena) = arena {
        let models = arena.models.len();
        store.set_arena(campaign.id, arena)?;
        println!("campaign {} is an arena of {models} models", campaign.name);
    }
    Ok(())
}

/// A text flag's value, or the contents of FILE for `@FILE`.
fn text_or_file(flag: &str, value: String) -> Result<String> {
    match value.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("{flag}: cannot read {path}"))
        }
        None => Ok(value),
    }
}

/// An arena config file; errors name the file (and serde's line, column and field).
fn read_arena(path: &Path) -> Result<ArenaConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--arena: cannot read {}", path.display()))?;
    let config: ArenaConfig = serde_json::from_str(&text)
        .with_context(|| format!("--arena: {} is not an arena config", path.display()))?;
    config
        .validate()
        .with_context(|| format!("--arena: {}", path.display()))?;
    Ok(config)
}
