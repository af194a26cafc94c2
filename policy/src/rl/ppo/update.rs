//! PPO's optimization phase: `epochs` passes over a step's rollouts in shuffled
//! minibatches, each one optimizer step of actor and critic on
//! `L = L_clip − ent_coef·H + vf_coef·L_V` (TRL's `PPOTrainer` loss plus an entropy
//! bonus). Losses are token means over the whole minibatch, so splitting it into
//! micro-batches only changes memory, not the gradient. Actor and critic are separate
//! models with separate optimizers; each has its gradient clipped to `max_grad_norm` on
//! its own (as OpenRLHF does; TRL clips the joint policy-and-value wrapper).

use tch::Tensor;
use tiller_model::dist::Collective;
use tiller_model::train::{check_finite, AdamW, OnNonFinite};

use crate::error::Result;
use crate::rl::critic::value_loss;
use crate::rl::gae::masked_mean;
use crate::rl::loss::{approx_kl, clip_fraction, clipped_surrogate, ClipRange};
use crate::rl::ppo::config::PpoParams;
use crate::rl::ppo::experience::{rows_of, Experience, Models};
use crate::rl::rollout::{completion_logprobs, RolloutBatch, Sample};
use crate::rl::run::{minibatches, step_seed};
use crate::rl::update::{global_rows, global_sums, MicroBatches};

/// Means over every minibatch update of a step, under TRL's names.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpdateStats {
    pub policy_loss: f64,
    pub value_loss: f64,
    pub clipfrac: f64,
    pub value_clipfrac: f64,
    pub approxkl: f64,
    pub entropy: f64,
    pub ratio: f64,
    pub grad_norm: f64,
    pub updates: usize,
    pub skipped: usize,
}

impl UpdateStats {
    /// Every rank's weighted sums summed (the minibatch's statistics over all ranks).
    fn all_reduce_sum(&mut self, collective: &dyn Collective) -> Result<()> {
        let mut v = [
            self.policy_loss,
            self.value_loss,
            self.clipfrac,
            self.value_clipfrac,
            self.approxkl,
            self.entropy,
            self.ratio,
        ];
        collective.all_reduce_sum_f64(&mut v)?;
        [
            self.policy_loss,
            self.value_loss,
            self.clipfrac,
            self.value_clipfrac,
            self.approxkl,
            self.entropy,
            self.ratio,
        ] = v;
        Ok(())
    }

    fn add(&mut self, o: &UpdateStats, w: f64) {
        self.policy_loss += w * o.policy_loss;
        self.value_loss += w * o.value_loss;
        self.clipfrac += w * o.clipfrac;
        self.value_clipfrac += w * o.value_clipfrac;
        self.approxkl += w * o.approxkl;
        self.entropy += w * o.entropy;
        self.ratio += w * o.ratio;
        self.grad_norm += w * o.grad_norm;
    }
}

/// The optimizers and learning rates of one step.
pub(crate) struct Optimizers<'a> {
    pub actor: &'a mut AdamW,
    pub critic: &'a mut AdamW,
    pub actor_lr: f64,
    pub critic_lr: f64,
    pub max_grad_norm: f64,
    pub on_non_finite: OnNonFinite,
    /// Gradients of both models are averaged over its ranks before clipping.
    pub collective: &'a dyn Collective,
}

