//! `tiller dpo --config dpo.toml`: direct preference optimization and its family.

use anyhow::{Context, Result};
use tiller_policy::dpo::{self, DpoConfig};

use crate::cli::shared::TrainerArgs;
use crate::progress;

pub fn run(args: TrainerArgs) -> Result<()> {
    let mut config = DpoConfig::from_file(&args.config)?;
    args.apply_overrides(
        &mut config.out,
        &mut config.train.max_steps,
        &mut config.device,
    );
    let resolved = config.to_toml()?;
    let options = crate::cli::launch::train_options(&mut config.device, &resolved, args.resume)?;
    let bar = progress::bar(0, "dpo");
    let summary = dpo::train_in(&config, &options, &mut |p| {
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
    if options.collective.is_main() {
        crate::cli::shared::write_curves(&summary.out)?;
    }
    Ok(())
}
