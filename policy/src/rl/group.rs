//! The loop GRPO and RLOO share. Per step: `num_generations` completions for each prompt,
//! old log-probs aligned when a rollout gets several updates, the reference's log-probs
//! when the KL weight `beta` is positive, the method's advantages, then `num_iterations`
//! passes over `num_minibatches` shuffled minibatches (split into micro-batches for
//! memory), one optimizer update each. The two differ only in their advantages and their
//! loss ([`GroupMethod`]); everything they log is computed here, one way:
//!
//! - the update metrics (`objective/entropy`, `policy/approxkl_avg`,
//!   `policy/clipfrac_avg`, `loss/policy_avg`, `val/ratio`) are means over the kept
//!   completion tokens of every micro-batch of every update of the step — a sequence-level
//!   quantity (RLOO's ratio) counts once per token of its sequence, and truncated
//!   completions left out of the loss are left out of every metric alike;
//! - `loss` and `grad_norm` are means over the step's updates;
//! - `objective/kl` is the mean summed KL of a completion, `kl` the per-token one, and
//!   `objective/rlhf_reward = objective/scores + objective/non_score_reward`
//!   with `objective/non_score_reward = −beta · objective/kl`.
//!
//! Data parallel: each rank generates for its share of the step's prompts (row seeds
//! follow the global row, so the samples are one process's), a prompt's group stays on
//! one rank, and the loss weights count the minibatch over all ranks, times the world
//! size, so the runtime's mean of gradients is the one-process gradient. That needs one
//! minibatch per iteration (a shuffle across ranks would move rows between them) and
//! group-level advantages; anything else is refused. The step metrics are the whole
//! step's: the token means from token sums over every rank, the row means weighted by
//! each rank's completions, the rollout metrics (shared with PPO) from all-reduced sums.

use std::time::Instant;

use tch::{Kind, Tensor};
use tiller_model::train::TrainOptions;
use tiller_reward::Reward;

use crate::error::Result;
use crate::rl::advantages::mean;
use crate::rl::loss::ClipRange;
use crate::rl::reference::Reference;
use crate::rl::rollout::{pad_rows, Sample, SequenceBatch};
use crate::rl::run::{minibatches, step_seed, RlProgress, RlSummary, Run, RunSpec};
use crate::rl::update::{align_old_logprobs, reference_logprobs, rollout_metrics, MicroBatches};

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
    pub batch: &'a SequenceBatch,
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
    /// Advantages of `samples` (in rollout order); `ref_logprobs` when `beta > 0`.
    fn advantages(
        &self,
        samples: &[Sample],
        ref_logprobs: Option<&[Vec<f32>]>,
    ) -> Result<StepAdvantages>;
    fn loss(&self, run: &Run, m: &MicroInputs) -> Result<MicroTerms>;
    /// Why the method's advantages need the whole batch (so ranks holding shares of it
    /// cannot compute them), if they do.
    fn batch_level(&self) -> Option<&'static str>;
}

/// Kept-token-weighted sums of the update metrics over a step.
#[derive(Default)]
struct UpdateStats {
    sums: [f64; 5],
    kl_sum: Option<f64>,
    tokens: f64,
    loss: f64,
    grad_norm: f64,
    updates: u64,
}

const UPDATE_KEYS: [&str; 5] = [
    "objective/entropy",
    "policy/approxkl_avg",
    "policy/clipfrac_avg",
    "loss/policy_avg",
    "val/ratio",
];

impl UpdateStats {
    fn add(&mut self, t: &MicroTerms, mask: &Tensor) -> Result<()> {
        let sum =
            |x: &Tensor| -> Result<f64> { Ok((x * mask).sum(Kind::Double).f_double_value(&[])?) };
        let terms = [
            &t.entropy,
            &t.approxkl,
            &t.clipped,
            &t.policy_loss,
            &t.ratio,
        ];
        for (s, x) in self.sums.iter_mut().zip(terms) {
            *s += sum(x)?;
        }
        if let Some(kl) = &t.kl {
            *self.kl_sum.get_or_insert(0.0) += sum(kl)?;
        }
        self.tokens += mask.sum(Kind::Double).f_double_value(&[])?;
        Ok(())
    }

