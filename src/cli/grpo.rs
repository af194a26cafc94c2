//! `tiller grpo --config grpo.toml`: group relative policy optimization against any reward.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tiller_policy::rl::grpo::{self, GrpoConfig};

use crate::cli::rl_shared;

#[derive(Args)]
pub struct GrpoArgs {
    /// A TOML file (see examples/grpo.toml); unknown keys are errors.
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

pub fn run(args: GrpoArgs) -> Result<()> {
    let mut config = GrpoConfig::from_file(&args.config)?;
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
        rl_shared::with_progress("grpo", |on_step| grpo::train(&config, args.resume, on_step))
            .with_context(|| format!("GRPO run from {}", args.config.display()))?;
    rl_shared::print_summary(&summary);
    crate::cli::shared::write_curves(&summary.out)?;
    Ok(())
}
