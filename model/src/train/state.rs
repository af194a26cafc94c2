//! Checkpoints that resume exactly, written so a crash never leaves one that looks valid.
//!
//! A checkpoint is `<out>/checkpoint-<step>/`: the trainer's weights (an HF directory or a
//! PEFT adapter), `optimizer.safetensors` and `train_state.json`. It is written with
//! [`crate::atomic::write_dir`] (a hidden temporary directory, every file fsynced, then
//! renamed into place): `checkpoint-<step>` either exists complete or not at all. [`latest_checkpoint`] only considers directories with a train state.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tiller_data::DataPosition;

use crate::error::{ModelError, Result};
use crate::train::schedule::ScheduleConfig;

/// Bumped whenever [`TrainState`]'s meaning changes; older states are refused.
pub const TRAIN_STATE_VERSION: u32 = 1;
pub const TRAIN_STATE_FILE: &str = "train_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Everything besides weights and moments that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    pub format_version: u32,
    /// Optimizer steps completed (skipped non-finite steps included).
    pub step: u64,
    /// Steps where the optimizer actually updated (AdamW's bias-correction count).
    pub optimizer_steps: u64,
    /// The run's total steps (the schedule depends on it).
    pub total_steps: u64,
    pub schedule: ScheduleConfig,
    /// Where the next training batch starts.
    pub data: DataPosition,
    /// The trainer's RNG state (SplitMix64), from which per-step torch seeds are drawn.
    pub rng: u64,
    /// Real tokens seen so far (TRL's `num_tokens`).
    pub num_tokens: u64,
}

impl TrainState {
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(TRAIN_STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let state: TrainState = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: path.clone(),
            source,
        })?;
        if state.format_version != TRAIN_STATE_VERSION {
            return Err(ModelError::Config {
                path,
                message: format!(
                    "train state format_version {} is not supported (expected {TRAIN_STATE_VERSION})",
                    state.format_version
                ),
            });
        }
        Ok(state)
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(TRAIN_STATE_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|source| ModelError::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))
    }
}

/// `<out>/checkpoint-<step>`.
pub fn checkpoint_dir(out: &Path, step: u64) -> PathBuf {
    out.join(format!("checkpoint-{step}"))
}

/// Complete checkpoints in `out` (with a train state), by step, oldest first.
pub fn list_checkpoints(out: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(found);
    };
    for entry in entries {
        let path = entry.map_err(|e| ModelError::io(out, e))?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("checkpoint-"))
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(step) = step {
            if path.join(TRAIN_STATE_FILE).is_file() {
                found.push((step, path));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The newest complete checkpoint in `out`, if any.
pub fn latest_checkpoint(out: &Path) -> Result<Option<PathBuf>> {
    Ok(list_checkpoints(out)?.pop().map(|(_, p)| p))
}

/// Deletes all but the newest `keep` checkpoints (0 keeps all).
pub fn prune_checkpoints(out: &Path, keep: usize) -> Result<()> {
    if keep == 0 {
        return Ok(());
    }
    let all = list_checkpoints(out)?;
    for (_, path) in all.iter().take(all.len().saturating_sub(keep)) {
        std::fs::remove_dir_all(path).map_err(|e| ModelError::io(path, e))?;
    }
    Ok(())
}

/// The data order and run state of a trainer: fresh, or restored from the checkpoint
/// `resume` — whose optimizer moments are loaded into `optimizer`. A checkpoint from a run
/// with another length or schedule is refused (its learning rates would not line up).
pub fn start_or_resume(
    num_examples: usize,
    train: &crate::train::TrainConfig,
    seed: u64,
    schedule: ScheduleConfig,
    optimizer: &mut crate::train::AdamW,
    resume: Option<&Path>,
) -> Result<(tiller_data::BatchSampler, TrainState)> {
    let order = tiller_data::OrderConfig {
        batch_size: train.batch_size,
        seed,
        shuffle: train.shuffle,
        drop_last: false,
    };
    let sampler = tiller_data::BatchSampler::new(num_examples, order)?;
    let total_steps = train.total_steps(sampler.batches_per_epoch());
    let Some(dir) = resume else {
        let state = TrainState {
            format_version: TRAIN_STATE_VERSION,
            step: 0,
            optimizer_steps: 0,
            total_steps,
            schedule,
            data: sampler.position(),
            rng: seed,
            num_tokens: 0,
        };
        return Ok((sampler, state));
    };
    let saved = TrainState::read(dir)?;
    if saved.total_steps != total_steps || saved.schedule != schedule {
        return Err(ModelError::InvalidArgument(format!(
            "{}: saved run has {} total steps and schedule {:?}; this config gives {total_steps} and {schedule:?}",
            dir.display(),
            saved.total_steps,
            saved.schedule,
        )));
    }
    let sampler = tiller_data::BatchSampler::resume(num_examples, order, saved.data)?;
    optimizer.load(&dir.join(OPTIMIZER_FILE), saved.optimizer_steps)?;
    tracing::info!("resumed from {} at step {}", dir.display(), saved.step);
    Ok((sampler, saved))
}

/// With `resume`, the newest complete checkpoint in `out` — an error when there is none, so
/// `--resume` never silently starts over.
pub fn resume_checkpoint(out: &Path, resume: bool) -> Result<Option<PathBuf>> {
    if !resume {
        return Ok(None);
    }
    latest_checkpoint(out)?.map(Some).ok_or_else(|| {
        ModelError::InvalidArgument(format!(
            "--resume: no complete checkpoint-* directory in {}",
            out.display()
        ))
    })
}
