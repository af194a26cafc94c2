//! What the online-RL commands share: a progress bar with reward and KL (the message is
//! `progress::rl_message`, which the pipeline's RL stages show too) and the end-of-run
//! summary.

use tiller_policy::rl::run::{RlProgress, RlSummary};

use crate::progress;

/// Runs `train` with a progress bar showing the step's mean reward and KL.
pub fn with_progress<T, E>(
    what: &str,
    train: impl FnOnce(&mut dyn FnMut(&RlProgress)) -> Result<T, E>,
) -> Result<T, E> {
    let bar = progress::bar(0, what);
    let out = train(&mut |p: &RlProgress| {
        bar.set_length(p.total_steps);
        bar.set_position(p.step);
        bar.set_message(progress::rl_message(p));
    });
    bar.finish_and_clear();
    out
}

pub fn print_summary(summary: &RlSummary) {
    let (n, first, last) = summary.reward_first_last().unwrap_or((1, 0.0, 0.0));
    println!(
        "trained {} steps; mean reward {:.3} (first {n} steps) -> {:.3} (last {n}); \
         rollouts {:.0} tokens/s; time generation {:.0}s, scoring {:.1}s, training {:.0}s; model in {}",
        summary.steps,
        first,
        last,
        summary.rollout_tokens_per_second,
        summary.seconds_generation,
        summary.seconds_scoring,
        summary.seconds_training,
        summary.out.display()
    );
    if summary.skipped_updates > 0 {
        println!(
            "{} updates skipped (non-finite loss or gradient)",
            summary.skipped_updates
        );
    }
}
