//! A trainer's progress bar inside a pipeline: created at the first step (the trainers
//! know their total only then), positioned correctly on a resumed run.

use indicatif::ProgressBar;

pub struct StepBar {
    label: String,
    bar: Option<ProgressBar>,
}

impl StepBar {
    pub fn new(label: &str) -> Self {
        StepBar {
            label: label.to_owned(),
            bar: None,
        }
    }

    pub fn update(&mut self, step: u64, total: u64, message: String) {
        let bar = self.bar.get_or_insert_with(|| {
            let bar = crate::progress::bar(total, &self.label);
            bar.set_position(step.saturating_sub(1));
            bar.reset_eta();
            bar
        });
        bar.set_length(total);
        bar.set_position(step);
        bar.set_message(format!("{} {message}", self.label));
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}
