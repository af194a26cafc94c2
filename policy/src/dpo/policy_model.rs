//! The model being trained: loading it (fresh, from a checkpoint, or with LoRA adapters),
//! checkpointing it, and writing the final result.

use std::path::Path;

use tch::Tensor;
use tiller_model::checkpoint::copy_tokenizer_files;
use tiller_model::train::trainable_params;
use tiller_model::{parse_device, CausalLm, Lora};

use crate::dpo::config::DpoConfig;
use crate::error::{PolicyError, Result};

/// The policy: full weights, or a frozen base with adapters.
pub(crate) struct Trainee {
    pub lm: CausalLm,
    pub lora: Option<Lora>,
}

impl Trainee {
    pub fn params(&self) -> Vec<(String, Tensor)> {
        match &self.lora {
            Some(lora) => trainable_params(&lora.vs),
            None => trainable_params(&self.lm.vs),
        }
    }

    pub fn set_training(&self, on: bool) {
        if let Some(lora) = &self.lora {
            lora.set_training(on);
        }
    }

    pub fn save(&self, dir: &Path, config: &DpoConfig) -> Result<()> {
        match &self.lora {
            None => self.lm.save(dir, Some(&config.model))?,
            Some(lora) => {
                let base = std::path::absolute(&config.model)
                    .map_err(|e| PolicyError::io(&config.model, e))?;
                lora.save(dir, &base.to_string_lossy())?;
                copy_tokenizer_files(&config.model, dir)?;
            }
        }
        Ok(())
    }
}

pub(crate) fn load_trainee(config: &DpoConfig, resume: Option<&Path>) -> Result<Trainee> {
    let device = parse_device(&config.device)?;
    let kind = config.dtype.kind();
    match (&config.lora, resume) {
        (None, Some(ckpt)) => Ok(Trainee {
            lm: CausalLm::load(ckpt, device, kind)?,
            lora: None,
        }),
        (None, None) => Ok(Trainee {
            lm: CausalLm::load(&config.model, device, kind)?,
            lora: None,
        }),
        (Some(l), _) => {
            let mut lm = CausalLm::load(&config.model, device, kind)?;
            let lora = match resume {
                Some(ckpt) => Lora::load(&mut lm, ckpt)?,
                None => Lora::attach(&mut lm, &l.lora_config(), config.seed as i64)?,
            };
            Ok(Trainee {
                lm,
                lora: Some(lora),
            })
        }
    }
}

/// The run directory becomes the result: an HF checkpoint (full or merged LoRA), or the
/// PEFT adapter with the tokenizer.
pub(crate) fn save_final(config: &DpoConfig, trainee: Trainee) -> Result<()> {
    let Trainee { mut lm, lora } = trainee;
    match (lora, &config.lora) {
        (Some(lora), Some(l)) if !l.merge => Trainee {
            lm,
            lora: Some(lora),
        }
        .save(&config.out, config)?,
        (Some(lora), _) => {
            lora.merge(&mut lm)?;
            lm.save(&config.out, Some(&config.model))?;
        }
        (None, _) => lm.save(&config.out, Some(&config.model))?,
    }
    tracing::info!("wrote {}", config.out.display());
    Ok(())
}
