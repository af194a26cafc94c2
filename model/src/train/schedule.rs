//! Learning-rate schedules with linear warmup, as transformers' `get_scheduler` defines them.

use serde::{Deserialize, Serialize};

/// The shape of the schedule after warmup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// The peak rate throughout.
    Constant,
    /// Linear decay to 0 at the last step (transformers' default).
    #[default]
    Linear,
    /// Half a cosine from the peak to 0 at the last step.
    Cosine,
}

/// `[schedule]` in a trainer config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    #[serde(default)]
    pub kind: Schedule,
    /// Steps of linear warmup from 0 to the peak rate.
    #[serde(default)]
    pub warmup_steps: u64,
}

impl ScheduleConfig {
    /// The multiplier of the peak rate for the optimizer step that follows `step` steps
    /// already taken (0 for the first), out of `total` steps.
    pub fn factor(&self, step: u64, total: u64) -> f64 {
        let warmup = self.warmup_steps;
        if step < warmup {
            return step as f64 / warmup.max(1) as f64;
        }
        let decay_steps = total.saturating_sub(warmup).max(1) as f64;
        let progress = (step - warmup) as f64 / decay_steps;
        match self.kind {
            Schedule::Constant => 1.0,
            Schedule::Linear => (1.0 - progress).max(0.0),
            Schedule::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
        }
    }

    /// The learning rate for the step after `step` steps, from peak rate `lr`.
    pub fn lr(&self, lr: f64, step: u64, total: u64) -> f64 {
        lr * self.factor(step, total)
    }
}
