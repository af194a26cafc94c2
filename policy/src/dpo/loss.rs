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
//!   keeps it ([`RunningMean`]) and passes it to [`loss`] (None: the batch mean).
//!
//! Rewards (`rewards/chosen`, `rewards/rejected`) are `β·Δ` for reference-based losses and
//! `β·ℓ` (of the log-probs the loss uses) for reference-free ones, as TRL logs them.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

pub use crate::dpo::params::{DpoLoss, DpoParams};
use crate::error::{PolicyError, Result};

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

/// `−Σℓw / ΣNw`: the chosen answers' token-mean NLL over the batch, or over `tokens`
/// when given (a data-parallel rank's normaliser, see [`loss_with`]).
fn chosen_nll(p: &PairLogps, tokens: Option<f64>) -> Tensor {
    let k = p.chosen.kind();
    match tokens {
        Some(n) => -p.chosen.sum(k) / n,
        None => -p.chosen.sum(k) / p.chosen_tokens.sum(k).clamp_min(1.0),
    }
}

/// Whether the loss has an NLL(yw) term (`cpo`, `orpo`, or any loss with `rpo_alpha`).
pub fn has_chosen_nll(params: &DpoParams) -> bool {
    params.rpo_alpha.is_some() || matches!(params.kind, DpoLoss::Cpo { .. } | DpoLoss::Orpo { .. })
}

/// The loss `params.kind` on `p`; `bco_delta` is `bco_pair`'s running reward mean (None:
/// the batch's own mean), ignored by every other loss.
pub fn loss(p: &PairLogps, params: &DpoParams, bco_delta: Option<f64>) -> Result<LossParts> {
    loss_with(p, params, bco_delta, None)
}

/// [`loss`] with NLL(yw)'s token normaliser given (None: `p`'s own chosen tokens). A
/// data-parallel rank passes the chosen tokens of the whole micro-batch over all ranks
/// times its share of the micro-batch's pairs, so that the trainer's weighting of the
/// loss by that share leaves the one-process token mean.
pub fn loss_with(
    p: &PairLogps,
    params: &DpoParams,
    bco_delta: Option<f64>,
    nll_tokens: Option<f64>,
) -> Result<LossParts> {
    let beta = params.beta;
    let reference = || -> Result<(&Tensor, &Tensor)> {
        match (&p.ref_chosen, &p.ref_rejected) {
            (Some(c), Some(r)) => Ok((c, r)),
            _ => Err(PolicyError::Invalid(format!(
                "loss {} needs reference log-probs",
                params.kind.name()
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
        DpoLoss::Sigmoid {
            label_smoothing: eps,
        } => {
            let (dw, dl) = ratios()?;
            let h = (&dw - &dl) * beta;
            let losses = -logsig(&h) * (1.0 - eps) - logsig(&-&h) * eps;
            (losses, dw, dl)
        }
        DpoLoss::Robust {
            label_smoothing: eps,
        } => {
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
            let delta = match bco_delta {
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
        DpoLoss::Discopop { tau } => {
            let (dw, dl) = ratios()?;
            let logits = (&dw - &dl) * beta;
            let modulation = (&logits / tau).sigmoid();
            let logistic = -logsig(&logits);
            let exponential = (-&logits).exp();
            let losses = logistic * (-&modulation + 1.0) + exponential * &modulation;
            (losses, dw, dl)
        }
        DpoLoss::Simpo {
            gamma,
            label_smoothing: eps,
        } => {
            let (mw, ml) = mean_logps();
            let logits = (&mw - &ml) * beta - gamma;
            let losses = -logsig(&logits) * (1.0 - eps) - logsig(&-&logits) * eps;
            (losses, mw, ml)
        }
        DpoLoss::Cpo {
            alpha,
            label_smoothing: eps,
        } => {
            let logits = (&p.chosen - &p.rejected) * beta;
            let losses = -logsig(&logits) * (1.0 - eps) - logsig(&-&logits) * eps;
            extra_nll = Some(chosen_nll(p, nll_tokens) * alpha);
            (losses, p.chosen.shallow_clone(), p.rejected.shallow_clone())
        }
        DpoLoss::Orpo { lambda } => {
            let (mw, ml) = mean_logps();
            // log odds(y) = ℓ̄ − log(1 − exp ℓ̄)
            let log_odds = (&mw - &ml) - ((-mw.exp()).log1p() - (-ml.exp()).log1p());
            let losses = -logsig(&log_odds) * lambda;
            extra_nll = Some(chosen_nll(p, nll_tokens));
            (losses, mw, ml)
        }
    };
    let mut total = losses.mean(losses.kind());
    if let Some(nll) = extra_nll {
        total += nll;
    }
    if let Some(alpha) = params.rpo_alpha {
        total += chosen_nll(p, nll_tokens) * alpha;
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
