//! Progress bars on a terminal; silent (but still logged at the end) when not a terminal.
//! The command line and the pipeline both draw theirs with these.

use indicatif::{ProgressBar, ProgressStyle};
use tiller_policy::rl::run::RlProgress;

pub fn bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({per_sec}, ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// An online-RL step's bar message: its mean reward and, with a reference, its KL (the
/// `tiller ppo/grpo/rloo` commands and the pipeline's RL stages show the same).
pub fn rl_message(p: &RlProgress) -> String {
    let kl = p.kl.map_or(String::new(), |k| format!(" kl {k:.4}"));
    format!("reward {:.3}{kl}", p.reward)
}

/// A library's progress reports (tiller-eval's) drawn as one bar per step.
#[derive(Default)]
pub struct Bars(Option<ProgressBar>);

impl tiller_eval::Progress for Bars {
    fn start(&mut self, what: &str, total: u64) {
        self.0 = Some(bar(total, what));
    }
    fn advance(&mut self, done: u64) {
        if let Some(b) = &self.0 {
            b.inc(done);
        }
    }
    fn finish(&mut self) {
        if let Some(b) = self.0.take() {
            b.finish_and_clear();
        }
    }
}
