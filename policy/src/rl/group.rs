//! The loop GRPO and RLOO share. Per step: `num_generations` completions for each prompt,
//! old log-probs aligned when a rollout gets several updates, the reference's log-probs
//! when the KL weight `beta` is positive, the method's advantages, then `num_iterations`
//! passes over `num_minibatches` shuffled minibatches (split into micro-batches for
//! memory), one optimizer update each. The two differ only in their advantages and their
//! loss ([`GroupMethod`]); everything they log is computed one way, in
//! [`crate::rl::group_metrics`].
//!
//! Data parallel: each rank generates for its share of the step's prompts (row seeds
//! follow the global row, so the samples are one process's), a prompt's group stays on
//! one rank, and the loss weights count the minibatch over all ranks, times the world
//! size, so the runtime's mean of gradients is the one-process gradient. Batch-level
//! advantage statistics (GRPO's `scale_rewards = "batch"`, RLOO's whitening) come from
//! all-reduced moments. Minibatches are drawn over the whole step's rows and each rank
//! trains on its own rows of each (possibly none), as PPO does. The step metrics are the whole
//! step's: the token means from token sums over every rank, the row means weighted by
//! each rank's completions, the rollout metrics (shared with PPO) from all-reduced sums.

use std::time::Instant;

use tch::Tensor;
use tiller_model::dist::Collective;
use tiller_model::train::TrainOptions;
use tiller_reward::Reward;

use crate::error::Result;
use crate::reference::ReferenceModel;
use crate::rl::advantages::mean;
use crate::rl::group_metrics::{step_metrics, UpdateStats};
use crate::rl::loss::ClipRange;
use crate::rl::rollout::{pad_rows, RolloutBatch, Sample};
use crate::rl::run::{minibatches, step_seed, RlProgress, RlSummary, Run, RunSpec};
use crate::rl::update::{
    align_old_logprobs, global_rows, reference_logprobs, rollout_metrics, MicroBatches,
};

/// The knobs both methods have, under the same names in `[grpo]` and `[rloo]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupParams {
    pub num_generations: usize,
    pub num_iterations: usize,
    pub num_minibatches: usize,
    pub micro_batch_size: Option<usize>,
    pub mask_truncated_completions: bool,
    pub beta: f64,
    pub clip: ClipRange,
}

impl GroupParams {
    /// Whether each rollout gets exactly one optimizer update (TRL's default): the policy
    /// being trained is then the sampling one, and its detached log-probs are the old ones.
    pub fn single_update(&self) -> bool {
        self.num_iterations == 1 && self.num_minibatches == 1
    }
}

/// The advantages of a step's completions, and what the method computed on the way.
pub(crate) struct StepAdvantages {
    pub advantages: Vec<f64>,
    /// Each completion's summed KL to the reference under the sampling policy, when the
    /// method uses it in its rewards (RLOO); logged as a `samples.jsonl` column.
    pub sequence_kl: Option<Vec<f64>>,
    /// Extra step metrics of the advantage computation (GRPO's `frac_reward_zero_std`).
    pub metrics: Vec<(&'static str, f64)>,
}

/// One micro-batch as the loss sees it.
pub(crate) struct MicroInputs<'a> {
    pub batch: &'a RolloutBatch,
    /// (b, C): 1 on completion tokens of completions kept in the loss.
    pub mask: &'a Tensor,
    /// (b,): 1 for completions kept in the loss.
    pub keep: &'a Tensor,
    /// (b,) advantages.
    pub advantages: &'a Tensor,
    /// (b, C) reference log-probs, when `beta > 0`.
    pub ref_logprobs: Option<&'a Tensor>,
    /// Rows and kept completion tokens of the whole minibatch (so accumulation is exact).
    pub minibatch_rows: usize,
    pub minibatch_tokens: f64,
}

