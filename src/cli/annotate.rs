//! `tiller annotate ...`: run the annotation server, set up campaigns, queue model answers,
//! and export votes as preference pairs. The server and store live in tiller-annotate
//! (no libtorch); this module adds what needs a model: `generate`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use tiller_annotate::{
    export, serve, Aggregation, Answer, ExportOptions, Message, NewCampaign, NewItem, Prompt,
    ServeOptions, Store, TiePolicy,
};
use tiller_model::{GenerationConfig, Sampling};

use super::shared::{generate_all, load_model};
use tiller_data::read_rows;

#[derive(Subcommand)]
pub enum AnnotateCommand {
    /// Serve the annotator and admin pages (loopback unless --bind says otherwise).
    Serve(ServeArgs),
    /// Create a campaign and print its annotator links.
    Campaign(CampaignArgs),
    /// Sample two answers per prompt and queue them as items of a campaign.
    Generate(GenerateArgs),
    /// Export votes as TRL prompt/chosen/rejected pairs (.jsonl or .parquet) plus a manifest.
    Export(ExportArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long)]
    db: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
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
            runtime.block_on(serve(
                &args.db,
                ServeOptions {
                    bind: args.bind,
                    ..ServeOptions::default()
                },
            ))?;
            Ok(())
        }
        AnnotateCommand::Campaign(args) => campaign(args),
        AnnotateCommand::Generate(args) => generate(args),
        AnnotateCommand::Export(args) => {
            let options = ExportOptions {
                campaign: args.campaign,
                ties: match args.ties {
                    TiesArg::Drop => TiePolicy::Drop,
                    TiesArg::Separate => TiePolicy::Separate,
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

fn campaign(args: CampaignArgs) -> Result<()> {
    let guidelines = match args.guidelines.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
        }
        None => args.guidelines,
    };
    let store = Store::open(&args.db)?;
    let (campaign, links) = store.create_campaign(NewCampaign {
        name: args.name,
        guidelines,
        consent: None,
        overlap: args.overlap,
        annotators: args.annotators,
    })?;
    println!("campaign {} created", campaign.name);
    for link in &links {
        println!("{}\t{}", link.name, link.url(&args.base_url));
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
    let mut answers: Vec<Vec<Answer>> = vec![Vec::new(); prompts.len()];
    let runs: Vec<(usize, &PathBuf)> = match args.models.as_slice() {
        [one] => vec![(0, one), (1, one)],
        several => several.iter().enumerate().collect(),
    };
    let loaded = args
        .models
        .iter()
        .map(|m| load_model(m, &args.device, args.dtype))
        .collect::<tiller_eval::Result<Vec<_>>>()?;
    for (sample, model) in runs {
        let (lm, tokenizer) = &loaded[if args.models.len() == 1 { 0 } else { sample }];
        let template = tokenizer.require_chat_template()?;
        let ids = prompts
            .iter()
            .map(|m| Ok(tokenizer.encode(&template.apply(m, true)?, false)?))
            .collect::<Result<Vec<_>>>()?;
        let mut stop_token_ids = lm.config.eos_token_ids();
        stop_token_ids.push(tokenizer.eos_id);
        let config = GenerationConfig {
            max_new_tokens: args.max_new_tokens,
            sampling: Sampling::from_options(args.temperature, None, Some(args.top_p)),
            seed: args.seed.wrapping_add(sample as u64),
            stop_token_ids,
            stop_strings: vec![],
        };
        let tag = match args.models.len() {
            1 => format!("{}#{}", model.display(), sample + 1),
            _ => model.display().to_string(),
        };
        for (i, g) in generate_all(
            lm,
            tokenizer,
            &ids,
            &config,
            args.batch_size,
            &format!("answer {}", sample + 1),
        )?
        .into_iter()
        .enumerate()
        {
            answers[i].push(Answer {
                model: tag.clone(),
                text: g.text,
            });
        }
    }
    let mut new_items = Vec::new();
    let mut filled = 0;
    for ((item, messages), pair) in pending.into_iter().zip(prompts).zip(answers) {
        let pair: [Answer; 2] = pair
            .try_into()
            .map_err(|_| anyhow::anyhow!("expected two answers per prompt"))?;
        match item {
            Some(id) => {
                store.set_answers(id, pair)?;
                filled += 1;
            }
            None => new_items.push(NewItem {
                external_id: None,
                prompt: Prompt::Messages(
                    messages
                        .into_iter()
                        .map(|m| Message {
                            role: m.role,
                            content: m.content,
                        })
                        .collect(),
                ),
                answers: Some(pair),
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
