//! RLOO (Ahmadian et al. 2024, "Back to Basics"): per step, `k` completions per prompt;
//! each completion's reward is its score minus `beta ×` its summed KL to the reference
//! (k1 by default), its advantage that reward minus the mean reward of the *other* `k − 1`
//! completions; the update is REINFORCE on the whole sequence's log-prob with PPO-style
//! clipping of the sequence ratio, as TRL 1.16's `RLOOTrainer`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};
use tiller_model::train::{check_finite, OptimConfig, ScheduleConfig, TrainConfig};
use tiller_model::DType;
use tiller_reward::Reward;

use crate::error::{PolicyError, Result};
use crate::rl::advantages::{rloo_advantages, whiten};
use crate::rl::config::{ReferenceConfig, RewardConfig, RolloutConfig};
use crate::rl::kl::KlEstimator;
use crate::rl::loss::{approx_kl, clipped_surrogate, ClipRange};
use crate::rl::reference::Reference;
use crate::rl::rollout::{completion_logprobs, masked_mean, Sample, SequenceBatch};
use crate::rl::run::{minibatches, step_seed, MetricWindow, RlProgress, RlSummary, Run, RunSpec};
use crate::rl::update::{align_old_logprobs, reference_logprobs, rollout_metrics, MicroBatches};
use crate::sft::SftLora;

/// `rloo.toml`: the same sections as `grpo.toml`, with `[rloo]` instead of `[grpo]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlooConfig {
    pub model: PathBuf,
    pub out: PathBuf,
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default)]
    pub dtype: DType,
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub rollout: RolloutConfig,
    #[serde(default)]
    pub reward: RewardConfig,
    #[serde(default)]
    pub reference: ReferenceConfig,
    #[serde(default)]
    pub rloo: RlooParams,
    /// `batch_size` = prompts per step; `grad_accum` must be 1.
    #[serde(default)]
    pub train: TrainConfig,
    /// TRL's RLOO default learning rate is 1e-6 (tiller's `[optim]` default is 2e-5).
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub lora: Option<SftLora>,
}

fn default_device() -> String {
    "cpu".into()
}
fn default_seed() -> u64 {
    42
}

/// `[rloo]`. Defaults are TRL 1.16's `RLOOConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlooParams {
    /// Completions per prompt, k (TRL 2; the RLOO paper uses 2–4).
    #[serde(default = "default_k")]
    pub num_generations: usize,
    /// KL penalty in the reward (TRL 0.05; OpenRLHF `init_kl_coef` 0.01). 0: no reference.
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// Per-token estimator summed over the completion (TRL: k1).
    #[serde(default = "default_estimator")]
    pub kl_estimator: KlEstimator,
    /// Clip ε of the sequence ratio (TRL 0.2).
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    #[serde(default)]
    pub epsilon_high: Option<f64>,
    /// Whiten the advantages over the rollout (TRL false).
    #[serde(default)]
    pub normalize_advantages: bool,
    /// Passes over each rollout (TRL `num_iterations` 1).
    #[serde(default = "one")]
    pub num_iterations: usize,
    #[serde(default = "one")]
    pub num_minibatches: usize,
    #[serde(default)]
    pub micro_batch_size: Option<usize>,
    /// Truncated completions get no gradient (TRL default false).
    #[serde(default)]
    pub mask_truncated_completions: bool,
}

fn default_k() -> usize {
    2
}
fn default_beta() -> f64 {
    0.05
}
fn default_estimator() -> KlEstimator {
    KlEstimator::K1
}
fn default_epsilon() -> f64 {
    0.2
}
fn one() -> usize {
    1
}

impl RlooParams {
    /// Whether each rollout gets exactly one optimizer update (TRL's default).
    pub fn single_update(&self) -> bool {
        self.num_iterations == 1 && self.num_minibatches == 1
    }
}

impl Default for RlooParams {
    fn default() -> Self {
        toml::from_str("").unwrap_or_else(|_| unreachable!("every field has a default"))
    }
}