/// A micro-batch's loss and the per-token terms every metric is computed from. Every
/// tensor but `loss` is detached and (b, C); sequence-level terms are broadcast over the
/// sequence's tokens.
pub(crate) struct MicroTerms {
    /// The micro-batch's share of the minibatch loss (summed over micro-batches: the loss).
    pub loss: Tensor,
    pub policy_loss: Tensor,
    pub ratio: Tensor,
    pub clipped: Tensor,
    /// `(logp − old_logp)² / 2`.
    pub approxkl: Tensor,
    pub entropy: Tensor,
    /// Per-token KL to the reference under the policy being trained (GRPO's KL term).
    pub kl: Option<Tensor>,
}

/// What GRPO and RLOO each define.
pub(crate) trait GroupMethod {
    fn params(&self) -> GroupParams;
    /// Advantages of `samples` (in rollout order; this rank's share of the step);
    /// `ref_logprobs` when `beta > 0`. Batch-level statistics are over every rank's
    /// samples, through `collective`.
    fn advantages(
        &self,
        samples: &[Sample],
        ref_logprobs: Option<&[Vec<f32>]>,
        collective: &dyn Collective,
    ) -> Result<StepAdvantages>;
    fn loss(&self, run: &Run, m: &MicroInputs) -> Result<MicroTerms>;
}

