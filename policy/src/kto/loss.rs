//! The KTO loss (Ethayarajh et al. 2024) as TRL's `KTOTrainer.kto_loss` defines it.
//!
//! With Δ = log πθ(y|x) − log πref(y|x) per completion and z0 the batch KL estimate
//! `mean(log πθ(y'|x) − log πref(y'|x))` over mismatched pairs (x with another example's
//! y'), detached and clamped at 0:
//! * desirable:   λD · (1 − σ(β(Δ − z0)))
//! * undesirable: λU · (1 − σ(β(z0 − Δ)))
//!
//! The loss is the mean over every completion of the batch.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{PolicyError, Result};

/// `[loss]` of kto.toml; defaults as TRL's `KTOConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KtoParams {
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// λD
    #[serde(default = "one")]
    pub desirable_weight: f64,
    /// λU
    #[serde(default = "one")]
    pub undesirable_weight: f64,
}

fn default_beta() -> f64 {
    0.1
}
fn one() -> f64 {
    1.0
}

impl Default for KtoParams {
    fn default() -> Self {
        KtoParams {
            beta: default_beta(),
            desirable_weight: 1.0,
            undesirable_weight: 1.0,
        }
    }
}

impl KtoParams {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.beta.is_nan() || self.beta <= 0.0 {
            return Err("loss.beta must be positive".into());
        }
        if !(self.desirable_weight >= 0.0 && self.undesirable_weight >= 0.0) {
            return Err(
                "loss.desirable_weight and loss.undesirable_weight must not be negative".into(),
            );
        }
        Ok(())
    }
}

/// Per completion, (B,) each.
pub struct KtoInputs {
    pub logps: Tensor,
    pub ref_logps: Tensor,
    /// Bool: desirable (true) or undesirable.
    pub desirable: Tensor,
    /// Policy and reference log-probs of the mismatched completions (the KL estimate).
    pub kl_logps: Tensor,
    pub ref_kl_logps: Tensor,
}

pub struct KtoLossParts {
    /// Scalar mean loss.
    pub loss: Tensor,
    /// (B,) per completion.
    pub losses: Tensor,
    /// (B,) detached `β·Δ`.
    pub rewards: Tensor,
    /// The clamped KL estimate z0.
    pub kl: f64,
}

pub fn kto_loss(p: &KtoInputs, params: &KtoParams) -> Result<KtoLossParts> {
    let z0 = (&p.kl_logps - &p.ref_kl_logps)
        .detach()
        .mean(p.logps.kind())
        .clamp_min(0.0);
    loss_at(p, z0, params)
}

/// [`kto_loss`] with the KL estimate given: `kl_mean`, the mean of
/// `log πθ(y'|x) − log πref(y'|x)` over a batch wider than `p`'s (every rank's share of
/// a data-parallel micro-batch), clamped at 0 here; `p.kl_logps` and `p.ref_kl_logps`
/// are not read.
pub fn kto_loss_with_kl(p: &KtoInputs, kl_mean: f64, params: &KtoParams) -> Result<KtoLossParts> {
    let z0 = Tensor::from(kl_mean.max(0.0))
        .to_kind(p.logps.kind())
        .to_device(p.logps.device());
    loss_at(p, z0, params)
}

/// The loss of `p` at the clamped, detached KL estimate `z0` (a scalar tensor).
fn loss_at(p: &KtoInputs, z0: Tensor, params: &KtoParams) -> Result<KtoLossParts> {
    if p.logps.size() != p.desirable.size() {
        return Err(PolicyError::Invalid(
            "kto: labels and log-probs differ in shape".into(),
        ));
    }
    let kind = p.logps.kind();
    let delta = &p.logps - &p.ref_logps;
    let beta = params.beta;
    let good = -((&delta - &z0) * beta).sigmoid() + 1.0;
    let bad = -((&z0 - &delta) * beta).sigmoid() + 1.0;
    let losses = (good * params.desirable_weight)
        .where_self(&p.desirable, &(bad * params.undesirable_weight));
    Ok(KtoLossParts {
        loss: losses.mean(kind),
        rewards: (delta * beta).detach(),
        kl: z0.to_kind(Kind::Double).f_double_value(&[])?,
        losses,
    })
}
