//! `sft.toml`: small composable sections, unknown keys rejected. Defaults follow TRL's
//! `SFTConfig` where it has one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tiller_data::{Collation, LossOn, OnBadRow};
pub use tiller_model::train::TrainConfig;
use tiller_model::train::{OptimConfig, ScheduleConfig};
use tiller_model::{DType, LoraTrainConfig};

use crate::error::{PolicyError, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftConfig {
    /// HF-format model directory to start from.
    pub model: PathBuf,
    /// Run directory: checkpoints, metrics.jsonl, the resolved config, the final model.
    pub out: PathBuf,
    /// `cpu`, `cuda` or `cuda:N`, checked when the file is read.
    #[serde(default)]
    pub device: tiller_model::train::DeviceName,
    #[serde(default)]
    pub dtype: DType,
    /// Seeds data order, LoRA initialisation and dropout.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub data: DataConfig,
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
pub struct DataConfig {
    /// Training file (JSONL or Parquet; `messages` or `prompt`/`completion`).
    pub train: PathBuf,
    /// Held-out file for eval loss.
    #[serde(default)]
    pub eval: Option<PathBuf>,
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: usize,
    #[serde(default)]
    pub loss_on: LossOn,
    /// `padding`, `pack` (rows of `max_seq_len`) or `padding_free` (one row per batch).
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

tiller_model::impl_run_config!(SftConfig);

impl SftConfig {
    /// Reads and validates a TOML file; errors name the file and the offending key.
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config_file::read(path, Self::validate)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        self.run_config().validate()?;
        if self.data.max_seq_len < 2 {
            return Err("data.max_seq_len must be at least 2".into());
        }
        Ok(())
    }

    /// The config as TOML, written into the run directory.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self)
            .map_err(|e| PolicyError::Invalid(format!("cannot serialize the config: {e}")))
    }
}
