//! Progress bars on a terminal; silent (but still logged at the end) when not a terminal.

use indicatif::{ProgressBar, ProgressStyle};

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
