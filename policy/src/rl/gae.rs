//! PPO's per-token rewards and generalized advantage estimation, as pure tensor functions.
//!
//! Every tensor is (b, t) over the tokens of a batch; `mask` (b, t) marks the completion
//! tokens that are actions. Masked-out positions may lie before a completion (the prompt)
//! and after it (padding); after a completion's last token there must be no action.
//!
//! * Per-token reward (InstructGPT, TRL's `PPOTrainer`): `r_t = −β·kl_t` on every
//!   completion token, plus the sequence's score on its last completion token. TRL adds
//!   the score one position *past* the last token (its `sequence_lengths_p1`); here it lands
//!   on the last token itself, as in InstructGPT and OpenRLHF, so no value is learnt for a
//!   state that is never acted in.
//! * GAE: `δ_t = r_t + γ·V_{t+1} − V_t` (with `V` after the last token 0) and
//!   `A_t = δ_t + γλ·A_{t+1}`; returns `R_t = A_t + V_t`.
//! * Whitening of rewards and advantages is `advantages::masked_whiten` (TRL's).

use tch::{Kind, Tensor};

/// The per-token rewards of a batch.
pub struct TokenRewards {
    /// (b, t): `−β·kl` on completion tokens plus the score on each row's last one; 0 elsewhere.
    pub rewards: Tensor,
    /// (b, t): `−β·kl` on completion tokens, 0 elsewhere (TRL's `non_score_reward`).
    pub non_score: Tensor,
}

/// Index of each row's last masked position, (b,) i64 (0 for a row without any).
pub fn last_positions(mask: &Tensor) -> Tensor {
    let t = mask.size().last().copied().unwrap_or(0);
    let index = Tensor::arange(t, (Kind::Int64, mask.device())) + 1;
    (mask.to_kind(Kind::Int64) * index).argmax(-1, false)
}

/// `r_t = −kl_coef·kl_t` on masked tokens, plus `scores` (b,) on each row's last masked
/// token. `kl` (b, t) is the per-token KL estimate to the reference.
pub fn token_rewards(kl: &Tensor, mask: &Tensor, scores: &Tensor, kl_coef: f64) -> TokenRewards {
    let m = mask.to_kind(kl.kind());
    let non_score = kl * m.shallow_clone() * (-kl_coef);
    let last = last_positions(mask).unsqueeze(1); // (b, 1)
    let has_action = m
        .sum_dim_intlist(-1, true, kl.kind())
        .gt(0.0)
        .to_kind(kl.kind());
    let score = scores.to_kind(kl.kind()).unsqueeze(1) * has_action; // (b, 1)
    let rewards = non_score.zeros_like().scatter(1, &last, &score) + &non_score;
    TokenRewards { rewards, non_score }
}

/// Scores clipped to `[-clip, clip]` (OpenRLHF's `reward_clip_range`; TRL has none).
/// The missing-EOS penalty is applied before, to the samples (see
/// `rollout::apply_missing_eos_penalty`).
pub fn clip_scores(scores: &Tensor, clip: Option<f64>) -> Tensor {
    match clip {
        Some(c) => scores.clamp(-c, c),
        None => scores.shallow_clone(),
    }
}

/// Advantages and returns from per-token `rewards` and `values` (b, t) under `mask`.
pub struct Gae {
    pub advantages: Tensor,
    pub returns: Tensor,
}

/// Generalized advantage estimation (γ = `gamma`, λ = `lam`), 0 outside `mask`.
pub fn gae(rewards: &Tensor, values: &Tensor, mask: &Tensor, gamma: f64, lam: f64) -> Gae {
    let m = mask.to_kind(values.kind());
    let values = values * &m;
    let rewards = rewards.to_kind(values.kind()) * &m;
    let t = values.size().last().copied().unwrap_or(0);
    let mut next_value = values.select(1, 0).zeros_like(); // (b,)
    let mut running = next_value.zeros_like();
    let mut columns = Vec::with_capacity(t as usize);
    for i in (0..t).rev() {
        let (r, v, mi) = (rewards.select(1, i), values.select(1, i), m.select(1, i));
        let delta = &r + &next_value * gamma - &v;
        running = (delta + running * (gamma * lam)) * &mi;
        columns.push(running.shallow_clone());
        next_value = v;
    }
    columns.reverse();
    let advantages = if columns.is_empty() {
        values.zeros_like()
    } else {
        Tensor::stack(&columns, 1)
    };
    let returns = (&advantages + &values) * &m;
    Gae {
        advantages,
        returns,
    }
}

/// Mean of `x` over `mask` (a scalar tensor).
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> Tensor {
    let m = mask.to_kind(x.kind());
    (x * &m).sum(x.kind()) / m.sum(x.kind()).clamp_min(1.0)
}
