//! The DPO family as one pure function over per-pair summed log-probabilities.
//!
//! Notation (as in TRL's `DPOTrainer.dpo_loss`): for a pair, `ℓw`/`ℓl` are the policy's
//! summed completion log-probs of the chosen/rejected answer, `Δw = ℓw − ℓw_ref` and
//! `Δl = ℓl − ℓl_ref` the log-ratios to the reference, `h = Δw − Δl`, `Nw`/`Nl` the
//! completion token counts, `σ` the logistic function and `ε` the label smoothing.
//!
//! * `ipo` uses TRL's length-normalized form: every log-prob is divided by its token
//!   count before the ratios are taken, so `(Δw/Nw − Δl/Nl − 1/(2β))²`.
//! * `simpo`, `cpo` and `orpo` are reference-free (TRL's `CPOTrainer` / `ORPOTrainer`);
//!   `simpo` and `orpo` use mean token log-probs `ℓ̄ = ℓ/N`.
//! * NLL(yw) is the token mean over the batch's chosen answers, `−Σℓw / ΣNw`, as TRL's
//!   cross-entropy on the chosen rows. `rpo_alpha` adds `rpo_alpha · NLL(yw)` to any loss.
//! * `bco_pair` shifts rewards by δ, TRL's running mean of the batch rewards; the trainer
//!   keeps it ([`RunningMean`]) and passes it in [`DpoParams::bco_delta`].
//!
//! Rewards (`rewards/chosen`, `rewards/rejected`) are `β·Δ` for reference-based losses and
//! `β·ℓ` (of the log-probs the loss uses) for reference-free ones, as TRL logs them.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{PolicyError, Result};

/// `loss.kind` in dpo.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpoLoss {
    Sigmoid,
    Robust,
    Hinge,
    Ipo,
    SigmoidNorm,
    BcoPair,
    NcaPair,
    ApoZero,
    ApoDown,
    SppoHard,
    Discopop,
    Simpo,
    Cpo,
    Orpo,
}

impl DpoLoss {
    /// Whether the loss compares against a reference model (else no reference pass runs).
    pub fn needs_reference(self) -> bool {
        match self {
            DpoLoss::Simpo | DpoLoss::Cpo | DpoLoss::Orpo => false,
            DpoLoss::Sigmoid
            | DpoLoss::Robust
            | DpoLoss::Hinge
            | DpoLoss::Ipo
            | DpoLoss::SigmoidNorm
            | DpoLoss::BcoPair
            | DpoLoss::NcaPair
            | DpoLoss::ApoZero
            | DpoLoss::ApoDown
            | DpoLoss::SppoHard
            | DpoLoss::Discopop => true,
        }
    }

    /// Whether the loss is a mean of per-pair terms, so that ranks holding shares of a
    /// batch can rebuild the one-process loss exactly (`cpo` and `orpo` add a token mean
    /// over the batch, `bco_pair` a running batch mean).
    pub fn is_pairwise_mean(self) -> bool {
        match self {
            DpoLoss::Cpo | DpoLoss::Orpo | DpoLoss::BcoPair => false,
            DpoLoss::Sigmoid
            | DpoLoss::Robust
            | DpoLoss::Hinge
            | DpoLoss::Ipo
            | DpoLoss::SigmoidNorm
            | DpoLoss::NcaPair
            | DpoLoss::ApoZero
            | DpoLoss::ApoDown
            | DpoLoss::SppoHard
            | DpoLoss::Discopop
            | DpoLoss::Simpo => true,
        }
    }
}

/// `[loss]`: which loss and its coefficients. Defaults follow TRL's configs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpoParams {
    #[serde(default = "default_kind")]
    pub kind: DpoLoss,
    /// β: the strength of the pull towards the reference (or the reward scale).
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// ε for `sigmoid` (conservative DPO) and `robust`; in [0, 0.5).
    #[serde(default)]
    pub label_smoothing: f64,
    /// γ for `simpo`: the target reward margin.
    #[serde(default = "default_simpo_gamma")]
    pub simpo_gamma: f64,
    /// α for `cpo`: weight of the NLL on the chosen answers.
    #[serde(default = "one")]
    pub cpo_alpha: f64,
    /// λ for `orpo`: weight of the odds-ratio term.
    #[serde(default = "default_orpo_lambda")]
    pub orpo_lambda: f64,
    /// τ for `discopop`.
    #[serde(default = "default_discopop_tau")]
    pub discopop_tau: f64,
    /// Adds `rpo_alpha · NLL(yw)` to any loss (RPO); None: no SFT term.
    #[serde(default)]
    pub rpo_alpha: Option<f64>,
    /// δ for `bco_pair` (the running reward mean), set by the trainer each step; None
    /// uses the batch mean.
    #[serde(skip)]
    pub bco_delta: Option<f64>,
}

