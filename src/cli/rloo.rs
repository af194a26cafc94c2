//! `tiller rloo --config rloo.toml`: REINFORCE with a leave-one-out baseline against any reward.

use anyhow::{Context, Result};
use tiller_policy::rl::rloo::{self, RlooConfig};

use crate::cli::rl_shared;
use crate::cli::shared::TrainerArgs;

pub fn run(args: TrainerArgs) -> Result<()> {
    let mut config = RlooConfig::from_file(&args.config)?;
    args.apply_overrides(
        &mut config.out,
        &mut config.train.max_steps,
        &mut config.device,
    );
    let resolved = config.to_toml()?;
    let options = crate::cli::launch::train_options(&mut config.device, &resolved, args.resume)?;
    let summary = rl_shared::with_progress("rloo", |on_step| {
        rloo::train_in(&config, None, &options, on_step)
    })
    .with_context(|| format!("RLOO run from {}", args.config.display()))?;
    rl_shared::print_summary(&summary);
    if options.collective.is_main() {
        crate::cli::shared::write_curves(&summary.out)?;
    }
    Ok(())
}