impl RlooConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config_file::read(path, Self::validate)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        crate::rl::update::validate_common(&self.train, &self.optim)?;
        self.rollout.validate()?;
        self.reward.validate()?;
        let r = &self.rloo;
        if r.num_generations < 2 {
            return Err(
                "rloo.num_generations must be at least 2 (the baseline needs the others)".into(),
            );
        }
        if r.num_iterations == 0 || r.num_minibatches == 0 || r.micro_batch_size == Some(0) {
            return Err(
                "rloo.num_iterations, num_minibatches and micro_batch_size must be at least 1"
                    .into(),
            );
        }
        if !(r.beta >= 0.0 && r.epsilon > 0.0 && r.epsilon_high.unwrap_or(1.0) > 0.0) {
            return Err("rloo.beta must be ≥ 0 and rloo.epsilon(_high) > 0".into());
        }
        Ok(())
    }

    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self)
            .map_err(|e| PolicyError::Invalid(format!("cannot serialize the config: {e}")))
    }

    fn spec(&self) -> Result<RunSpec<'_>> {
        Ok(RunSpec {
            model: &self.model,
            out: &self.out,
            device: &self.device,
            dtype: self.dtype,
            seed: self.seed,
            lora: self.lora.as_ref(),
            rollout: &self.rollout,
            reward: &self.reward,
            train: &self.train,
            optim: &self.optim,
            schedule: self.schedule,
            config_toml: self.to_toml()?,
            config_name: "rloo_config.toml",
        })
    }
}

/// Runs RLOO as `config` says; with `resume`, continues from the newest checkpoint.
pub fn train(
    config: &RlooConfig,
    resume: bool,
    on_step: &mut dyn FnMut(&RlProgress),
) -> Result<RlSummary> {
    train_with(config, None, resume, on_step)
}

