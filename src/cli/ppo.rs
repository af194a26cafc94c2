//! `tiller ppo --config ppo.toml`: PPO with a value head against any configured reward.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tiller_policy::rl::ppo::{self, PpoConfig};

use crate::progress;

#[derive(Args)]
pub struct PpoArgs {
    /// A TOML file (see examples/ppo.toml); unknown keys are errors.
    #[arg(long)]
    config: PathBuf,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    max_steps: Option<u64>,
    #[arg(long)]
    device: Option<String>,
    /// Continue from the newest checkpoint in the output directory.
    #[arg(long)]
    resume: bool,
}

pub fn run(args: PpoArgs) -> Result<()> {
    let mut config = PpoConfig::from_file(&args.config)?;
    if let Some(out) = args.out {
        config.out = out;
    }
    if let Some(steps) = args.max_steps {
        config.train.max_steps = Some(steps);
    }
    if let Some(device) = args.device {
        config.device = device;
    }
    let bar = progress::bar(0, "ppo");
    let summary = ppo::train(&config, args.resume, &mut |p| {
        bar.set_length(p.total_steps);
        bar.set_position(p.step);
        bar.set_message(format!("reward {:.3} kl {:.3}", p.score, p.kl));
    })
    .with_context(|| format!("PPO run from {}", args.config.display()))?;
    bar.finish_and_clear();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let k = summary.scores.len().clamp(1, 3);
    println!(
        "trained {} steps ({:.1} rollout tokens/s); reward {:.3} -> {:.3} (mean of first/last {k} steps), kl {:.3} -> {:.3}; actor in {}, critic in {}",
        summary.steps,
        summary.rollout_tokens_per_second,
        mean(&summary.scores[..k.min(summary.scores.len())]),
        mean(&summary.scores[summary.scores.len().saturating_sub(k)..]),
        mean(&summary.kls[..k.min(summary.kls.len())]),
        mean(&summary.kls[summary.kls.len().saturating_sub(k)..]),
        summary.out.display(),
        summary.out.join(ppo::CRITIC_DIR).display()
    );
    Ok(())
}
