//! `tiller bench engine`: what the decode engine's two batching gains each bring, measured
//! on their own with the same outputs asserted both ways (`EngineOptions`):
//! - finished-row dropping, on rows whose output lengths differ widely (EOS allowed, each
//!   row's max_new_tokens drawn from a spread), against the old fixed batch (off: every row
//!   computed until the longest ends);
//! - prefix sharing, on GRPO-style groups (a few prompts × n seeded samples), against
//!   prefilling the prompt once per sample.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use tiller_data::Tokenizer;
use tiller_model::generate::row_seed;
use tiller_model::{CausalLm, Engine, EngineOptions, Event, Sampling, SeqParams};

use super::chat_prompts;
use crate::cli::shared::ModelArgs;

#[derive(Args, Debug)]
pub struct EngineBenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Rows of the dropping ablation (the bench's chat prompts, cycled).
    #[arg(long, default_value_t = 16)]
    rows: usize,
    /// Shortest and longest max_new_tokens of the dropping ablation's rows.
    #[arg(long, default_value_t = 8)]
    min_new_tokens: usize,
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Prompts and samples per prompt of the prefix-sharing ablation.
    #[arg(long, default_value_t = 4)]
    groups: usize,
    #[arg(long, default_value_t = 8)]
    n: usize,
    /// max_new_tokens of each group sample (sampled at temperature 1, EOS allowed).
    #[arg(long, default_value_t = 64)]
    group_max_new_tokens: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Write all figures as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One engine run: what it produced and what it cost.
#[derive(Debug, Serialize)]
pub struct EngineRun {
    pub ablation: &'static str,
    pub drop_finished: bool,
    pub share_prefix: bool,
    pub seconds: f64,
    pub generated_tokens: usize,
    pub tokens_per_s: f64,
    /// Seconds of the first step (admission: every prompt's prefill, plus the first
    /// decode step).
    pub first_step_seconds: f64,
    /// Rows computed, summed over decode steps (finished rows kept count too).
    pub row_steps: usize,
    /// Prompt tokens prefilled (each group's prompt once with sharing, n times without).
    pub prefilled_tokens: usize,
    #[serde(skip)]
    tokens: Vec<Vec<u32>>,
}

pub fn run(args: EngineBenchArgs) -> Result<()> {
    if args.rows == 0 || args.groups == 0 || args.n == 0 || args.min_new_tokens == 0 {
        bail!("--rows, --groups, --n and --min-new-tokens must be at least 1");
    }
    if args.max_new_tokens < args.min_new_tokens {
        bail!("--max-new-tokens must be at least --min-new-tokens");
    }
    let (lm, tokenizer) = args.model.load()?;
    let prompts = chat_prompts(&tokenizer)?;
    let mut stops = lm.config.eos_token_ids();
    stops.push(tokenizer.eos_id);
    let params = |max_new_tokens, sampling, seed| SeqParams {
        max_new_tokens,
        sampling,
        seed,
        stop_token_ids: stops.clone(),
        stop_strings: vec![],
        top_logprobs: 0,
    };

    // (a) Rows of very different lengths: max_new_tokens spread evenly over
    // [min, max], interleaved so long and short rows sit side by side.
    let spread = args.max_new_tokens - args.min_new_tokens;
    let rows: Vec<Request> = (0..args.rows)
        .map(|i| {
            let k = (i * 7) % args.rows;
            let max_new = args.min_new_tokens + spread * k / (args.rows - 1).max(1);
            let prompt = prompts[i % prompts.len()].clone();
            (prompt, vec![params(max_new, Sampling::Greedy, 0)])
        })
        .collect();
    // (b) GRPO-style groups: n seeded samples per prompt, as a rollout seeds its rows.
    let hot = Sampling::Random {
        temperature: 1.0,
        top_k: None,
        top_p: None,
    };
    let groups: Vec<Request> = (0..args.groups)
        .map(|g| {
            let samples = (0..args.n)
                .map(|k| {
                    let seed = row_seed(args.seed, g * args.n + k);
                    params(args.group_max_new_tokens, hot, seed)
                })
                .collect();
            (prompts[g % prompts.len()].clone(), samples)
        })
        .collect();

    let on = EngineOptions::default();
    let keep = EngineOptions {
        drop_finished: false,
        ..on
    };
    let unshared = EngineOptions {
        share_prefix: false,
        ..on
    };
    measure(&lm, &tokenizer, "warm-up", on, &rows[..1])?;
    let mut figures = vec![];
    for (ablation, requests, off) in [("dropping", &rows, keep), ("prefix", &groups, unshared)] {
        // Off first, then on, so a cold cache never favours the real behaviour.
        let without = measure(&lm, &tokenizer, ablation, off, requests)?;
        let with = measure(&lm, &tokenizer, ablation, on, requests)?;
        if let Some(i) = (0..with.tokens.len()).find(|&i| with.tokens[i] != without.tokens[i]) {
            bail!(
                "{ablation}: sequence {i} differs with the gain on and off ({} vs {} tokens)",
                with.tokens[i].len(),
                without.tokens[i].len()
            );
        }
        for r in [&without, &with] {
            println!(
                "{ablation:<8} drop_finished={:<5} share_prefix={:<5}: {:>7.2} s, {:>5} tokens, {:>7.1} tok/s, first step {:.2} s, {} row-steps, {} prompt tokens prefilled",
                r.drop_finished, r.share_prefix, r.seconds, r.generated_tokens, r.tokens_per_s,
                r.first_step_seconds, r.row_steps, r.prefilled_tokens
            );
        }
        println!(
            "{ablation:<8} gain: {:.2}x tokens/s, same tokens in all {} sequences",
            with.tokens_per_s / without.tokens_per_s.max(1e-9),
            with.tokens.len()
        );
        figures.extend([without, with]);
    }
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&figures)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

/// A prompt and one `SeqParams` per sample.
type Request = (Vec<u32>, Vec<SeqParams>);

/// Runs `requests` to the end on one engine with room for all of them (a fixed batch
/// when dropping is off) and times it.
fn measure(
    lm: &CausalLm,
    tokenizer: &Tokenizer,
    ablation: &'static str,
    options: EngineOptions,
    requests: &[Request],
) -> Result<EngineRun> {
    let total: usize = requests.iter().map(|(_, s)| s.len()).sum();
    let started = Instant::now();
    let mut engine = Engine::with_options(lm, tokenizer, total, options);
    let mut order = vec![];
    for (prompt, samples) in requests {
        order.extend(engine.add(prompt.clone(), samples.clone())?);
    }
    let mut done = std::collections::HashMap::new();
    let (mut row_steps, mut first_step_seconds) = (0, None);
    while !engine.is_idle() {
        for event in engine.step()? {
            if let Event::Finished { id, generated, .. } = event {
                done.insert(id, generated.tokens);
            }
        }
        first_step_seconds.get_or_insert(started.elapsed().as_secs_f64());
        row_steps += engine.running();
    }
    let seconds = started.elapsed().as_secs_f64();
    let tokens: Vec<Vec<u32>> = order
        .iter()
        .map(|id| done.remove(id).context("a sequence never finished"))
        .collect::<Result<_>>()?;
    let generated_tokens = tokens.iter().map(Vec::len).sum();
    let prefilled_tokens = requests
        .iter()
        .map(|(p, s)| p.len() * if options.share_prefix { 1 } else { s.len() })
        .sum();
    Ok(EngineRun {
        ablation,
        drop_finished: options.drop_finished,
        share_prefix: options.share_prefix,
        seconds,
        generated_tokens,
        tokens_per_s: generated_tokens as f64 / seconds.max(1e-9),
        first_step_seconds: first_step_seconds.unwrap_or(0.0),
        row_steps,
        prefilled_tokens,
        tokens,
    })
}