/// [`train`] with `reward` (any [`Reward`], e.g. a closure) instead of `[reward]`'s.
pub fn train_with(
    config: &RlooConfig,
    reward: Option<Box<dyn Reward>>,
    resume: bool,
    on_step: &mut dyn FnMut(&RlProgress),
) -> Result<RlSummary> {
    let spec = config.spec()?;
    let mut run = Run::start(&spec, reward, resume)?;
    let r = &config.rloo;
    let reference = (r.beta > 0.0)
        .then(|| Reference::load(&config.reference, &config.model, &run.trainee))
        .transpose()?;
    let clip = ClipRange {
        low: r.epsilon,
        high: r.epsilon_high.unwrap_or(r.epsilon),
    };
    let temperature = config.rollout.temperature;
    let device = run.trainee.lm.device();
    let pad_id = run.tokenizer.pad_id;
    let total_steps = run.state.total_steps;
    let mut window = MetricWindow::default();
    let mut summary = RlSummary::new(&config.out);

    while run.state.step < total_steps {
        let step = run.state.step + 1;
        let lr = config
            .schedule
            .lr(config.optim.lr, run.state.step, total_steps);
        let mut rollout = run.rollout(&spec, r.num_generations)?;
        let started = Instant::now();
        if !r.single_update() {
            align_old_logprobs(&run, &mut rollout.samples, r.micro_batch_size, temperature)?;
        }
        let samples = &rollout.samples;
        run.begin_updates();

        // Sequence KL to the reference (per token, summed) under the sampling policy.
        let kl: Vec<f64> = match &reference {
            Some(reference) => {
                let refs =
                    reference_logprobs(reference, &run, samples, r.micro_batch_size, temperature)?;
                samples
                    .iter()
                    .zip(&refs)
                    .map(|(s, rl)| {
                        s.old_logprobs
                            .iter()
                            .zip(rl)
                            .map(|(&p, &q)| r.kl_estimator.value(p as f64, q as f64))
                            .sum()
                    })
                    .collect()
            }
            None => vec![0.0; samples.len()],
        };
        let scores: Vec<f64> = samples.iter().map(|s| s.score).collect();
        let rewards: Vec<f64> = scores
            .iter()
            .zip(&kl)
            .map(|(s, k)| s - r.beta * k)
            .collect();
        let mut advantages = rloo_advantages(&rewards, r.num_generations)?;
        if r.normalize_advantages {
            advantages = whiten(&advantages);
        }

        let (mut stats, mut loss_total, mut grad_total, mut updates) =
            (MetricWindow::default(), 0.0, 0.0, 0u64);
        for iteration in 0..r.num_iterations {
            let order = minibatches(
                samples.len(),
                r.num_minibatches,
                step_seed(config.seed, step, 1 + iteration as u64),
            );
            for rows in order {
                run.optimizer.zero_grad();
                let mut loss_sum = 0.0;
                for micro in MicroBatches::new(&rows, r.micro_batch_size) {
                    let picked: Vec<&Sample> = micro.iter().map(|&i| &samples[i]).collect();
                    let batch = SequenceBatch::new(&picked, pad_id, device)?;
                    let keep: Vec<f32> = micro
                        .iter()
                        .map(|&i| {
                            f32::from(u8::from(
                                !(r.mask_truncated_completions && samples[i].truncated()),
                            ))
                        })
                        .collect();
                    let keep = Tensor::from_slice(&keep).to_device(device);
                    let adv: Vec<f32> = micro.iter().map(|&i| advantages[i] as f32).collect();
                    let adv = Tensor::from_slice(&adv).to_device(device);
                    let tokens =
                        completion_logprobs(&run.trainee.lm.model, &batch, temperature, true)?;
                    let mask = &batch.completion_mask;
                    let logp = (&tokens.logprobs * mask).sum_dim_intlist(-1, false, Kind::Float);
                    // One update per rollout: the sampling policy is the one being
                    // trained, and its detached log-probs are the old ones (as TRL).
                    let old = if r.single_update() {
                        logp.detach()
                    } else {
                        (&batch.old_logprobs * mask).sum_dim_intlist(-1, false, Kind::Float)
                    };
                    let s = clipped_surrogate(&logp, &old, &adv, clip);
                    // Mean over the minibatch's sequences.
                    let loss = (&s.loss * &keep).sum(Kind::Float) / rows.len() as f64;
                    loss.f_backward()?;
                    loss_sum += loss.double_value(&[]);
                    let entropy = tokens.entropy.unwrap_or_else(|| mask.zeros_like()).detach();
                    for (key, value) in [
                        (
                            "objective/entropy",
                            masked_mean(&entropy, mask).double_value(&[]),
                        ),
                        (
                            "policy/approxkl_avg",
                            approx_kl(&logp.detach(), &old, &keep).double_value(&[]),
                        ),
                        (
                            "policy/clipfrac_avg",
                            s.clipped.mean(Kind::Float).double_value(&[]),
                        ),
                        (
                            "loss/policy_avg",
                            s.loss.detach().mean(Kind::Float).double_value(&[]),
                        ),
                        (
                            "val/ratio",
                            s.ratio.detach().mean(Kind::Float).double_value(&[]),
                        ),
                    ] {
                        for _ in 0..micro.len() {
                            stats.add(key, value);
                        }
                    }
                }
                let grad_norm = run.optimizer.clip_grad_norm(config.optim.max_grad_norm)?;
                if check_finite(step, loss_sum, grad_norm, config.train.on_non_finite)? {
                    run.optimizer.step(lr)?;
                } else {
                    run.optimizer.zero_grad();
                    summary.skipped_updates += 1;
                }
                (loss_total, grad_total, updates) =
                    (loss_total + loss_sum, grad_total + grad_norm, updates + 1);
            }
        }
        let training_seconds = started.elapsed().as_secs_f64();
        run.end_step(rollout.generated_tokens as u64);

        let mean = crate::rl::advantages::mean;
        let mean_score = mean(&scores);
        let mean_kl_seq = mean(&kl);
        let tokens_per_sample = rollout.generated_tokens as f64 / samples.len().max(1) as f64;
        rollout_metrics(&mut window, &rollout, training_seconds);
        for (key, value) in stats.drain() {
            window.add(&key, value);
        }
        for (key, value) in [
            ("objective/scores", mean_score),
            ("objective/non_score_reward", -r.beta * mean_kl_seq),
            ("objective/rlhf_reward", mean(&rewards)),
            ("loss", loss_total / updates.max(1) as f64),
            ("grad_norm", grad_total / updates.max(1) as f64),
            ("learning_rate", lr),
        ] {
            window.add(key, value);
        }
        let kl_token = reference
            .as_ref()
            .map(|_| mean_kl_seq / tokens_per_sample.max(1.0));
        if let Some(kl) = kl_token {
            window.add("objective/kl", mean_kl_seq);
            window.add("kl", kl);
        }
        summary.record(mean_score, &rollout, training_seconds);
        run.log_step(
            &spec,
            &mut window,
            samples,
            &[("advantage", &advantages), ("kl", &kl)],
        )?;
        if config.train.save_every > 0 && step % config.train.save_every == 0 {
            run.checkpoint(&spec)?;
        }
        on_step(&RlProgress {
            step,
            total_steps,
            reward: mean_score,
            kl: kl_token,
        });
    }
    summary.steps = run.state.step;
    drop(reference);
    run.finish(&spec)?;
    Ok(summary)
}
