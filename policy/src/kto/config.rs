//! `kto.toml`: the sections of `dpo.toml` (data, reference, train, optim, schedule, lora)
//! with KTO's `[loss]`. Defaults follow TRL's `KTOConfig` where it has one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tiller_model::train::{OptimConfig, ScheduleConfig, TrainConfig};
use tiller_model::{DType, LoraTrainConfig};

use crate::dpo::DpoData;
use crate::error::{PolicyError, Result};
use crate::kto::loss::KtoParams;
use crate::reference::CachedReferenceConfig;

/// `[data]`: as DPO's, with `prompt`/`completion`/`label` rows in `train` and `eval`.
pub type KtoData = DpoData;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KtoConfig {
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
    pub data: KtoData,
    #[serde(default)]
    pub loss: KtoParams,
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

tiller_model::impl_run_config!(KtoConfig);

impl KtoConfig {
    /// Reads and validates a TOML file; errors name the file and the offending key.
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config_file::read(path, Self::validate)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let t = &self.train;
        if t.batch_size < 2 {
            // As TRL: with one completion per batch the KL pair is the completion itself.
            return Err("train.batch_size must be at least 2: the KL estimate pairs each prompt with another row's completion".into());
        }
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
