//! Progress bars on a terminal; log lines when stderr is not a terminal (a run written to
//! a file). The command line and the pipeline both draw theirs with these.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

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

/// How often a step's progress is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// A library's progress reports (tiller-eval's): one bar per step on a terminal; otherwise
/// a log line every [`LOG_EVERY`] and one when the step ends, so a long evaluation written
/// to a log file shows how far it is.
#[derive(Default)]
pub struct Bars(Option<Step>);

struct Step {
    bar: ProgressBar,
    what: String,
    /// None on a terminal (the bar shows it); else when the last line was logged.
    logged: Option<Instant>,
    started: Instant,
}

impl Step {
    fn log(&self) {
        let (done, total) = (self.bar.position(), self.bar.length().unwrap_or(0));
        let secs = self.started.elapsed().as_secs_f64();
        let rate = done as f64 / secs.max(1e-9);
        let eta = if done > 0 && done < total {
            format!(", ETA {:.0}s", (total - done) as f64 / rate)
        } else {
            String::new()
        };
        tracing::info!(
            "{}: {done}/{total} in {secs:.0}s ({rate:.2}/s{eta})",
            self.what
        );
    }
}

impl tiller_eval::Progress for Bars {
    fn start(&mut self, what: &str, total: u64) {
        let now = Instant::now();
        self.0 = Some(Step {
            bar: bar(total, what),
            what: what.to_owned(),
            logged: (!std::io::stderr().is_terminal()).then_some(now),
            started: now,
        });
    }
    fn advance(&mut self, done: u64) {
        if let Some(step) = &mut self.0 {
            step.bar.inc(done);
            if let Some(logged) = step.logged {
                if logged.elapsed() >= LOG_EVERY {
                    step.log();
                    step.logged = Some(Instant::now());
                }
            }
        }
    }
    fn finish(&mut self) {
        if let Some(step) = self.0.take() {
            if step.logged.is_some() {
                step.log();
            }
            step.bar.finish_and_clear();
        }
    }
}