/// Loss and statistics of one micro-batch (`rows` of the experience), scaled by its share
/// `scale` of the minibatch's tokens; gradients accumulate in actor and critic.
fn micro_batch(
    models: &Models,
    exp: &Experience,
    rows: &[usize],
    params: &PpoParams,
    scale: f64,
) -> Result<UpdateStats> {
    let picked: Vec<&Sample> = rows.iter().map(|&i| &exp.samples[i]).collect();
    let batch = RolloutBatch::new(&picked, models.pad_id, models.device())?;
    let index: Vec<i64> = rows.iter().map(|&i| i as i64).collect();
    let index = Tensor::from_slice(&index).to_device(models.device());
    let c = batch.completion_width;
    let take = |t: &Tensor| rows_of(t, &index, c);
    let (mask, old_lp, adv) = (
        take(&exp.mask),
        take(&exp.old_logprobs),
        take(&exp.advantages),
    );

    // Entropies are always computed: `policy/entropy_avg` is logged even without a bonus.
    let stats = completion_logprobs(&models.actor.lm.model, &batch, models.temperature, true)?;
    let clip = ClipRange {
        low: params.cliprange,
        high: params.cliprange,
    };
    let surrogate = clipped_surrogate(&stats.logprobs, &old_lp, &adv, clip);
    let policy_loss = masked_mean(&surrogate.loss, &mask);
    let entropy = stats
        .entropy
        .as_ref()
        .map(|e| masked_mean(e, &mask))
        .unwrap_or_else(|| policy_loss.zeros_like());
    let values = models.values(&batch);
    let v = value_loss(
        &values,
        &take(&exp.old_values),
        &take(&exp.returns),
        &mask,
        params.cliprange_value,
    )?;
    let loss = (&policy_loss - &entropy * params.ent_coef + &v.loss * params.vf_coef) * scale;
    loss.f_backward()?;

    let value = |t: &Tensor| -> Result<f64> { Ok(t.detach().f_double_value(&[])?) };
    tch::no_grad(|| -> Result<UpdateStats> {
        Ok(UpdateStats {
            policy_loss: value(&policy_loss)?,
            value_loss: value(&v.loss)?,
            clipfrac: value(&clip_fraction(&surrogate, &mask))?,
            value_clipfrac: v.clipfrac,
            approxkl: value(&approx_kl(&stats.logprobs, &old_lp, &mask))?,
            entropy: value(&entropy)?,
            ratio: value(&masked_mean(&surrogate.ratio, &mask))?,
            ..UpdateStats::default()
        })
    })
}

/// The PPO epochs over `exp` at PPO step `step`; epoch `i` orders its minibatches with
/// `step_seed(seed, step, 1 + i)`. In a world of several every rank draws the minibatches
/// of the whole step's rows and trains on its own rows of each (possibly none): token
/// means are over the minibatch's tokens on every rank, the statistics are summed over
/// ranks, so N ranks update exactly as one process with all the rows.
pub(crate) fn optimize(
    models: &Models,
    exp: &Experience,
    params: &PpoParams,
    opt: &mut Optimizers,
    seed: u64,
    step: u64,
) -> Result<UpdateStats> {
    let n = exp.samples.len();
    let collective = opt.collective;
    let world = collective.world_size() as f64;
    let (rows_global, offset) = global_rows(collective, n)?;
    let lengths: Vec<f64> = exp
        .samples
        .iter()
        .map(|s| s.completion_ids.len() as f64)
        .collect();
    let mut total = UpdateStats::default();
    for epoch in 0..params.epochs {
        let order = minibatches(
            rows_global,
            params.num_mini_batches,
            step_seed(seed, step, 1 + epoch as u64),
        );
        for global_minibatch in &order {
            // This rank's rows of the minibatch, as indices into its own samples.
            let minibatch: Vec<usize> = global_minibatch
                .iter()
                .filter(|&&i| i >= offset && i < offset + n)
                .map(|&i| i - offset)
                .collect();
            opt.actor.zero_grad();
            opt.critic.zero_grad();
            let local_tokens: f64 = minibatch.iter().map(|&i| lengths[i]).sum();
            let tokens = global_sums(collective, &[local_tokens])?[0].max(1.0);
            let mut sum = UpdateStats::default();
            for rows in MicroBatches::new(&minibatch, params.micro_batch_size) {
                let share = rows.iter().map(|&i| lengths[i]).sum::<f64>() / tokens;
                // The runtime's mean of gradients over ranks divides `world` back out.
                let s = micro_batch(models, exp, rows, params, share * world)?;
                sum.add(&s, share);
            }
            if collective.world_size() > 1 {
                sum.all_reduce_sum(collective)?;
            }
            opt.actor.all_reduce_grads(collective)?;
            opt.critic.all_reduce_grads(collective)?;
            let actor_norm = opt.actor.clip_grad_norm(opt.max_grad_norm)?;
            let critic_norm = opt.critic.clip_grad_norm(opt.max_grad_norm)?;
            let loss = sum.policy_loss + params.vf_coef * sum.value_loss;
            let norm = (actor_norm * actor_norm + critic_norm * critic_norm).sqrt();
            if check_finite(step, loss, norm, opt.on_non_finite)? {
                opt.actor.step(opt.actor_lr)?;
                opt.critic.step(opt.critic_lr)?;
            } else {
                opt.actor.zero_grad();
                opt.critic.zero_grad();
                total.skipped += 1;
            }
            sum.grad_norm = actor_norm;
            total.add(&sum, 1.0);
            total.updates += 1;
        }
    }
    models.actor.set_training(false);
    let updates = total.updates.max(1) as f64;
    let mut mean = UpdateStats::default();
    mean.add(&total, 1.0 / updates);
    mean.updates = total.updates;
    mean.skipped = total.skipped;
    Ok(mean)
}
