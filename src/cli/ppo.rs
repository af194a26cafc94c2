//! `tiller ppo --config ppo.toml`: PPO with a value head against any configured reward.

use anyhow::{Context, Result};
use tiller_policy::rl::ppo::{self, PpoConfig};

use crate::cli::rl_shared;
use crate::cli::shared::TrainerArgs;

pub fn run(args: TrainerArgs) -> Result<()> {
    let mut config = PpoConfig::from_file(&args.config)?;
    args.apply_overrides(
        &mut config.out,
        &mut config.train.max_steps,
        &mut config.device,
    );
    let resolved = config.to_toml()?;
    let options = crate::cli::launch::train_options(&mut config.device, &resolved, args.resume)?;
    let summary = rl_shared::with_progress("ppo", |on_step| {
        ppo::train_in(&config, None, &options, on_step)
    })
    .with_context(|| format!("PPO run from {}", args.config.display()))?;
    rl_shared::print_summary(&summary);
    println!(
        "critic (value model) in {}",
        summary.out.join(ppo::CRITIC_DIR).display()
    );
    if options.collective.is_main() {
        crate::cli::shared::write_curves(&summary.out)?;
    }
    Ok(())
}
