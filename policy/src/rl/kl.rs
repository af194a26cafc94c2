//! Per-token estimators of KL(π ‖ π_ref) from tokens sampled from π (Schulman, "Approximating
//! KL divergence", 2020). With `log_ratio = log π(y) − log π_ref(y)`:
//!
//! | estimator | per token                          | unbiased | always ≥ 0 |
//! |-----------|------------------------------------|----------|------------|
//! | `k1`      | `log_ratio`                        | yes      | no         |
//! | `k2`      | `log_ratio² / 2`                   | no       | yes        |
//! | `k3`      | `exp(−log_ratio) − 1 + log_ratio`  | yes      | yes        |
//!
//! `k3` is TRL's GRPO KL term (`exp(ref − logp) − (ref − logp) − 1`) and its PPO
//! `kl_estimator = "k3"`; `k1` is TRL's PPO default and OpenRLHF's `k1`.

use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    K1,
    K2,
    /// Low variance and never negative (the default for GRPO's KL loss term).
    #[default]
    K3,
}

impl KlEstimator {
    /// The estimate per token, the same shape as the inputs. Differentiable in both.
    pub fn per_token(self, logprobs: &Tensor, ref_logprobs: &Tensor) -> Tensor {
        let log_ratio = logprobs - ref_logprobs;
        match self {
            KlEstimator::K1 => log_ratio,
            KlEstimator::K2 => log_ratio.square() * 0.5,
            KlEstimator::K3 => (-&log_ratio).exp() - 1.0 + log_ratio,
        }
    }

    /// The estimate for plain numbers (tests, logging).
    pub fn value(self, logprob: f64, ref_logprob: f64) -> f64 {
        let log_ratio = logprob - ref_logprob;
        match self {
            KlEstimator::K1 => log_ratio,
            KlEstimator::K2 => 0.5 * log_ratio * log_ratio,
            KlEstimator::K3 => (-log_ratio).exp() - 1.0 + log_ratio,
        }
    }
}