fn default_kind() -> DpoLoss {
    DpoLoss::Sigmoid
}
fn default_beta() -> f64 {
    0.1
}
fn default_simpo_gamma() -> f64 {
    0.5
}
fn one() -> f64 {
    1.0
}
fn default_orpo_lambda() -> f64 {
    0.1
}
fn default_discopop_tau() -> f64 {
    0.05
}

impl Default for DpoParams {
    fn default() -> Self {
        DpoParams {
            kind: default_kind(),
            beta: default_beta(),
            label_smoothing: 0.0,
            simpo_gamma: default_simpo_gamma(),
            cpo_alpha: one(),
            orpo_lambda: default_orpo_lambda(),
            discopop_tau: default_discopop_tau(),
            rpo_alpha: None,
            bco_delta: None,
        }
    }
}

impl DpoParams {
    // `!(x > 0.0)` on purpose: NaN must fail the check too.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.beta > 0.0) {
            return Err("loss.beta must be positive".into());
        }
        if !(0.0..0.5).contains(&self.label_smoothing) {
            return Err("loss.label_smoothing must lie in [0, 0.5)".into());
        }
        if !(self.discopop_tau > 0.0) {
            return Err("loss.discopop_tau must be positive".into());
        }
        Ok(())
    }
}

/// Per-pair inputs, each (B,). Reference log-probs may be absent for reference-free losses.
pub struct PairLogps {
    pub chosen: Tensor,
    pub rejected: Tensor,
    pub ref_chosen: Option<Tensor>,
    pub ref_rejected: Option<Tensor>,
    /// Completion token counts, as floats.
    pub chosen_tokens: Tensor,
    pub rejected_tokens: Tensor,
}

/// What [`loss`] returns.
pub struct LossParts {
    /// Scalar: the mean of `losses` plus any NLL term.
    pub loss: Tensor,
    /// (B,) per-pair preference loss (without NLL terms).
    pub losses: Tensor,
    /// (B,) detached rewards.
    pub chosen_rewards: Tensor,
    pub rejected_rewards: Tensor,
}

fn logsig(x: &Tensor) -> Tensor {
    x.log_sigmoid()
}

/// `−Σℓw / ΣNw`: the chosen answers' token-mean NLL over the batch.
fn chosen_nll(p: &PairLogps) -> Tensor {
    let k = p.chosen.kind();
    -p.chosen.sum(k) / p.chosen_tokens.sum(k).clamp_min(1.0)
}

