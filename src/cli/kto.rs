//! `tiller kto --config kto.toml`: KTO from unpaired `prompt`/`completion`/`label` feedback.

use anyhow::{Context, Result};
use tiller_policy::kto::{self, KtoConfig};

use crate::cli::shared::TrainerArgs;
use crate::progress;

pub fn run(args: TrainerArgs) -> Result<()> {
    let mut config = KtoConfig::from_file(&args.config)?;
    args.apply_overrides(
        &mut config.out,
        &mut config.train.max_steps,
        &mut config.device,
    );
    let resolved = config.to_toml()?;
    let options = crate::cli::launch::train_options(&mut config.device, &resolved, args.resume)?;
    let bar = progress::bar(0, "kto");
    let summary = kto::train_in(&config, &options, &mut |p| {
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
    if options.collective.is_main() {
        crate::cli::shared::write_curves(&summary.out)?;
    }
    Ok(())
}
