//! `tiller annotate ...`: run the annotation server, set up campaigns, queue model answers,
//! export votes as preference pairs (or KTO rows), rotate the admin token, record a
//! withdrawal of consent. The server and store live in tiller-annotate (no libtorch);
//! this module adds what needs a model: `generate`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use tiller_annotate::store::RecordedBy;
use tiller_annotate::{
    export, serve, Aggregation, ArenaConfig, CampaignPolicy, ExportFormat, ExportOptions,
    NewCampaign, NewItem, OnWithdrawal, Prompt, ServeOptions, Store, TiePolicy,
};

use crate::pipeline::answer_pairs::{prompt_of, sample_pairs, PairSampling};
use tiller_data::read_rows;

#[derive(Subcommand)]
pub enum AnnotateCommand {
    /// Serve the annotator and admin pages (loopback unless --bind says otherwise).
    Serve(ServeArgs),
    /// Create a campaign and print its annotator links.
    Campaign(CampaignArgs),
    /// Sample two answers per prompt and queue them as items of a campaign.
    Generate(GenerateArgs),
    /// Export votes as TRL prompt/chosen/rejected pairs or KTO rows (.jsonl or .parquet)
    /// plus a manifest.
    Export(ExportArgs),
    /// Replace the admin token with a new one and print the new admin link (once).
    AdminToken(AdminTokenArgs),
    /// Record that an annotator withdrew consent (their votes leave every export).
    Withdraw(WithdrawArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// The store: a SQLite file (created if missing), or `postgres://USER@HOST[:PORT]/DB`
    /// (no TLS; several servers may share one PostgreSQL database).
    #[arg(long)]
    db: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Seconds an annotator holds an item they do not act on before it returns to the queue.
    #[arg(long, default_value_t = 1800.0)]
    lease_secs: f64,
    /// Seconds a connection has to send a whole request head.
    #[arg(long, default_value_t = 10.0)]
    header_timeout_secs: f64,
    /// Seconds in-flight requests get on shutdown before connections are closed.
    #[arg(long, default_value_t = 10.0)]
    shutdown_grace_secs: f64,
    /// Connections served at once; more wait until one closes.
    #[arg(long, default_value_t = tiller_annotate::api::DEFAULT_MAX_CONNECTIONS as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
}

#[derive(Args)]
pub struct AdminTokenArgs {
    #[arg(long)]
    db: PathBuf,
    /// Base URL the link points at.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
}

#[derive(Args)]
pub struct WithdrawArgs {
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    campaign: String,
    /// The annotator's name in the campaign.
    #[arg(long)]
    annotator: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum OnWithdrawalArg {
    Keep,
    Erase,
}

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

#[derive(Args)]
pub struct GenerateArgs {
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    campaign: String,
    /// Prompts (`prompt` or `messages` rows); without it, fills the campaign's queued
    /// prompts that wait for answers.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// One model (two samples each) or two models (one answer each); repeat the flag.
    #[arg(long = "model", required = true, num_args = 1)]
    models: Vec<PathBuf>,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value = "f32")]
    dtype: tiller_model::DType,
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    #[arg(long, default_value_t = 0.95)]
    top_p: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
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

pub fn run(cmd: AnnotateCommand) -> Result<()> {
    match cmd {
        AnnotateCommand::Serve(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let mut options = ServeOptions {
                bind: args.bind,
                ..ServeOptions::default()
            };
            options.limits.lease = seconds("--lease-secs", args.lease_secs)?;
            options.limits.header_timeout =
                seconds("--header-timeout-secs", args.header_timeout_secs)?;
            options.limits.shutdown_grace =
                seconds("--shutdown-grace-secs", args.shutdown_grace_secs)?;
            options.limits.max_connections =
                usize::try_from(args.max_connections).unwrap_or(usize::MAX);
            runtime.block_on(serve(&args.db, options))?;
            Ok(())
        }
        AnnotateCommand::AdminToken(args) => {
            let store = open_existing(&args.db)?;
            let token = store.rotate_admin_token()?;
            println!(
                "admin link (shown once, keep it secret; older admin links stop working): {}/admin#token={token}",
                args.base_url.trim_end_matches('/')
            );
            Ok(())
        }
        AnnotateCommand::Withdraw(args) => {
            let store = open_existing(&args.db)?;
            let campaign = store.campaign_by_name(&args.campaign)?;
            let id = store.annotator_id(campaign.id, &args.annotator)?;
            let record = store.withdraw(id, RecordedBy::Admin)?;
            println!(
                "withdrawal recorded for {} ({}): {} votes covered{}",
                args.annotator,
                record.pseudonym,
                record.votes,
                if record.erased {
                    ", erased"
                } else {
                    ", kept out of exports"
                }
            );
            Ok(())
        }
        AnnotateCommand::Campaign(args) => campaign(args),
        AnnotateCommand::Generate(args) => generate(args),
        AnnotateCommand::Export(args) => {
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
    }
}

/// `seconds` as a duration, naming `flag` when it is negative or not finite.
fn seconds(flag: &str, seconds: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(seconds).with_context(|| format!("{flag} {seconds}"))
}

/// Opens a store that must already exist (opening creates an empty one otherwise).
fn open_existing(db: &Path) -> Result<Store> {
    if !tiller_annotate::store::exists(db) {
        bail!("--db {}: no such database", db.display());
    }
    Ok(Store::open(db)?)
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

fn campaign(args: CampaignArgs) -> Result<()> {
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

fn generate(args: GenerateArgs) -> Result<()> {
    if args.models.len() > 2 {
        bail!("--model: give one model (two samples each) or two models");
    }
    let store = Store::open(&args.db)?;
    let campaign = store.campaign_by_name(&args.campaign)?;
    // (item to fill, or a new prompt) with its chat messages.
    let (pending, prompts): (Vec<Option<i64>>, Vec<Vec<tiller_data::ChatMessage>>) =
        match &args.prompts {
            Some(path) => {
                let rows = read_rows(path)?;
                let messages = rows
                    .iter()
                    .map(|r| r.messages())
                    .collect::<tiller_data::Result<Vec<_>>>()?;
                (vec![None; messages.len()], messages)
            }
            None => store
                .pending_prompts(campaign.id)?
                .into_iter()
                .map(|p| {
                    let messages = match p.prompt {
                        Prompt::Text(t) => vec![tiller_data::ChatMessage::user(t)],
                        Prompt::Messages(m) => m
                            .into_iter()
                            .map(|m| tiller_data::ChatMessage::new(m.role, m.content))
                            .collect(),
                    };
                    (Some(p.item_id), messages)
                })
                .unzip(),
        };
    if prompts.is_empty() {
        bail!(
            "no prompts: give --prompts FILE, or queue prompts without answers in campaign {}",
            args.campaign
        );
    }
    let sampling = PairSampling {
        device: args.device.parse().context("--device")?,
        dtype: args.dtype,
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        batch_size: args.batch_size,
    };
    let answers = sample_pairs(&args.models, &prompts, &sampling)?;
    let mut new_items = Vec::new();
    let mut filled = 0;
    for ((item, messages), pair) in pending.into_iter().zip(&prompts).zip(answers) {
        match item {
            Some(id) => {
                store.set_answers(id, pair)?;
                filled += 1;
            }
            None => new_items.push(NewItem {
                external_id: None,
                prompt: prompt_of(messages),
                answers: Some(pair),
                gold: None,
            }),
        }
    }
    let added = if new_items.is_empty() {
        0
    } else {
        store.add_items(campaign.id, new_items)?.item_ids.len()
    };
    println!(
        "campaign {}: {added} items queued, {filled} waiting items filled",
        args.campaign
    );
    Ok(())
}
