//! `tiller dpo --config dpo.toml`: direct preference optimization and its family.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tiller_policy::dpo::{self, DpoConfig};

use crate::progress;

#[derive(Args)]
pub struct DpoArgs {
    /// A TOML file (see examples/dpo.toml); unknown keys are errors.
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

pub fn run(args: DpoArgs) -> Result<()> {
    let mut config = DpoConfig::from_file(&args.config)?;
    if let Some(out) = args.out {
        config.out = out;
    }
    if let Some(steps) = args.max_steps {
        config.train.max_steps = Some(steps);
    }
    if let Some(device) = args.device {
        config.device = device;
    }
    let bar = progress::bar(0, "dpo");
    let summary = dpo::train(&config, args.resume, &mut |p| {
        bar.set_length(p.total_steps);
        bar.set_position(p.step);
        let acc = p
            .eval_accuracy
            .map_or(String::new(), |a| format!(" eval acc {a:.3}"));
        bar.set_message(format!("loss {:.4}{acc}", p.loss));
    })
    .with_context(|| format!("DPO run from {}", args.config.display()))?;
    bar.finish_and_clear();
    println!(
        "trained {} steps ({:.0} tokens/s, {} reference forward passes); model in {}",
        summary.steps,
        summary.train_tokens_per_second,
        summary.reference_forwards,
        summary.out.display()
    );
    if let (Some(b), Some(a)) = (summary.eval_before, summary.eval_after) {
        println!(
            "held-out rewards/accuracies {:.3} -> {:.3}, loss {:.4} -> {:.4}, rewards/margins {:.3} -> {:.3}",
            b.accuracy,
            a.accuracy,
            b.loss,
            a.loss,
            b.rewards_chosen - b.rewards_rejected,
            a.rewards_chosen - a.rewards_rejected
        );
    }
    crate::cli::shared::write_curves(&summary.out)?;
    Ok(())
}
