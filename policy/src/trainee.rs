//! The model a policy trainer (SFT, DPO, KTO, PPO, GRPO, RLOO) trains: loading it (fresh,
//! from a checkpoint, or with LoRA adapters), saving its weights, and writing the final
//! result. Which model and how come from the config's shared sections ([`RunConfig`]).

use std::path::Path;

use tch::Tensor;
use tiller_model::checkpoint::copy_tokenizer_files;
use tiller_model::train::{trainable_params, RunConfig};
use tiller_model::{CausalLm, Lora};

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

    /// Weights into `dir`: an HF directory, or a PEFT adapter on `model` plus the
    /// tokenizer files.
    pub fn save(&self, dir: &Path, model: &Path) -> Result<()> {
        match &self.lora {
            None => self.lm.save(dir, Some(model))?,
            Some(lora) => {
                let base = std::path::absolute(model).map_err(|e| PolicyError::io(model, e))?;
                lora.save(dir, &base.to_string_lossy())?;
                copy_tokenizer_files(model, dir)?;
            }
        }
        Ok(())
    }
}

/// Loads the starting model, or the one in checkpoint `resume`.
pub(crate) fn load_trainee(spec: &RunConfig, resume: Option<&Path>) -> Result<Trainee> {
    let device = spec.device.device();
    let kind = spec.dtype.kind();
    match (spec.lora, resume) {
        (None, Some(ckpt)) => Ok(Trainee {
            lm: CausalLm::load(ckpt, device, kind)?,
            lora: None,
        }),
        (None, None) => Ok(Trainee {
            lm: CausalLm::load(spec.model, device, kind)?,
            lora: None,
        }),
        (Some(l), _) => {
            let mut lm = CausalLm::load(spec.model, device, kind)?;
            let lora = match resume {
                Some(ckpt) => Lora::load(&mut lm, ckpt)?,
                None => Lora::attach(&mut lm, &l.lora_config(), spec.seed as i64)?,
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
pub(crate) fn save_final(spec: &RunConfig, trainee: Trainee) -> Result<()> {
    let Trainee { mut lm, lora } = trainee;
    match (lora, spec.lora) {
        (Some(lora), Some(l)) if !l.merge => Trainee {
            lm,
            lora: Some(lora),
        }
        .save(spec.out, spec.model)?,
        (Some(lora), _) => {
            lora.merge(&mut lm)?;
            lm.save(spec.out, Some(spec.model))?;
        }
        (None, _) => lm.save(spec.out, Some(spec.model))?,
    }
    Ok(())
}
