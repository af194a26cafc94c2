//! `tiller reward train` configuration (TOML; unknown keys are errors).
//!
//! ```toml
//! model = "runs/sft"              # a causal LM (the head is new) or a reward checkpoint
//! out = "runs/reward"
//! [data]
//! train = "datasets/preferences/train.jsonl"   # prompt/chosen/rejected, optional `margin`
//! eval = "datasets/preferences/eval.jsonl"
//! max_seq_len = 512
//! [train]
//! batch_size = 8                  # pairs per micro-batch
//! [optim]
//! lr = 1e-5
//! [loss]
//! center_coef = 0.01              # optional reward centering
//! strength_margin = { slight = 0.0, clear = 1.0, strong = 2.0 }  # optional (Llama 2)
//! [lora]                          # optional: adapters + a fully trained score head
//! r = 16
//! merge = false                   # write a PEFT adapter instead of a merged checkpoint
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tiller_data::OnBadRow;
use tiller_model::train::{OptimConfig, ScheduleConfig, TrainConfig};
use tiller_model::{DType, LoraTrainConfig};

use crate::error::{Result, RewardError};
use crate::margins::StrengthMargin;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardTrainConfig {
    pub model: PathBuf,
    pub out: PathBuf,
    /// `cpu`, `cuda` or `cuda:N`, checked when the file is read.
    #[serde(default)]
    pub device: tiller_model::train::DeviceName,
    #[serde(default)]
    pub dtype: DType,
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub data: RewardDataConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub loss: RewardLossConfig,
    /// Present: LoRA adapters on a frozen backbone, the score head fully trained (PEFT's
    /// `modules_to_save = ["score"]`); `merge = false` writes a PEFT adapter. Absent: full.
    #[serde(default)]
    pub lora: Option<LoraTrainConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardDataConfig {
    pub train: PathBuf,
    #[serde(default)]
    pub eval: Option<PathBuf>,
    /// Prompt plus one answer fit in this many tokens.
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: usize,
    #[serde(default)]
    pub max_prompt_len: Option<usize>,
    #[serde(default)]
    pub on_bad_row: OnBadRow,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardLossConfig {
    /// Adds center_coef · mean((r_c + r_r)²) to the loss (TRL's center_rewards_coefficient).
    #[serde(default)]
    pub center_coef: Option<f64>,
    /// Use the data's `margin` column when present: −log σ(r_c − r_r − margin).
    #[serde(default = "yes")]
    pub use_margin: bool,
    /// Llama 2's margins: `{ slight = 0.0, clear = 1.0, strong = 2.0 }` turns the
    /// annotators' `strength` column into a per-pair margin (off when absent; a row
    /// without strength gets 0; a `margin` column wins). See [`crate::margins`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength_margin: Option<StrengthMargin>,
}

fn default_seed() -> u64 {
    42
}
fn default_max_seq_len() -> usize {
    1024
}
fn yes() -> bool {
    true
}

tiller_model::impl_run_config!(RewardTrainConfig);

impl RewardTrainConfig {
    /// Reads and validates a TOML file; errors name the file and the offending key.
    pub fn from_file(path: &Path) -> Result<Self> {
        let at = |message: String| RewardError::Config(format!("{}: {message}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
        let config: Self = toml::from_str(&text).map_err(|e| at(e.to_string()))?;
        config.validate().map_err(at)?;
        Ok(config)
    }

    /// The shared sections' checks plus the reward model's own.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.run_config().validate()?;
        if self.data.max_seq_len < 2 {
            return Err(format!(
                "data.max_seq_len = {}: must be at least 2",
                self.data.max_seq_len
            ));
        }
        if let Some(c) = self.loss.center_coef {
            if !(c.is_finite() && c >= 0.0) {
                return Err(format!("loss.center_coef = {c}: must be a number ≥ 0"));
            }
        }
        if let Some(levels) = &self.loss.strength_margin {
            levels.validate()?;
        }
        Ok(())
    }

    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| RewardError::Config(e.to_string()))
    }
}
