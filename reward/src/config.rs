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
//!
//! `head = "refusal_classes"` trains the three-way refusal classifier instead
//! ([`crate::classes`]): data rows are `prompt, completion, label`, the loss is
//! cross-entropy, and the model saves merged (`[loss]` must stay at its defaults).

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
    /// What the head is: a reward (the default) or the refusal classes.
    #[serde(default, skip_serializing_if = "Head::is_score")]
    pub head: Head,
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

/// The head on the backbone and the objective that trains it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// One reward per answer, Bradley–Terry on preference pairs.
    #[default]
    Score,
    /// Three logits (full compliance, full refusal, partial refusal), cross-entropy on
    /// labeled answers ([`crate::classes`]).
    RefusalClasses,
}

impl Head {
    fn is_score(&self) -> bool {
        *self == Head::Score
    }

    /// The labels of a new head of this kind.
    pub fn labels(self) -> Vec<&'static str> {
        match self {
            Head::Score => vec![crate::model::REWARD_LABEL],
            Head::RefusalClasses => crate::classes::class_labels(),
        }
    }
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
        match self.head {
            Head::Score => {}
            Head::RefusalClasses => {
                if self.loss.center_coef.is_some() || self.loss.strength_margin.is_some() {
                    return Err(
                        "[loss]: the refusal classifier (head = \"refusal_classes\") trains with cross-entropy; center_coef and strength_margin do not apply".into(),
                    );
                }
                if self.lora.as_ref().is_some_and(|l| !l.merge) {
                    return Err(
                        "lora.merge = false: the refusal classifier (head = \"refusal_classes\") saves merged; set merge = true".into(),
                    );
                }
            }
        }
        Ok(())
    }

    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| RewardError::Config(e.to_string()))
    }
}
