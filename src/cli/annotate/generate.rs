//! `tiller annotate generate`: two answers per prompt (one model sampled twice, or two
//! models) queued as a campaign's items; without prompts, fills the items that wait for
//! answers. The one annotate subcommand that needs a model.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use tiller_annotate::{NewItem, Prompt, Store};
use tiller_data::read_rows;

use crate::pipeline::answer_pairs::{prompt_of, sample_pairs, PairSampling};

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

pub fn run(args: GenerateArgs) -> Result<()> {
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