/// Runs a GRPO-family method over the run `spec` describes.
pub(crate) fn train_group(
    spec: &RunSpec,
    method: &dyn GroupMethod,
    reference_config: &crate::reference::ReferenceModelConfig,
    temperature: f64,
    reward: Option<Box<dyn Reward>>,
    options: &TrainOptions,
    on_step: &mut dyn FnMut(&RlProgress),
) -> Result<RlSummary> {
    let p = method.params();
    let world = options.collective.world_size();
    let mut run = Run::start(spec, reward, options)?;
    let reference = (p.beta > 0.0)
        .then(|| ReferenceModel::for_kl(reference_config, spec.run.model, &run.trainee))
        .transpose()?;
    let device = run.trainee.lm.device();
    let pad_id = run.tokenizer.pad_id;
    let mut summary = RlSummary::new(spec.run.out);

    while !run.rt.done() {
        run.rt.begin_step();
        let step = run.rt.state.step + 1;
        let mut rollout = run.rollout(spec, p.num_generations)?;
        let started = Instant::now();
        if !p.single_update() {
            align_old_logprobs(&run, &mut rollout.samples, p.micro_batch_size, temperature)?;
        }
        let samples = &rollout.samples;
        run.begin_updates();
        let refs = match &reference {
            Some(r) => Some(reference_logprobs(
                r,
                &run,
                samples,
                p.micro_batch_size,
                temperature,
            )?),
            None => None,
        };
        let adv = method.advantages(samples, refs.as_deref(), options.collective.as_ref())?;
        let kept = |i: usize| !(p.mask_truncated_completions && samples[i].truncated());

        let mut stats = UpdateStats::default();
        let (rows_global, offset) = global_rows(options.collective.as_ref(), samples.len())?;
        for iteration in 0..p.num_iterations {
            let seed = step_seed(spec.run.seed, step, 1 + iteration as u64);
            // Minibatches of the whole step's rows; each rank trains on its own rows of
            // each (as indices into its samples), as PPO does.
            let mut batches: Vec<Vec<usize>> = minibatches(rows_global, p.num_minibatches, seed)
                .iter()
                .map(|global| {
                    global
                        .iter()
                        .filter(|&&i| i >= offset && i < offset + samples.len())
                        .map(|&i| i - offset)
                        .collect()
                })
                .collect();
            if batches.is_empty() && world > 1 {
                // A rank left without prompts at an epoch's end still joins the update.
                batches.push(Vec::new());
            }
            for rows in batches {
                let local_tokens: usize = rows
                    .iter()
                    .filter(|&&i| kept(i))
                    .map(|&i| samples[i].completion_ids.len())
                    .sum();
                // The minibatch over all ranks (itself in a world of one).
                let global = run
                    .rt
                    .global_sums(&[rows.len() as f64, local_tokens as f64])?;
                let (minibatch_rows, minibatch_tokens) = (global[0] as usize, global[1]);
                run.optimizer.zero_grad();
                let mut loss_sum = 0.0;
                for micro in MicroBatches::new(&rows, p.micro_batch_size) {
                    let picked: Vec<&Sample> = micro.iter().map(|&i| &samples[i]).collect();
                    let batch = RolloutBatch::new(&picked, pad_id, device)?;
                    let keep: Vec<f32> = micro
                        .iter()
                        .map(|&i| f32::from(u8::from(kept(i))))
                        .collect();
                    let keep = Tensor::from_slice(&keep).to_device(device);
                    let mask = &batch.completion_mask * keep.unsqueeze(1);
                    let values: Vec<f32> =
                        micro.iter().map(|&i| adv.advantages[i] as f32).collect();
                    let advantages = Tensor::from_slice(&values).to_device(device);
                    let ref_rows = refs.as_ref().map(|r| {
                        let rows: Vec<&[f32]> = micro.iter().map(|&i| r[i].as_slice()).collect();
                        pad_rows(&rows, batch.completion_width as usize, device)
                    });
                    let terms = method.loss(
                        &run,
                        &MicroInputs {
                            batch: &batch,
                            mask: &mask,
                            keep: &keep,
                            advantages: &advantages,
                            ref_logprobs: ref_rows.as_ref(),
                            minibatch_rows,
                            minibatch_tokens,
                        },
                    )?;
                    match world {
                        1 => terms.loss.f_backward()?,
                        _ => (&terms.loss * world as f64).f_backward()?,
                    }
                    loss_sum += terms.loss.f_double_value(&[])?;
                    stats.add(&terms, &mask)?;
                }
                if world > 1 {
                    loss_sum = run.rt.global_sums(&[loss_sum])?[0];
                }
                let update = run.rt.apply_update(&mut run.optimizer, loss_sum)?;
                summary.skipped_updates += u64::from(!update.applied);
                stats.loss += loss_sum;
                stats.grad_norm += update.grad_norm;
                stats.updates += 1;
            }
        }
        let training_seconds = started.elapsed().as_secs_f64();

        let scores: Vec<f64> = samples.iter().map(|s| s.score).collect();
        let mut tokens_per_sample = rollout.generated_tokens as f64 / samples.len().max(1) as f64;
        if world > 1 {
            // The token means and tokens per sample of the whole step, on every rank.
            tokens_per_sample = stats.reduce(
                options.collective.as_ref(),
                rollout.generated_tokens,
                samples.len(),
            )?;
        }
        let metrics = step_metrics(
            &p,
            &scores,
            &adv,
            &stats,
            tokens_per_sample,
            reference.is_some(),
        );
        rollout_metrics(
            &mut run.rt.window,
            &rollout,
            training_seconds,
            options.collective.as_ref(),
        )?;
        // Ranks' shares of a step can differ (an epoch's short last batch): their means
        // are weighted by their completions, so the logged mean is the whole step's.
        let rows = samples.len() as f64;
        for (key, value) in metrics.entries() {
            match world {
                1 => run.rt.window.add(key, value),
                _ => run.rt.window.add_sum(key, value * rows, rows),
            }
        }
        let mean_score = mean(&scores);
        summary.record(mean_score, &rollout, training_seconds);
        let mut columns: Vec<(&str, &[f64])> = vec![("advantage", &adv.advantages)];
        if let Some(kl) = &adv.sequence_kl {
            columns.push(("kl", kl));
        }
        run.end_step(spec, rollout.generated_tokens as u64, samples, &columns)?;
        if run.rt.saves_now() {
            run.checkpoint(spec)?;
        }
        on_step(&RlProgress {
            step,
            total_steps: run.rt.total_steps(),
            reward: mean_score,
            kl: metrics.kl.map(|kl| kl.token),
        });
    }
    summary.steps = run.rt.state.step;
    drop(reference);
    run.finish(spec)?;
    Ok(summary)
}
