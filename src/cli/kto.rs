//! `tiller kto --config kto.toml`: KTO from unpaired `prompt`/`completion`/`label` feedback.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tiller_policy::kto::{self, KtoConfig};

use crate::progress;

#[derive(Args)]
pub struct KtoArgs {
    /// A TOML file (see examples/kto.toml); unknown keys are errors.
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

pub fn run(args: KtoArgs) -> Result<()> {
    let mut config = KtoConfig::from_file(&args.config)?;
    if let Some(out) = args.out {
        config.out = out;
    }
    if let Some(steps) = args.max_steps {
        config.train.max_steps = Some(steps);
    }
    if let Some(device) = args.device {
        config.device = device;
    }
    let bar = progress::bar(0, "kto");
    let summary = kto::train(&config, args.resume, &mut |p| {
        bar.set_length(p.total_steps);
        bar.set_position(p.step);
        let margin = p
            .eval_margin
            .map_or(String::new(), |m| format!(" eval margin {m:.3}"));
        bar.set_message(format!("loss {:.4}{margin}", p.loss));
    })
    .with_context(|| format!("KTO run from {}", args.config.display()))?;
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
            "held-out loss {:.4} -> {:.4}, rewards/margins {:.3} -> {:.3}, \
             rewards/chosen {:.3} -> {:.3}, rewards/rejected {:.3} -> {:.3}, kl {:.4} -> {:.4}",
            b.loss,
            a.loss,
            b.margin(),
            a.margin(),
            b.rewards_chosen,
            a.rewards_chosen,
            b.rewards_rejected,
            a.rewards_rejected,
            b.kl,
            a.kl
        );
    }
    crate::cli::shared::write_curves(&summary.out)?;
    Ok(())
}
