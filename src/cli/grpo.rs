//! `tiller grpo --config grpo.toml`: group relative policy optimization against any reward.

use anyhow::{Context, Result};
use tiller_policy::rl::grpo::{self, GrpoConfig};

use crate::cli::rl_shared;
use crate::cli::shared::TrainerArgs;

pub fn run(args: TrainerArgs) -> Result<()> {
    let mut config = GrpoConfig::from_file(&args.config)?;
    args.apply_overrides(
        &mut config.out,
        &mut config.train.max_steps,
        &mut config.device,
    );
    let resolved = config.to_toml()?;
    let options = crate::cli::launch::train_options(&mut config.device, &resolved, args.resume)?;
    let summary = rl_shared::with_progress("grpo", |on_step| {
        grpo::train_in(&config, None, &options, on_step)
    })
    .with_context(|| format!("GRPO run from {}", args.config.display()))?;
    rl_shared::print_summary(&summary);
    if options.collective.is_main() {
        crate::cli::shared::write_curves(&summary.out)?;
    }
    Ok(())
}
