//! What the online RL trainers ask of the frozen reference policy of the KL term (a
//! [`ReferenceModel`]: a separate checkpoint, or — when the policy trains LoRA adapters —
//! the policy's own base with the adapters switched off, as DPO does).

use std::path::Path;

use tch::Tensor;

use crate::error::Result;
use crate::reference::{ReferenceModel, ReferenceModelConfig};
use crate::rl::rollout::{completion_logprobs, RolloutBatch};
use crate::trainee::Trainee;

impl ReferenceModel {
    /// The reference `config` names; without one, the starting model `policy_model`, in
    /// the trainee's dtype.
    pub(crate) fn for_kl(
        config: &ReferenceModelConfig,
        policy_model: &Path,
        trainee: &Trainee,
    ) -> Result<Self> {
        let kind = trainee.lm.kind();
        ReferenceModel::load(config.model.as_deref(), policy_model, trainee, kind)
    }

    /// Per-token log-probs (b, C) of `batch`'s completions under the reference, without
    /// gradients.
    pub(crate) fn logprobs(
        &self,
        trainee: &Trainee,
        batch: &RolloutBatch,
        temperature: f64,
    ) -> Result<Tensor> {
        self.run(trainee, |model| {
            completion_logprobs(model, batch, temperature, false).map(|s| s.logprobs.detach())
        })
    }
}
