//! `dpo.toml`: small composable sections, unknown keys rejected. Defaults follow TRL's
//! `DPOConfig` where it has one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tiller_data::{Collation, OnBadRow};
use tiller_model::train::{OptimConfig, ScheduleConfig, TrainConfig};
use tiller_model::{DType, LoraTrainConfig};

use crate::dpo::params::DpoParams;
use crate::error::{PolicyError, Result};
pub use crate::reference::CachedReferenceConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpoConfig {
    /// HF-format model directory to start from (typically an SFT run).
    pub model: PathBuf,
    /// Run directory: checkpoints, metrics.jsonl, the resolved config, the final model.
    pub out: PathBuf,
    /// `cpu`, `cuda` or `cuda:N`, checked when the file is read.
    #[serde(default)]
    pub device: tiller_model::train::DeviceName,
    #[serde(default)]
    pub dtype: DType,
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub data: DpoData,
    #[serde(default)]
    pub loss: DpoParams,
    #[serde(default)]
    pub reference: CachedReferenceConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Present: train LoRA adapters on a frozen base; absent: full fine-tuning.
    #[serde(default)]
    pub lora: Option<LoraTrainConfig>,
}

fn default_seed() -> u64 {
    42
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpoData {
    /// Preference pairs (`prompt`/`chosen`/`rejected`), JSONL or Parquet.
    pub train: PathBuf,
    /// Held-out pairs for the `eval_*` metrics.
    #[serde(default)]
    pub eval: Option<PathBuf>,
    /// Prompt plus one answer fit in this many tokens.
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: usize,
    /// Prompts longer than this keep their last tokens.
    #[serde(default)]
    pub max_prompt_len: Option<usize>,
    /// `padding_free` (default: every sequence of the step in one row, no padding),
    /// `padding` or `pack` (rows of `max_seq_len`).
    #[serde(default = "default_collation")]
    pub collation: Collation,
    #[serde(default)]
    pub on_bad_row: OnBadRow,
}

fn default_max_seq_len() -> usize {
    1024
}
fn default_collation() -> Collation {
    Collation::PaddingFree
}

tiller_model::impl_run_config!(DpoConfig);

impl DpoConfig {
    /// Reads and validates a TOML file; errors name the file and the offending key.
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config_file::read(path, Self::validate)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        self.run_config().validate()?;
        if self.data.max_seq_len < 2 {
            return Err("data.max_seq_len must be at least 2".into());
        }
        self.loss.validate()
    }

    /// The config as TOML, written into the run directory.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self)
            .map_err(|e| PolicyError::Invalid(format!("cannot serialize the config: {e}")))
    }
}
