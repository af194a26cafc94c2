//! The frozen reference policy of the KL term: a separate checkpoint, or — when the policy
//! trains LoRA adapters — the policy's own base with the adapters switched off (no second
//! copy of the weights), as DPO does.

use std::path::Path;

use tch::Tensor;
use tiller_model::CausalLm;

use crate::error::{PolicyError, Result};
use crate::rl::config::ReferenceConfig;
use crate::rl::rollout::{completion_logprobs, SequenceBatch};
use crate::trainee::Trainee;

pub enum Reference {
    /// A separate frozen model.
    Model(CausalLm),
    /// The policy's base with its adapters off.
    Adapters,
}

impl Reference {
    /// The reference `config` names; without one, the starting model `policy_model`.
    pub(crate) fn load(
        config: &ReferenceConfig,
        policy_model: &Path,
        trainee: &Trainee,
    ) -> Result<Self> {
        let separate = |dir: &Path| -> Result<Reference> {
            let mut lm = CausalLm::load(dir, trainee.lm.device(), trainee.lm.kind())?;
            lm.vs.freeze();
            Ok(Reference::Model(lm))
        };
        match (&config.model, &trainee.lora) {
            (Some(dir), _) => separate(dir),
            (None, Some(_)) => Ok(Reference::Adapters),
            (None, None) => separate(policy_model),
        }
    }

    /// Per-token log-probs (b, C) of `batch`'s completions under the reference, without
    /// gradients.
    pub(crate) fn logprobs(
        &self,
        trainee: &Trainee,
        batch: &SequenceBatch,
        temperature: f64,
    ) -> Result<Tensor> {
        let run = |lm: &CausalLm| {
            tch::no_grad(|| completion_logprobs(&lm.model, batch, temperature, false))
                .map(|s| s.logprobs.detach())
        };
        match self {
            Reference::Model(lm) => run(lm),
            Reference::Adapters => {
                let lora = trainee
                    .lora
                    .as_ref()
                    .ok_or_else(|| PolicyError::Invalid("no adapters to disable".into()))?;
                lora.set_enabled(false);
                let out = run(&trainee.lm);
                lora.set_enabled(true);
                out
            }
        }
    }
}
