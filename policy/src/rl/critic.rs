//! PPO's critic: a backbone with a scalar value head giving a value for every position,
//! stored exactly like a reward model (HF `LlamaForSequenceClassification` names, so
//! `tiller_reward::RewardModel` loads and saves it). It starts from a reward model (its
//! score head included, as InstructGPT and TRL do) or from the policy checkpoint (a fresh
//! head). Also the clipped value loss.
//!
//! Value loss (TRL's `PPOTrainer`): with new values `V`, rollout values `V_old` and returns
//! `R`, `V_clip = clamp(V, V_old − c, V_old + c)` and
//! `L_V = ½ · mean_mask(max((V − R)², (V_clip − R)²))`; `val/clipfrac` is the fraction of
//! masked tokens where the clipped term is the larger.

use std::path::Path;

use tch::{Device, Kind, Tensor};
use tiller_model::train::trainable_params;
use tiller_reward::RewardModel;

use crate::error::Result;
use crate::rl::gae::masked_mean;

pub struct Critic {
    pub model: RewardModel,
}

impl Critic {
    /// From a reward checkpoint (the value head starts as its score head) or a causal LM
    /// checkpoint (a new head, N(0, 0.02) from `seed`).
    pub fn load(dir: &Path, device: Device, kind: Kind, seed: i64) -> Result<Self> {
        Ok(Critic {
            model: RewardModel::load_or_init(dir, device, kind, seed)?,
        })
    }

    /// A value for every position of `ids` (b, t), where `valid` marks real tokens: (b, t) f32.
    pub fn values(&self, ids: &Tensor, valid: &Tensor) -> Tensor {
        self.model.values(ids, valid)
    }

    pub fn params(&self) -> Vec<(String, Tensor)> {
        trainable_params(&self.model.vs)
    }

    /// Writes the critic as a reward-model directory (tokenizer files from `tokenizer_dir`).
    pub fn save(&self, dir: &Path, tokenizer_dir: &Path) -> Result<()> {
        Ok(self.model.save(dir, Some(tokenizer_dir))?)
    }
}

/// What [`value_loss`] returns.
pub struct ValueLoss {
    /// Scalar: ½ · the masked mean of the larger squared error.
    pub loss: Tensor,
    /// Fraction of masked tokens where clipping chose the value (no gradient).
    pub clipfrac: f64,
}

/// The clipped value loss over masked tokens; all tensors (b, t), `clip` the value clip range.
pub fn value_loss(
    values: &Tensor,
    old_values: &Tensor,
    returns: &Tensor,
    mask: &Tensor,
    clip: f64,
) -> Result<ValueLoss> {
    let clipped = values.clamp_tensor(Some(&(old_values - clip)), Some(&(old_values + clip)));
    let unclipped_loss = (values - returns).square();
    let clipped_loss = (&clipped - returns).square();
    let worst = unclipped_loss.maximum(&clipped_loss);
    let loss = masked_mean(&worst, mask) * 0.5;
    let clipfrac = tch::no_grad(|| {
        masked_mean(
            &clipped_loss
                .gt_tensor(&unclipped_loss)
                .to_kind(values.kind()),
            mask,
        )
        .f_double_value(&[])
    })?;
    Ok(ValueLoss { loss, clipfrac })
}
