//! The clipped surrogate objective (PPO, GRPO, RLOO) and how per-token losses are averaged.
//!
//! With `ratio = exp(logp − old_logp)` and advantage `A`, the loss of one token (or one
//! sequence, for sequence-level ratios) is
//! `−min(ratio·A, clip(ratio, 1 − ε_low, 1 + ε_high)·A)`.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// How per-token losses become one number (TRL's `loss_type` values of the same names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// Mean over each sequence's tokens, then over sequences (the GRPO paper; favours
    /// short right answers and long wrong ones).
    Grpo,
    /// Sum over every token of the minibatch / its token count (DAPO; TRL's default).
    #[default]
    Dapo,
    /// Sum over every token / (sequences × max_new_tokens), a constant (Dr.GRPO).
    DrGrpo,
}

impl LossType {
    /// Per-token weights (b, C) of a micro-batch such that Σ weight·loss over all
    /// micro-batches of a minibatch is the minibatch's loss. `minibatch_rows` and
    /// `minibatch_tokens` count the whole minibatch, so accumulation is exact.
    pub fn token_weights(
        self,
        mask: &Tensor,
        minibatch_rows: usize,
        minibatch_tokens: f64,
        max_new_tokens: usize,
    ) -> Tensor {
        match self {
            LossType::Grpo => {
                let lengths = mask.sum_dim_intlist(-1, true, Kind::Float).clamp_min(1.0);
                mask / lengths / minibatch_rows as f64
            }
            LossType::Dapo => mask / minibatch_tokens.max(1.0),
            LossType::DrGrpo => mask / (minibatch_rows * max_new_tokens).max(1) as f64,
        }
    }
}

/// The clip range `[1 − low, 1 + high]` of the ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipRange {
    pub low: f64,
    pub high: f64,
}

/// Elementwise results of the clipped surrogate.
pub struct Surrogate {
    /// `−min(ratio·A, clip(ratio)·A)`, same shape as the inputs.
    pub loss: Tensor,
    /// The importance ratio `exp(logp − old_logp)`.
    pub ratio: Tensor,
    /// 1 where the clipped term is the one taken (TRL PPO's `clipfrac`), else 0.
    pub clipped: Tensor,
}

/// The clipped surrogate for log-probs, old log-probs and advantages of one shape
/// (per token (b, C), or per sequence (b,)). Gradients flow through `logprobs` only.
pub fn clipped_surrogate(
    logprobs: &Tensor,
    old_logprobs: &Tensor,
    advantages: &Tensor,
    clip: ClipRange,
) -> Surrogate {
    let ratio = (logprobs - old_logprobs).exp();
    let unclipped = -advantages * &ratio;
    let clipped_loss = -advantages * ratio.clamp(1.0 - clip.low, 1.0 + clip.high);
    let clipped = clipped_loss.gt_tensor(&unclipped).to_kind(Kind::Float);
    Surrogate {
        loss: unclipped.maximum(&clipped_loss),
        ratio,
        clipped,
    }
}

/// Fraction of masked elements where the clipped term was taken.
pub fn clip_fraction(s: &Surrogate, mask: &Tensor) -> Tensor {
    (&s.clipped * mask).sum(Kind::Float) / mask.sum(Kind::Float).clamp_min(1.0)
}

/// TRL's `approxkl`: mean of `(logp − old_logp)² / 2` over masked elements.
pub fn approx_kl(logprobs: &Tensor, old_logprobs: &Tensor, mask: &Tensor) -> Tensor {
    let d = (logprobs - old_logprobs).square() * 0.5;
    (d * mask).sum(Kind::Float) / mask.sum(Kind::Float).clamp_min(1.0)
}
