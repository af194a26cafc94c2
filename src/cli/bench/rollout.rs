//! `tiller bench rollout`: one GRPO step's completions, generated exactly as `tiller grpo`
//! generates them (`tiller_policy::rl::rollout::rollout` on the decode engine: each prompt
//! repeated G times, rows seeded by `(seed, step)`, stopping at EOS), without the update.
//! `scripts/bench_rollout.sh` runs it beside TRL's GRPOTrainer generation in one run.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use tiller_data::OnBadRow;
use tiller_policy::rl::config::RolloutConfig;
use tiller_policy::rl::rollout::{load_prompts, rollout};
use tiller_policy::rl::run::step_seed;
use tiller_reward::{rules_reward, RuleConfig};

use crate::cli::shared::ModelArgs;

#[derive(Args, Debug)]
pub struct RolloutBenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompts file (a `prompt` column), as `[rollout] prompts`.
    #[arg(long, default_value = "datasets/prompts/train.jsonl")]
    prompts: PathBuf,
    /// Prompts per step (`train.batch_size` of `tiller grpo`).
    #[arg(long, default_value_t = 4)]
    prompts_per_step: usize,
    /// Completions per prompt (`grpo.num_generations`, TRL's G).
    #[arg(long, default_value_t = 8)]
    num_generations: usize,
    /// TRL's max_completion_length.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Timed steps, after one untimed warm-up step.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Debug, Serialize)]
struct RolloutFigure {
    tiller_rollout_tokens_per_second: f64,
    tiller_generation_seconds_per_step: f64,
    tiller_mean_length: f64,
    steps: usize,
    prompts_per_step: usize,
    num_generations: usize,
    max_new_tokens: usize,
    dtype: String,
}

pub fn run(args: RolloutBenchArgs) -> Result<()> {
    if args.prompts_per_step == 0 || args.num_generations == 0 || args.steps == 0 {
        bail!("--prompts-per-step, --num-generations and --steps must be at least 1");
    }
    let config = RolloutConfig {
        prompts: args.prompts.clone(),
        max_prompt_len: None,
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: 1.0,
        top_k: None,
        stop: vec![],
        generation_batch_size: None,
        samples_every: None,
        on_bad_row: OnBadRow::default(),
    };
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{e}").context("bench rollout's options"))?;
    let (lm, tokenizer) = args.model.load()?;
    let prompts = load_prompts(&config, &tokenizer)
        .with_context(|| format!("cannot read the prompts {}", args.prompts.display()))?;
    if prompts.is_empty() {
        bail!("{}: no prompts", args.prompts.display());
    }
    // The reward is scored after generation and not timed; any rule does.
    let reward = rules_reward(&[RuleConfig::Length {
        target_words: 20,
        tolerance: 5,
        weight: 1.0,
    }])?;
    let (mut seconds, mut tokens, mut rows) = (0.0, 0, 0);
    for step in 0..=args.steps {
        let first = step * args.prompts_per_step;
        let picked: Vec<usize> = (first..first + args.prompts_per_step)
            .map(|i| i % prompts.len())
            .collect();
        let generation = config.generation(
            &tokenizer,
            &lm.config,
            step_seed(args.seed, step as u64 + 1, 0),
        );
        let out = rollout(
            &lm,
            &tokenizer,
            &prompts,
            &picked,
            args.num_generations,
            &generation,
            0,
            first * args.num_generations,
            &reward,
        )?;
        println!(
            "step {step}{}: {} completions, {} tokens in {:.2} s ({:.1} tok/s)",
            if step == 0 { " (warm-up)" } else { "" },
            out.samples.len(),
            out.generated_tokens,
            out.generation_seconds,
            out.tokens_per_second()
        );
        if step > 0 {
            seconds += out.generation_seconds;
            tokens += out.generated_tokens;
            rows += out.samples.len();
        }
    }
    let figure = RolloutFigure {
        tiller_rollout_tokens_per_second: tokens as f64 / seconds.max(1e-9),
        tiller_generation_seconds_per_step: seconds / args.steps as f64,
        tiller_mean_length: tokens as f64 / rows.max(1) as f64,
        steps: args.steps,
        prompts_per_step: args.prompts_per_step,
        num_generations: args.num_generations,
        max_new_tokens: args.max_new_tokens,
        dtype: format!("{:?}", args.model.dtype).to_lowercase(),
    };
    println!("{}", serde_json::to_string(&figure)?);
    Ok(())
}
