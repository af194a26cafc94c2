//! The `[train]` section every trainer shares: batch size, accumulation, length of the
//! run, and how often to log, evaluate and checkpoint.

use serde::{Deserialize, Serialize};

use crate::train::guard::OnNonFinite;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Examples (or pairs) per micro-batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Epochs over the training file, unless `max_steps` is set.
    #[serde(default = "one_f")]
    pub epochs: f64,
    /// Optimizer steps; overrides `epochs` when set.
    #[serde(default)]
    pub max_steps: Option<u64>,
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// Evaluate every this many steps (0: only before and after training).
    #[serde(default)]
    pub eval_every: u64,
    /// Checkpoint every this many steps; absent: no checkpoints (0 is an error).
    #[serde(default)]
    pub save_every: Option<u64>,
    /// Checkpoints kept (0: all).
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
    #[serde(default)]
    pub on_non_finite: OnNonFinite,
    #[serde(default = "yes")]
    pub shuffle: bool,
}

fn default_batch_size() -> usize {
    8
}
fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}
fn default_log_every() -> u64 {
    10
}
fn default_keep() -> usize {
    2
}
fn yes() -> bool {
    true
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch_size: default_batch_size(),
            grad_accum: one(),
            epochs: one_f(),
            max_steps: None,
            log_every: default_log_every(),
            eval_every: 0,
            save_every: None,
            keep_checkpoints: default_keep(),
            on_non_finite: OnNonFinite::default(),
            shuffle: yes(),
        }
    }
}

impl TrainConfig {
    /// Whether step `step` (1-based) writes a checkpoint.
    pub fn saves_at(&self, step: u64) -> bool {
        self.save_every
            .is_some_and(|every| every > 0 && step % every == 0)
    }

    /// Whether step `step` logs: every `log_every` steps and the last one.
    pub fn logs_at(&self, step: u64, total_steps: u64) -> bool {
        step % self.log_every.max(1) == 0 || step == total_steps
    }

    /// Whether step `step` evaluates between the evaluations before and after the run.
    pub fn evals_at(&self, step: u64, total_steps: u64) -> bool {
        self.eval_every > 0 && step % self.eval_every == 0 && step < total_steps
    }

    /// Optimizer steps of the run: `max_steps`, or `epochs` over `batches_per_epoch`.
    pub fn total_steps(&self, batches_per_epoch: usize) -> u64 {
        match self.max_steps {
            Some(steps) => steps,
            None => ((self.epochs * batches_per_epoch as f64) / self.grad_accum as f64)
                .ceil()
                .max(1.0) as u64,
        }
    }
}
