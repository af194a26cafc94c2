//! From a step's scored samples to what PPO learns from: the reference's log-probs and the
//! critic's values (no gradients), the per-token KL penalty with the score on the last
//! token, GAE and whitening. Every per-token tensor is (b, C), completion-aligned as
//! [`SequenceBatch`] lays completions out, over all of the step's samples (this rank's
//! share of them in a data-parallel job).

use tch::{Device, Kind, Tensor};
use tiller_model::dist::Collective;

use crate::error::Result;
use crate::rl::advantages::masked_whiten_in;
use crate::rl::critic::Critic;
use crate::rl::gae::{clip_scores, gae, token_rewards};
use crate::rl::ppo::config::PpoParams;
use crate::rl::reference::Reference;
use crate::rl::rollout::{length_mask, pad_rows, Sample, SequenceBatch};
use crate::rl::update::{global_sums, MicroBatches};
use crate::trainee::Trainee;

/// The frozen and trained models a PPO step needs.
pub(crate) struct Models<'a> {
    pub actor: &'a Trainee,
    pub reference: &'a Reference,
    pub critic: &'a Critic,
    pub temperature: f64,
    pub pad_id: u32,
}

impl Models<'_> {
    pub fn device(&self) -> Device {
        self.actor.lm.device()
    }

    /// The critic's values before each completion token of `batch`, (b, C_batch) f32: the
    /// state at column `P − 1 + j` chooses completion token `j`.
    pub fn values(&self, batch: &SequenceBatch) -> Tensor {
        self.critic
            .values(&batch.input_ids, &batch.attention_mask)
            .narrow(1, batch.prompt_width - 1, batch.completion_width)
    }
}

/// A step's rollouts ready for the PPO epochs.
pub(crate) struct Experience {
    pub samples: Vec<Sample>,
    /// (b, C) f32: 1 on completion tokens.
    pub mask: Tensor,
    pub old_logprobs: Tensor,
    pub old_values: Tensor,
    pub advantages: Tensor,
    pub returns: Tensor,
    pub stats: ExperienceStats,
    /// Per sample: the summed KL, and the critic's value before the first token.
    pub sequence_kl: Vec<f64>,
    pub first_values: Vec<f64>,
}

/// TRL's `objective/*` numbers of a batch of rollouts.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExperienceStats {
    /// Mean over sequences of the summed per-token KL.
    pub kl: f64,
    /// Mean over sequences of the summed −log-prob of the sampled tokens.
    pub entropy: f64,
    /// Mean over sequences of the summed −β·KL.
    pub non_score_reward: f64,
    /// Mean score (after the missing-EOS penalty and clipping).
    pub scores: f64,
    /// Completions that ended with a stop token or string.
    pub num_eos: usize,
    pub mean_length: f64,
    /// Sequences of the step (over every rank).
    pub sequences: usize,
}

/// Rows `rows` of a (b, C) tensor, cut to the first `width` columns (a sub-batch's width).
pub(crate) fn rows_of(t: &Tensor, rows: &Tensor, width: i64) -> Tensor {
    t.index_select(0, rows).narrow(1, 0, width)
}

/// (b, c) → (b, width) with zeros on the right.
fn pad_to(t: &Tensor, width: i64) -> Tensor {
    let c = t.size()[1];
    if c == width {
        t.shallow_clone()
    } else {
        t.constant_pad_nd([0, width - c])
    }
}

