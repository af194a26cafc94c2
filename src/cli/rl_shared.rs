//! What `tiller grpo` and `tiller rloo` share: a progress bar with reward and KL, and the
//! end-of-run summary.

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
        let kl = p.kl.map_or(String::new(), |k| format!(" kl {k:.4}"));
        bar.set_message(format!("reward {:.3}{kl}", p.reward));
    });
    bar.finish_and_clear();
    out
}

pub fn print_summary(summary: &RlSummary) {
    let scores = &summary.mean_scores;
    let head = |n: usize| scores.iter().take(n).sum::<f64>() / n.min(scores.len()).max(1) as f64;
    let tail =
        |n: usize| scores.iter().rev().take(n).sum::<f64>() / n.min(scores.len()).max(1) as f64;
    let n = (scores.len() / 4).max(1);
    println!(
        "trained {} steps; mean reward {:.3} (first {n} steps) -> {:.3} (last {n}); \
         rollouts {:.0} tokens/s; time generation {:.0}s, scoring {:.1}s, training {:.0}s; model in {}",
        summary.steps,
        head(n),
        tail(n),
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