/// The loss `params.kind` on `p`.
pub fn loss(p: &PairLogps, params: &DpoParams) -> Result<LossParts> {
    let beta = params.beta;
    let eps = params.label_smoothing;
    let reference = || -> Result<(&Tensor, &Tensor)> {
        match (&p.ref_chosen, &p.ref_rejected) {
            (Some(c), Some(r)) => Ok((c, r)),
            _ => Err(PolicyError::Invalid(format!(
                "loss {:?} needs reference log-probs",
                params.kind
            ))),
        }
    };
    // Log-ratios to the reference: summed, and per token.
    let ratios = || -> Result<(Tensor, Tensor)> {
        let (rc, rr) = reference()?;
        Ok((&p.chosen - rc, &p.rejected - rr))
    };
    let norm_ratios = || -> Result<(Tensor, Tensor)> {
        let (dw, dl) = ratios()?;
        Ok((dw / &p.chosen_tokens, dl / &p.rejected_tokens))
    };
    let mean_logps = || {
        (
            &p.chosen / &p.chosen_tokens,
            &p.rejected / &p.rejected_tokens,
        )
    };

    let mut extra_nll: Option<Tensor> = None;
    let (losses, rw, rl) = match params.kind {
        DpoLoss::Sigmoid => {
            let (dw, dl) = ratios()?;
            let h = (&dw - &dl) * beta;
            let losses = -logsig(&h) * (1.0 - eps) - logsig(&-&h) * eps;
            (losses, dw, dl)
        }
        DpoLoss::Robust => {
            let (dw, dl) = ratios()?;
            let h = (&dw - &dl) * beta;
            let losses = (-logsig(&h) * (1.0 - eps) + logsig(&-&h) * eps) / (1.0 - 2.0 * eps);
            (losses, dw, dl)
        }
        DpoLoss::Hinge => {
            let (dw, dl) = ratios()?;
            let losses = (-(&dw - &dl) * beta + 1.0).relu();
            (losses, dw, dl)
        }
        DpoLoss::Ipo => {
            let (dw, dl) = norm_ratios()?;
            let losses = (&dw - &dl - 1.0 / (2.0 * beta)).square();
            (losses, dw, dl)
        }
        DpoLoss::SigmoidNorm => {
            let (dw, dl) = norm_ratios()?;
            let losses = -logsig(&((&dw - &dl) * beta));
            (losses, dw, dl)
        }
        DpoLoss::BcoPair => {
            let (dw, dl) = ratios()?;
            let delta = match params.bco_delta {
                Some(d) => d,
                None => bco_batch_mean(p, beta)?.0,
            };
            let losses = -logsig(&(&dw * beta - delta)) - logsig(&-(&dl * beta - delta));
            (losses, dw, dl)
        }
        DpoLoss::NcaPair => {
            let (dw, dl) = ratios()?;
            let (cw, cl) = (&dw * beta, &dl * beta);
            let losses = -logsig(&cw) - logsig(&-&cw) * 0.5 - logsig(&-&cl) * 0.5;
            (losses, dw, dl)
        }
        DpoLoss::ApoZero => {
            let (dw, dl) = ratios()?;
            let losses = -(&dw * beta).sigmoid() + 1.0 + (&dl * beta).sigmoid();
            (losses, dw, dl)
        }
        DpoLoss::ApoDown => {
            let (dw, dl) = ratios()?;
            let losses = (&dw * beta).sigmoid() + 1.0 - ((&dw - &dl) * beta).sigmoid();
            (losses, dw, dl)
        }
        DpoLoss::SppoHard => {
            let (dw, dl) = ratios()?;
            let losses = (&dw - 0.5 / beta).square() + (&dl + 0.5 / beta).square();
            (losses, dw, dl)
        }
        DpoLoss::Discopop => {
            let (dw, dl) = ratios()?;
            let logits = (&dw - &dl) * beta;
            let modulation = (&logits / params.discopop_tau).sigmoid();
            let logistic = -logsig(&logits);
            let exponential = (-&logits).exp();
            let losses = logistic * (-&modulation + 1.0) + exponential * &modulation;
            (losses, dw, dl)
        }
        DpoLoss::Simpo => {
            let (mw, ml) = mean_logps();
            let logits = (&mw - &ml) * beta - params.simpo_gamma;
            let losses = -logsig(&logits) * (1.0 - eps) - logsig(&-&logits) * eps;
            (losses, mw, ml)
        }
        DpoLoss::Cpo => {
            let logits = (&p.chosen - &p.rejected) * beta;
            let losses = -logsig(&logits) * (1.0 - eps) - logsig(&-&logits) * eps;
            extra_nll = Some(chosen_nll(p) * params.cpo_alpha);
            (losses, p.chosen.shallow_clone(), p.rejected.shallow_clone())
        }
        DpoLoss::Orpo => {
            let (mw, ml) = mean_logps();
            // log odds(y) = ℓ̄ − log(1 − exp ℓ̄)
            let log_odds = (&mw - &ml) - ((-mw.exp()).log1p() - (-ml.exp()).log1p());
            let losses = -logsig(&log_odds) * params.orpo_lambda;
            extra_nll = Some(chosen_nll(p));
            (losses, mw, ml)
        }
    };
    let mut total = losses.mean(losses.kind());
    if let Some(nll) = extra_nll {
        total += nll;
    }
    if let Some(alpha) = params.rpo_alpha {
        total += chosen_nll(p) * alpha;
    }
    let detach = |t: Tensor| (t * beta).detach();
    Ok(LossParts {
        loss: total,
        losses,
        chosen_rewards: detach(rw),
        rejected_rewards: detach(rl),
    })
}

/// The batch mean of `β·Δ` over chosen and rejected (what `bco_pair` tracks), and how
/// many values it averages.
pub fn bco_batch_mean(p: &PairLogps, beta: f64) -> Result<(f64, u64)> {
    let (rc, rr) = match (&p.ref_chosen, &p.ref_rejected) {
        (Some(c), Some(r)) => (c, r),
        _ => {
            return Err(PolicyError::Invalid(
                "bco_pair needs reference log-probs".into(),
            ))
        }
    };
    let all = Tensor::cat(&[&p.chosen - rc, &p.rejected - rr], 0).detach() * beta;
    Ok((
        all.mean(Kind::Double).f_double_value(&[])?,
        all.numel() as u64,
    ))
}

/// TRL's `RunningMoments` mean: the mean of every value seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RunningMean {
    pub mean: f64,
    pub count: u64,
}

impl RunningMean {
    pub fn update(&mut self, batch_mean: f64, batch_count: u64) {
        let total = self.count + batch_count;
        if total == 0 {
            return;
        }
        self.mean += (batch_mean - self.mean) * batch_count as f64 / total as f64;
        self.count = total;
    }
}
