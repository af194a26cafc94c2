//! `tiller ppo --config ppo.toml`: PPO with a value head against any configured reward.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tiller_policy::rl::ppo::{self, PpoConfig};

use crate::cli::rl_shared;

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
    let summary =
        rl_shared::with_progress("ppo", |on_step| ppo::train(&config, args.resume, on_step))
            .with_context(|| format!("PPO run from {}", args.config.display()))?;
    rl_shared::print_summary(&summary);
    println!(
        "critic (value model) in {}",
        summary.out.join(ppo::CRITIC_DIR).display()
    );
    crate::cli::shared::write_curves(&summary.out)?;
    Ok(())
}