/// Reference log-probs and values of every sample, `chunk` rows per forward pass.
fn frozen_passes(
    models: &Models,
    samples: &[Sample],
    micro_batch_size: Option<usize>,
    width: i64,
) -> Result<(Tensor, Tensor)> {
    if samples.is_empty() {
        // A rank left without prompts at an epoch's end (it still joins every collective).
        let empty = Tensor::zeros([0, width], (Kind::Float, models.device()));
        return Ok((empty.shallow_clone(), empty));
    }
    let (mut ref_parts, mut value_parts) = (Vec::new(), Vec::new());
    let rows: Vec<usize> = (0..samples.len()).collect();
    for part in MicroBatches::new(&rows, micro_batch_size) {
        let refs: Vec<&Sample> = part.iter().map(|&i| &samples[i]).collect();
        let batch = SequenceBatch::new(&refs, models.pad_id, models.device())?;
        let ref_lp = models
            .reference
            .logprobs(models.actor, &batch, models.temperature)?;
        let values = tch::no_grad(|| models.values(&batch));
        ref_parts.push(pad_to(&ref_lp, width));
        value_parts.push(pad_to(&values.detach(), width));
    }
    Ok((Tensor::cat(&ref_parts, 0), Tensor::cat(&value_parts, 0)))
}

/// Everything the update needs from `samples`, with the KL coefficient `kl_coef` now.
/// In a world of several `samples` are this rank's share of the step: whitening and the
/// statistics are over every rank's (all-reduced sums), the rest is per sample.
pub(crate) fn build(
    models: &Models,
    samples: Vec<Sample>,
    params: &PpoParams,
    kl_coef: f64,
    micro_batch_size: Option<usize>,
    collective: &dyn Collective,
) -> Result<Experience> {
    let device = models.device();
    let lengths: Vec<usize> = samples.iter().map(|s| s.completion_ids.len()).collect();
    let width = lengths.iter().copied().max().unwrap_or(0).max(1);
    let mask = length_mask(&lengths, width, device);
    let old: Vec<&[f32]> = samples.iter().map(|s| s.old_logprobs.as_slice()).collect();
    let old_logprobs = pad_rows(&old, width, device);
    let (ref_logprobs, values) = frozen_passes(models, &samples, micro_batch_size, width as i64)?;

    let kl = params.kl_estimator.per_token(&old_logprobs, &ref_logprobs) * &mask;
    let scores: Vec<f32> = samples.iter().map(|s| s.score as f32).collect();
    let scores = clip_scores(
        &Tensor::from_slice(&scores).to_device(device),
        params.reward_clip,
    );
    let shaped = token_rewards(&kl, &mask, &scores, kl_coef);
    let mut rewards = shaped.rewards;
    if params.whiten_rewards {
        rewards = masked_whiten_in(&rewards, &mask, false, collective)? * &mask;
    }
    let old_values = values * &mask;
    let g = gae(&rewards, &old_values, &mask, params.gamma, params.lam);
    let tokens = lengths.iter().sum::<usize>();
    let local_eos = samples.iter().filter(|s| !s.truncated()).count();
    let sum = |t: &Tensor| -> Result<f64> { Ok(t.sum(Kind::Double).f_double_value(&[])?) };
    // Over every rank: sequences, tokens, and the sums of the sequence-level statistics.
    let global = global_sums(
        collective,
        &[
            samples.len() as f64,
            tokens as f64,
            sum(&kl)?,
            sum(&(-&old_logprobs * &mask))?,
            sum(&shaped.non_score)?,
            sum(&scores)?,
            local_eos as f64,
        ],
    )?;
    let advantages = if params.whiten_advantages && global[1] >= 2.0 {
        masked_whiten_in(&g.advantages, &mask, true, collective)? * &mask
    } else {
        g.advantages
    };

    let sequences = global[0].max(1.0);
    let stats = ExperienceStats {
        kl: global[2] / sequences,
        entropy: global[3] / sequences,
        non_score_reward: global[4] / sequences,
        scores: global[5] / sequences,
        num_eos: global[6] as usize,
        mean_length: global[1] / sequences,
        sequences: global[0] as usize,
    };
    let column =
        |t: &Tensor| -> Result<Vec<f64>> { Ok(Vec::<f64>::try_from(t.to_kind(Kind::Double))?) };
    let sequence_kl = column(&kl.sum_dim_intlist(-1, false, Kind::Double))?;
    let first_values = column(&old_values.select(1, 0))?;
    Ok(Experience {
        sequence_kl,
        first_values,
        samples,
        mask,
        old_logprobs,
        old_values,
        advantages,
        returns: g.returns,
        stats,
    })
}
