//! The model a policy trainer (SFT, DPO) trains: loading it (fresh, from a checkpoint, or
//! with LoRA adapters), checkpointing it, and writing the final result.

use std::path::{Path, PathBuf};

use tch::Tensor;
use tiller_model::checkpoint::copy_tokenizer_files;
use tiller_model::train::{
    checkpoint_dir, prune_checkpoints, trainable_params, write_atomically, AdamW, TrainState,
    OPTIMIZER_FILE,
};
use tiller_model::{parse_device, CausalLm, DType, Lora};

use crate::error::{PolicyError, Result};
use crate::sft::config::SftLora;

/// The parts of a trainer's config that say which model is trained and how.
pub(crate) struct TraineeSpec<'a> {
    /// The starting checkpoint (and the base of any adapter).
    pub model: &'a Path,
    pub out: &'a PathBuf,
    pub device: &'a str,
    pub dtype: DType,
    pub seed: u64,
    pub lora: Option<&'a SftLora>,
}

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

impl Trainee {
    /// Writes checkpoint `state.step` into the run directory (weights, optimizer moments,
    /// the train state and a trainer's own `extra` files), then keeps the newest `keep`.
    pub fn save_checkpoint(
        &self,
        spec: &TraineeSpec,
        keep: usize,
        optimizer: &AdamW,
        state: &TrainState,
        extra: &[(&str, &str)],
    ) -> Result<()> {
        write_atomically(&checkpoint_dir(spec.out, state.step), |dir| -> Result<()> {
            self.save(dir, spec.model)?;
            optimizer.save(&dir.join(OPTIMIZER_FILE))?;
            for (name, text) in extra {
                let path = dir.join(name);
                std::fs::write(&path, text).map_err(|e| PolicyError::io(&path, e))?;
            }
            Ok(state.write(dir)?)
        })?;
        Ok(prune_checkpoints(spec.out, keep)?)
    }
}

/// Loads the starting model, or the one in checkpoint `resume`.
pub(crate) fn load_trainee(spec: &TraineeSpec, resume: Option<&Path>) -> Result<Trainee> {
    let device = parse_device(spec.device)?;
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
pub(crate) fn save_final(spec: &TraineeSpec, trainee: Trainee) -> Result<()> {
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
    tracing::info!("wrote {}", spec.out.display());
    Ok(())
}