    /// Every rank's token sums and kept tokens summed, so [`UpdateStats::means`] are the
    /// whole step's; returns the step's generated tokens per sample over every rank.
    /// (`loss` and `grad_norm` are the same on every rank already.)
    fn reduce(
        &mut self,
        collective: &dyn tiller_model::dist::Collective,
        generated_tokens: usize,
        samples: usize,
    ) -> Result<f64> {
        let mut v: Vec<f64> = self.sums.to_vec();
        v.extend([
            self.kl_sum.unwrap_or(0.0),
            f64::from(u8::from(self.kl_sum.is_some())),
            self.tokens,
            generated_tokens as f64,
            samples as f64,
        ]);
        collective.all_reduce_sum_f64(&mut v)?;
        self.sums.copy_from_slice(&v[..5]);
        self.kl_sum = (v[6] > 0.0).then_some(v[5]);
        self.tokens = v[7];
        Ok(v[8] / v[9].max(1.0))
    }

    fn means(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        let n = self.tokens.max(1.0);
        UPDATE_KEYS
            .into_iter()
            .zip(self.sums.iter().map(move |s| s / n))
    }
}

/// The step's metrics, under TRL's names (see the module docs for their definitions).
/// Returns them with the per-token KL (None without a reference).
fn step_metrics(
    p: &GroupParams,
    scores: &[f64],
    adv: &StepAdvantages,
    stats: &UpdateStats,
    tokens_per_sample: f64,
    with_reference: bool,
) -> (Vec<(&'static str, f64)>, Option<f64>) {
    let mean_score = mean(scores);
    let (kl_token, kl_seq) = match (&adv.sequence_kl, stats.kl_sum) {
        (Some(seq), _) => (mean(seq) / tokens_per_sample.max(1.0), mean(seq)),
        (None, Some(sum)) => {
            let per_token = sum / stats.tokens.max(1.0);
            (per_token, per_token * tokens_per_sample)
        }
        (None, None) => (0.0, 0.0),
    };
    let updates = stats.updates.max(1) as f64;
    let mut out = vec![
        ("objective/scores", mean_score),
        ("objective/non_score_reward", -p.beta * kl_seq),
        ("objective/rlhf_reward", mean_score - p.beta * kl_seq),
        ("loss", stats.loss / updates),
        ("grad_norm", stats.grad_norm / updates),
    ];
    out.extend(stats.means());
    out.extend(adv.metrics.iter().copied());
    let kl = with_reference.then_some(kl_token);
    if kl.is_some() {
        out.extend([("objective/kl", kl_seq), ("kl", kl_token)]);
    }
    (out, kl)
}

/// Runs a GRPO-family method over the run `spec` describes.
pub(crate) fn train_group(
    spec: &RunSpec,
    method: &dyn GroupMethod,
    reference_config: &crate::rl::config::ReferenceConfig,
    temperature: f64,
    reward: Option<Box<dyn Reward>>,
    options: &TrainOptions,
    on_step: &mut dyn FnMut(&RlProgress),
) -> Result<RlSummary> {
    let p = method.params();
    let world = options.collective.world_size();
    if world > 1 {
        let why = match (p.num_minibatches, method.batch_level()) {
            (1, None) => None,
            (1, Some(why)) => Some(why.to_owned()),
            (n, _) => Some(format!(
                "num_minibatches = {n} shuffles rows across the whole batch (use 1)"
            )),
        };
        if let Some(why) = why {
            return Err(crate::PolicyError::Invalid(format!(
                "{} does not run data parallel with this config: {why}; run it as one process",
                spec.label
            )));
        }
    }
    let mut run = Run::start(spec, reward, options)?;
    let reference = (p.beta > 0.0)
        .then(|| Reference::load(reference_config, spec.run.model, &run.trainee))
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
        let adv = method.advantages(samples, refs.as_deref())?;
        let kept = |i: usize| !(p.mask_truncated_completions && samples[i].truncated());

        let mut stats = UpdateStats::default();
        for iteration in 0..p.num_iterations {
            let seed = step_seed(spec.run.seed, step, 1 + iteration as u64);
            let mut batches = minibatches(samples.len(), p.num_minibatches, seed);
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
                    let batch = SequenceBatch::new(&picked, pad_id, device)?;
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
        let (metrics, kl) = step_metrics(
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
        for (key, value) in metrics {
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
            kl,
        });
    }
    summary.steps = run.rt.state.step;
    drop(reference);
    run.finish(spec)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rows: &[&[f32]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_slice(&flat).view([rows.len() as i64, rows[0].len() as i64])
    }

    /// Terms whose every metric is `values` (and no loss to speak of).
    fn terms(values: &Tensor, kl: Option<Tensor>) -> MicroTerms {
        MicroTerms {
            loss: Tensor::from_slice(&[0.0f32]),
            policy_loss: values.shallow_clone(),
            ratio: values.shallow_clone(),
            clipped: values.shallow_clone(),
            approxkl: values.shallow_clone(),
            entropy: values.shallow_clone(),
            kl,
        }
    }

    fn params(beta: f64) -> GroupParams {
        GroupParams {
            num_generations: 2,
            num_iterations: 1,
            num_minibatches: 1,
            micro_batch_size: None,
            mask_truncated_completions: true,
            beta,
            clip: ClipRange {
                low: 0.2,
                high: 0.2,
            },
        }
    }

    #[test]
    fn update_metrics_are_means_over_kept_tokens_of_every_micro_batch() {
        let mut stats = UpdateStats::default();
        // Micro-batch 1: two tokens of row 0 count; row 1 is a truncated completion left
        // out of the loss (mask 0), so its huge values count for nothing.
        let mask1 = t(&[&[1.0, 1.0, 0.0], &[0.0, 0.0, 0.0]]);
        stats
            .add(
                &terms(&t(&[&[1.0, 2.0, 50.0], &[99.0, 99.0, 99.0]]), None),
                &mask1,
            )
            .unwrap();
        // Micro-batch 2: one token.
        let mask2 = t(&[&[1.0, 0.0, 0.0]]);
        stats
            .add(&terms(&t(&[&[4.0, 8.0, 8.0]]), None), &mask2)
            .unwrap();
        let means: Vec<(&str, f64)> = stats.means().collect();
        assert_eq!(means.len(), UPDATE_KEYS.len());
        for (key, mean) in means {
            // (1 + 2 + 4) / 3 tokens: weighted by token, not averaged per micro-batch.
            assert!((mean - 7.0 / 3.0).abs() < 1e-9, "{key}: {mean}");
        }
    }

    #[test]
    fn a_sequence_ratio_counts_once_per_token_of_its_sequence() {
        // RLOO's terms are per sequence, broadcast over the sequence's tokens: a 3-token
        // sequence with ratio 2 and a 1-token one with ratio 1 give (3·2 + 1)/4.
        let mask = t(&[&[1.0, 1.0, 1.0], &[1.0, 0.0, 0.0]]);
        let seq = Tensor::from_slice(&[2.0f32, 1.0]);
        let per_token = seq.unsqueeze(1) * &mask;
        let mut stats = UpdateStats::default();
        stats.add(&terms(&per_token, None), &mask).unwrap();
        let ratio = stats.means().find(|(k, _)| *k == "val/ratio").unwrap().1;
        assert!((ratio - 7.0 / 4.0).abs() < 1e-9, "{ratio}");
    }

    #[test]
    fn objective_metrics_are_defined_one_way_for_both_methods() {
        let scores = [1.0, 3.0];
        let mut stats = UpdateStats {
            loss: 0.6,
            grad_norm: 4.0,
            updates: 2,
            tokens: 8.0,
            ..UpdateStats::default()
        };
        // RLOO: summed KL per completion from its advantages; 4 tokens per completion.
        let rloo = StepAdvantages {
            advantages: vec![-1.0, 1.0],
            sequence_kl: Some(vec![0.4, 0.8]),
            metrics: vec![],
        };
        let (m, kl) = step_metrics(&params(0.5), &scores, &rloo, &stats, 4.0, true);
        let get = |m: &[(&str, f64)], k: &str| m.iter().find(|(key, _)| *key == k).unwrap().1;
        assert!((get(&m, "objective/kl") - 0.6).abs() < 1e-12);
        assert!((kl.unwrap() - 0.15).abs() < 1e-12);
        assert!((get(&m, "objective/rlhf_reward") - (2.0 - 0.5 * 0.6)).abs() < 1e-12);
        assert!((get(&m, "loss") - 0.3).abs() < 1e-12);
        assert!((get(&m, "grad_norm") - 2.0).abs() < 1e-12);
        // GRPO: per-token KL from its loss terms (sum over 8 kept tokens = 1.2).
        stats.kl_sum = Some(1.2);
        let grpo = StepAdvantages {
            sequence_kl: None,
            ..rloo
        };
        let (m, kl) = step_metrics(&params(0.5), &scores, &grpo, &stats, 4.0, true);
        assert!((kl.unwrap() - 0.15).abs() < 1e-12);
        assert!((get(&m, "objective/kl") - 0.6).abs() < 1e-12);
        let non_score = get(&m, "objective/non_score_reward");
        assert!((get(&m, "objective/rlhf_reward") - (2.0 + non_score)).abs() < 1e-12);
        // Without a reference nothing KL-named is logged.
        let (m, kl) = step_metrics(&params(0.0), &scores, &grpo, &stats, 4.0, false);
        assert!(kl.is_none() && !m.iter().any(|(k, _)| *k == "kl" || *k == "objective/kl"));
    }
}
