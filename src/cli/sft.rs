//! `tiller sft --config sft.toml`: supervised fine-tuning (full or LoRA).

use anyhow::{Context, Result};
use tiller_policy::sft::{self, SftConfig};

use crate::cli::shared::TrainerArgs;

pub fn run(args: TrainerArgs) -> Result<()> {
    let mut config = SftConfig::from_file(&args.config)?;
    args.apply_overrides(
        &mut config.out,
        &mut config.train.max_steps,
        &mut config.device,
    );
    let resolved = config.to_toml()?;
    let options = crate::cli::launch::train_options(&mut config.device, &resolved, args.resume)?;
    let mut bar = None;
    let summary = sft::train_in(&config, &options, &mut |p| {
        let bar = bar.get_or_insert_with(|| {
            let bar = crate::progress::bar(p.total_steps, "sft");
            bar.set_position(p.step.saturating_sub(1));
            bar.reset_eta();
            bar
        });
        bar.set_position(p.step);
        let eval = p
            .eval_loss
            .map_or(String::new(), |e| format!(" eval {e:.3}"));
        bar.set_message(format!("loss {:.3}{eval}", p.loss));
    })
    .with_context(|| format!("sft run {} failed", config.out.display()))?;
    if let Some(bar) = bar {
        bar.finish();
    }
    let fmt = |l: Option<f64>| l.map_or("-".to_owned(), |l| format!("{l:.4}"));
    tracing::info!(
        "sft done: {} steps, eval loss {} -> {}, {:.0} train tokens/s, {} skipped; model in {}",
        summary.steps,
        fmt(summary.eval_loss_before),
        fmt(summary.eval_loss_after),
        summary.train_tokens_per_second,
        summary.skipped_steps,
        summary.out.display()
    );
    if options.collective.is_main() {
        crate::cli::shared::write_curves(&summary.out)?;
    }
    Ok(())
}
