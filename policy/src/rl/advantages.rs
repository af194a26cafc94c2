//! Advantages without a critic: GRPO's group-normalized rewards (and the Dr.GRPO variant
//! without the std division), RLOO's leave-one-out baseline, and whitening.
//!
//! Rewards arrive in groups: `group` consecutive values share a prompt. Standard
//! deviations are unbiased (Bessel), as `torch.std` and TRL compute them.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use tiller_model::dist::Collective;

use crate::error::{PolicyError, Result};

/// Added to a standard deviation before dividing by it (TRL's 1e-4).
pub const STD_EPS: f64 = 1e-4;

/// How GRPO scales `reward − group mean` (TRL's `scale_rewards`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleRewards {
    /// Divide by the group's std + eps: GRPO as published (TRL's default).
    #[default]
    Group,
    /// Divide by the std of the whole batch + eps (PPO-Lite).
    Batch,
    /// No division: Dr.GRPO, which removes the question-difficulty bias.
    None,
}

fn check_groups(values: &[f64], group: usize) -> Result<()> {
    if group == 0 || values.len() % group != 0 {
        return Err(PolicyError::Invalid(format!(
            "{} rewards do not split into groups of {group}",
            values.len()
        )));
    }
    Ok(())
}

pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Unbiased standard deviation (0 for fewer than two values).
pub fn std(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values);
    let var = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
    var.sqrt()
}

/// The standard deviation of each group, repeated for each of its members.
pub fn group_stds(rewards: &[f64], group: usize) -> Result<Vec<f64>> {
    check_groups(rewards, group)?;
    Ok(rewards
        .chunks(group)
        .flat_map(|g| std::iter::repeat_n(std(g), group))
        .collect())
}

/// The mean and unbiased standard deviation of every rank's `values` (this rank's being
/// its share): count and sum all-reduced, then the squared deviations from that mean, as
/// [`masked_whiten_in`] does, so N ranks get one process's moments. In a world of one it
/// is ([`mean`], [`std`]).
pub fn moments_in(values: &[f64], collective: &dyn Collective) -> Result<(f64, f64)> {
    if collective.world_size() == 1 {
        return Ok((mean(values), std(values)));
    }
    let mut first = [values.len() as f64, values.iter().sum::<f64>()];
    collective.all_reduce_sum_f64(&mut first)?;
    let (count, m) = (first[0], first[1] / first[0].max(1.0));
    let mut squares = [values.iter().map(|v| (v - m).powi(2)).sum::<f64>()];
    collective.all_reduce_sum_f64(&mut squares)?;
    let std = if count < 2.0 {
        0.0
    } else {
        (squares[0] / (count - 1.0)).sqrt()
    };
    Ok((m, std))
}

/// GRPO: `(r − mean_group) / (std + eps)`, or without the division (Dr.GRPO).
pub fn group_advantages(rewards: &[f64], group: usize, scale: ScaleRewards) -> Result<Vec<f64>> {
    group_advantages_in(rewards, group, scale, &tiller_model::dist::Single)
}

/// [`group_advantages`] of this rank's share of the batch: groups stay on one rank, and
/// `scale_rewards = "batch"` divides by the std of every rank's rewards ([`moments_in`]).
pub fn group_advantages_in(
    rewards: &[f64],
    group: usize,
    scale: ScaleRewards,
    collective: &dyn Collective,
) -> Result<Vec<f64>> {
    check_groups(rewards, group)?;
    let batch_std = match scale {
        ScaleRewards::Batch => moments_in(rewards, collective)?.1,
        ScaleRewards::Group | ScaleRewards::None => 0.0,
    };
    let mut out = Vec::with_capacity(rewards.len());
    for g in rewards.chunks(group) {
        let (m, s) = (mean(g), std(g));
        for r in g {
            out.push(match scale {
                ScaleRewards::Group => (r - m) / (s + STD_EPS),
                ScaleRewards::Batch => (r - m) / (batch_std + STD_EPS),
                ScaleRewards::None => r - m,
            });
        }
    }
    Ok(out)
}

/// RLOO: each reward minus the mean of the *other* `k − 1` rewards of its group.
pub fn rloo_advantages(rewards: &[f64], k: usize) -> Result<Vec<f64>> {
    check_groups(rewards, k)?;
    if k < 2 {
        return Err(PolicyError::Invalid(
            "RLOO needs at least 2 samples per prompt".into(),
        ));
    }
    let mut out = Vec::with_capacity(rewards.len());
    for g in rewards.chunks(k) {
        let sum: f64 = g.iter().sum();
        out.extend(g.iter().map(|r| r - (sum - r) / (k - 1) as f64));
    }
    Ok(out)
}

/// `(x − mean) / (std + eps)` over all values (TRL RLOO's `normalize_advantages`).
pub fn whiten(values: &[f64]) -> Vec<f64> {
    let (m, s) = (mean(values), std(values));
    values.iter().map(|v| (v - m) / (s + STD_EPS)).collect()
}

/// [`whiten`] over every rank's values (this rank's being its share), from [`moments_in`].
pub fn whiten_in(values: &[f64], collective: &dyn Collective) -> Result<Vec<f64>> {
    let (m, s) = moments_in(values, collective)?;
    Ok(values.iter().map(|v| (v - m) / (s + STD_EPS)).collect())
}

/// Whitening over the tokens where `mask` is 1, as TRL's `masked_whiten`:
/// `(x − mean) · rsqrt(var + 1e-8)` with the unbiased variance; with `shift_mean = false`
/// the mean is added back (PPO whitens rewards that way).
pub fn masked_whiten(values: &Tensor, mask: &Tensor, shift_mean: bool) -> Tensor {
    let count = mask.sum(Kind::Float);
    let m = (values * mask).sum(Kind::Float) / &count;
    let centered = values - &m;
    let var = (centered.square() * mask).sum(Kind::Float) / (&count - 1.0).clamp_min(1.0);
    let whitened = &centered * (var + 1e-8).rsqrt();
    if shift_mean {
        whitened
    } else {
        whitened + m
    }
}

/// [`masked_whiten`] over the masked tokens of every rank (this rank's `values` and
/// `mask` being its share of the batch): the mean and the unbiased variance from
/// all-reduced sums (count, Σx, then Σ(x − mean)²), so N ranks whiten as one process
/// does. In a world of one it is [`masked_whiten`] itself.
pub fn masked_whiten_in(
    values: &Tensor,
    mask: &Tensor,
    shift_mean: bool,
    collective: &dyn Collective,
) -> Result<Tensor> {
    if collective.world_size() == 1 {
        return Ok(masked_whiten(values, mask, shift_mean));
    }
    let sum = |t: &Tensor| -> Result<f64> { Ok(t.sum(Kind::Double).f_double_value(&[])?) };
    let mut first = [sum(mask)?, sum(&(values * mask))?];
    collective.all_reduce_sum_f64(&mut first)?;
    let count = first[0];
    let m = first[1] / count.max(1.0);
    let centered = values - m;
    let mut squares = [sum(&(centered.square() * mask))?];
    collective.all_reduce_sum_f64(&mut squares)?;
    let var = squares[0] / (count - 1.0).max(1.0);
    let whitened = &centered * (var + 1e-8).sqrt().recip();
    Ok(if shift_mean { whitened } else { whitened + m })
}
