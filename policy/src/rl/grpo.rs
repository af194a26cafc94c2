//! GRPO (Shao et al. 2024, DeepSeekMath): per step, `num_generations` completions for
//! each prompt, advantages normalized within each prompt's group (or, Dr.GRPO, only
//! centered), then `num_iterations` passes of the clipped surrogate over minibatches, with
//! an optional per-token KL term to a frozen reference (`beta`, k3 as TRL).
//!
//! ```toml
//! model = "models/smollm2-135m-instruct"
//! out = "runs/grpo"
//! [rollout]
//! prompts = "data/prompts/train.jsonl"
//! max_new_tokens = 48
//! [[reward.rules]]
//! kind = "length"
//! target_words = 10
//! [grpo]
//! num_generations = 4
//! [train]
//! batch_size = 4        # prompts per step (× num_generations completions)
//! max_steps = 20
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};
use tiller_model::train::{check_finite, OptimConfig, ScheduleConfig, TrainConfig};
use tiller_model::DType;
use tiller_reward::Reward;

use crate::error::{PolicyError, Result};
use crate::rl::advantages::{group_advantages, group_stds, ScaleRewards};
use crate::rl::config::{ReferenceConfig, RewardConfig, RolloutConfig};
use crate::rl::kl::KlEstimator;
use crate::rl::loss::{approx_kl, clip_fraction, clipped_surrogate, ClipRange, LossType};
use crate::rl::reference::Reference;
use crate::rl::rollout::{completion_logprobs, masked_mean, pad_rows, Sample, SequenceBatch};
use crate::rl::run::{minibatches, step_seed, MetricWindow, RlProgress, RlSummary, Run, RunSpec};
use crate::rl::update::{align_old_logprobs, reference_logprobs, rollout_metrics, MicroBatches};
use crate::sft::SftLora;

/// `grpo.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpoConfig {
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
    pub grpo: GrpoParams,
    /// `batch_size` = prompts per step; `grad_accum` must be 1 (use `grpo.micro_batch_size`).
    #[serde(default)]
    pub train: TrainConfig,
    /// TRL's GRPO default learning rate is 1e-6 (tiller's `[optim]` default is 2e-5).
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

/// `[grpo]`. Defaults are TRL 1.16's `GRPOConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpoParams {
    /// Completions per prompt, G (TRL 8; OpenRLHF `n_samples_per_prompt` 1).
    #[serde(default = "default_generations")]
    pub num_generations: usize,
    /// Weight of the KL term in the loss (TRL 0.0: no reference is loaded; DeepSeekMath 0.04).
    #[serde(default)]
    pub beta: f64,
    #[serde(default)]
    pub kl_estimator: KlEstimator,
    /// Lower clip ε (TRL 0.2; OpenRLHF `eps_clip` 0.2).
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// Upper clip ε; absent: `epsilon` (DAPO uses 0.28).
    #[serde(default)]
    pub epsilon_high: Option<f64>,
    /// Passes over each rollout, μ (TRL 1).
    #[serde(default = "one")]
    pub num_iterations: usize,
    /// Optimizer updates per pass: the rollout is shuffled and cut into this many.
    #[serde(default = "one")]
    pub num_minibatches: usize,
    /// Rows per forward/backward (memory only; the update is the same). Absent: a whole
    /// minibatch at once.
    #[serde(default)]
    pub micro_batch_size: Option<usize>,
    #[serde(default)]
    pub scale_rewards: ScaleRewards,
    #[serde(default)]
    pub loss_type: LossType,
    /// Leave truncated completions out of the loss (DAPO; TRL default false).
    #[serde(default)]
    pub mask_truncated_completions: bool,
}

fn default_generations() -> usize {
    8
}
fn default_epsilon() -> f64 {
    0.2
}
fn one() -> usize {
    1
}

impl Default for GrpoParams {
    fn default() -> Self {
        toml::from_str("").unwrap_or_else(|_| unreachable!("every field has a default"))
    }
}

impl GrpoParams {
    /// Whether each rollout gets exactly one optimizer update (TRL's default).
    pub fn single_update(&self) -> bool {
        self.num_iterations == 1 && self.num_minibatches == 1
    }
}

impl GrpoConfig {
    /// Reads and validates a TOML file; errors name the file and the offending key.
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config_file::read(path, Self::validate)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        crate::rl::update::validate_common(&self.train, &self.optim)?;
        self.rollout.validate()?;
        self.reward.validate()?;
        let g = &self.grpo;
        if g.num_generations < 2 {
            return Err(
                "grpo.num_generations must be at least 2 (advantages compare a group)".into(),
            );
        }
        if g.num_iterations == 0 || g.num_minibatches == 0 || g.micro_batch_size == Some(0) {
            return Err(
                "grpo.num_iterations, num_minibatches and micro_batch_size must be at least 1"
                    .into(),
            );
        }
        if !(g.beta >= 0.0 && g.epsilon > 0.0 && g.epsilon_high.unwrap_or(1.0) > 0.0) {
            return Err("grpo.beta must be ≥ 0 and grpo.epsilon(_high) > 0".into());
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
            config_name: "grpo_config.toml",
        })
    }
}

/// Runs GRPO as `config` says; with `resume`, continues from the newest checkpoint in
/// `config.out`. `on_step` sees every step (for a progress bar).
pub fn train(
    config: &GrpoConfig,
    resume: bool,
    on_step: &mut dyn FnMut(&RlProgress),
) -> Result<RlSummary> {
    train_with(config, None, resume, on_step)
}

/// [`train`] with `reward` (any [`Reward`], e.g. a closure) instead of `[reward]`'s.
pub fn train_with(
    config: &GrpoConfig,
    reward: Option<Box<dyn Reward>>,
    resume: bool,
    on_step: &mut dyn FnMut(&RlProgress),
) -> Result<RlSummary> {
    let spec = config.spec()?;
    let mut run = Run::start(&spec, reward, resume)?;
    let g = &config.grpo;
    let reference = (g.beta > 0.0)
        .then(|| Reference::load(&config.reference, &config.model, &run.trainee))
        .transpose()?;
    let clip = ClipRange {
        low: g.epsilon,
        high: g.epsilon_high.unwrap_or(g.epsilon),
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
        let mut rollout = run.rollout(&spec, g.num_generations)?;
        let started = Instant::now();
        if !g.single_update() {
            align_old_logprobs(&run, &mut rollout.samples, g.micro_batch_size, temperature)?;
        }
        let samples = &rollout.samples;
        let scores: Vec<f64> = samples.iter().map(|s| s.score).collect();
        let advantages = group_advantages(&scores, g.num_generations, g.scale_rewards)?;
        let stds = group_stds(&scores, g.num_generations)?;

        run.begin_updates();
        let ref_logprobs = match &reference {
            Some(r) => Some(reference_logprobs(
                r,
                &run,
                samples,
                g.micro_batch_size,
                temperature,
            )?),
            None => None,
        };
        let mut stats = UpdateStats::default();
        for iteration in 0..g.num_iterations {
            let order = minibatches(
                samples.len(),
                g.num_minibatches,
                step_seed(config.seed, step, 1 + iteration as u64),
            );
            for rows in order {
                let kept = |i: &usize| !(g.mask_truncated_completions && samples[*i].truncated());
                let tokens: usize = rows
                    .iter()
                    .filter(|i| kept(i))
                    .map(|&i| samples[i].completion_ids.len())
                    .sum();
                run.optimizer.zero_grad();
                let mut loss_sum = 0.0;
                for micro in MicroBatches::new(&rows, g.micro_batch_size) {
                    let picked: Vec<&Sample> = micro.iter().map(|&i| &samples[i]).collect();
                    let batch = SequenceBatch::new(&picked, pad_id, device)?;
                    let keep: Vec<f32> =
                        micro.iter().map(|i| f32::from(u8::from(kept(i)))).collect();
                    let mask = &batch.completion_mask
                        * Tensor::from_slice(&keep).to_device(device).unsqueeze(1);
                    let adv: Vec<f32> = micro.iter().map(|&i| advantages[i] as f32).collect();
                    let adv = Tensor::from_slice(&adv).to_device(device).unsqueeze(1);
                    let refs = ref_logprobs.as_ref().map(|r| {
                        let rows: Vec<&[f32]> = micro.iter().map(|&i| r[i].as_slice()).collect();
                        pad_rows(&rows, batch.completion_width as usize, device)
                    });
                    let parts = grpo_loss(
                        &run,
                        &batch,
                        &mask,
                        &adv,
                        refs.as_ref(),
                        g,
                        clip,
                        temperature,
                    )?;
                    let weights = g.loss_type.token_weights(
                        &mask,
                        rows.len(),
                        tokens as f64,
                        config.rollout.max_new_tokens,
                    );
                    let loss = (&parts.per_token * &weights).sum(Kind::Float);
                    loss.f_backward()?;
                    loss_sum += loss.double_value(&[]);
                    stats.add(&parts, &mask)?;
                }
                let grad_norm = run.optimizer.clip_grad_norm(config.optim.max_grad_norm)?;
                if check_finite(step, loss_sum, grad_norm, config.train.on_non_finite)? {
                    run.optimizer.step(lr)?;
                } else {
                    run.optimizer.zero_grad();
                    summary.skipped_updates += 1;
                }
                stats.loss += loss_sum;
                stats.grad_norm += grad_norm;
                stats.updates += 1;
            }
        }
        let training_seconds = started.elapsed().as_secs_f64();
        run.end_step(rollout.generated_tokens as u64);

        let mean_score = scores.iter().sum::<f64>() / scores.len() as f64;
        let kl = stats.mean_kl();
        let frac_zero_std = stds.iter().filter(|s| **s < 1e-8).count() as f64 / stds.len() as f64;
        rollout_metrics(&mut window, &rollout, training_seconds);
        // Summed KL per completion: the per-token mean times the mean completion length.
        let kl_seq = kl.unwrap_or(0.0) * rollout.generated_tokens as f64 / samples.len() as f64;
        for (key, value) in [
            ("objective/scores", mean_score),
            ("objective/non_score_reward", -g.beta * kl_seq),
            ("objective/rlhf_reward", mean_score - g.beta * kl_seq),
            ("objective/entropy", stats.mean("entropy")),
            ("policy/approxkl_avg", stats.mean("approxkl")),
            ("policy/clipfrac_avg", stats.mean("clipfrac")),
            ("loss/policy_avg", stats.mean("policy_loss")),
            ("val/ratio", stats.mean("ratio")),
            ("loss", stats.loss / stats.updates.max(1) as f64),
            ("grad_norm", stats.grad_norm / stats.updates.max(1) as f64),
            ("frac_reward_zero_std", frac_zero_std),
            ("learning_rate", lr),
        ] {
            window.add(key, value);
        }
        if let Some(kl) = kl {
            // TRL PPO's `objective/kl` sums over the completion; GRPO's `kl` is per token.
            window.add("objective/kl", kl_seq);
            window.add("kl", kl);
        }
        summary.record(mean_score, &rollout, training_seconds);
        run.log_step(&spec, &mut window, samples, &[("advantage", &advantages)])?;
        if config.train.save_every > 0 && step % config.train.save_every == 0 {
            run.checkpoint(&spec)?;
        }
        on_step(&RlProgress {
            step,
            total_steps,
            reward: mean_score,
            kl,
        });
    }
    summary.steps = run.state.step;
    drop(reference);
    run.finish(&spec)?;
    Ok(summary)
}

/// Per-token loss terms of one micro-batch.
struct GrpoParts {
    /// Surrogate plus `beta · KL`, (b, C).
    per_token: Tensor,
    surrogate: crate::rl::loss::Surrogate,
    logprobs: Tensor,
    old_logprobs: Tensor,
    entropy: Tensor,
    kl: Option<Tensor>,
}

#[allow(clippy::too_many_arguments)]
fn grpo_loss(
    run: &Run,
    batch: &SequenceBatch,
    mask: &Tensor,
    advantages: &Tensor,
    ref_logprobs: Option<&Tensor>,
    g: &GrpoParams,
    clip: ClipRange,
    temperature: f64,
) -> Result<GrpoParts> {
    let stats = completion_logprobs(&run.trainee.lm.model, batch, temperature, true)?;
    // With one update per rollout the policy being trained is the one that sampled: its
    // own detached log-probs are the old ones (as TRL), and the ratio is exactly 1.
    let old_logprobs = if g.single_update() {
        stats.logprobs.detach()
    } else {
        batch.old_logprobs.shallow_clone()
    };
    let surrogate = clipped_surrogate(&stats.logprobs, &old_logprobs, advantages, clip);
    let kl = ref_logprobs.map(|r| g.kl_estimator.per_token(&stats.logprobs, r) * mask);
    let per_token = match &kl {
        Some(kl) => &surrogate.loss + kl * g.beta,
        None => surrogate.loss.shallow_clone(),
    };
    Ok(GrpoParts {
        per_token,
        surrogate,
        logprobs: stats.logprobs,
        old_logprobs,
        entropy: stats.entropy.unwrap_or_else(|| mask.zeros_like()).detach(),
        kl: kl.map(|k| k.detach()),
    })
}

/// Token-weighted sums of a step's metrics over every micro-batch of every update.
#[derive(Default)]
struct UpdateStats {
    sums: std::collections::BTreeMap<&'static str, f64>,
    tokens: f64,
    kl_tokens_sum: Option<f64>,
    loss: f64,
    grad_norm: f64,
    updates: u64,
}

impl UpdateStats {
    fn add(&mut self, p: &GrpoParts, mask: &Tensor) -> Result<()> {
        let n = mask.sum(Kind::Float).double_value(&[]);
        let mean = |t: &Tensor| masked_mean(&t.detach(), mask).double_value(&[]) * n;
        let entries = [
            ("entropy", mean(&p.entropy)),
            (
                "approxkl",
                approx_kl(&p.logprobs.detach(), &p.old_logprobs, mask).double_value(&[]) * n,
            ),
            (
                "clipfrac",
                clip_fraction(&p.surrogate, mask).double_value(&[]) * n,
            ),
            ("policy_loss", mean(&p.surrogate.loss)),
            ("ratio", mean(&p.surrogate.ratio)),
        ];
        for (k, v) in entries {
            *self.sums.entry(k).or_default() += v;
        }
        if let Some(kl) = &p.kl {
            *self.kl_tokens_sum.get_or_insert(0.0) +=
                (kl * mask).sum(Kind::Float).double_value(&[]);
        }
        self.tokens += n;
        Ok(())
    }

    fn mean(&self, key: &str) -> f64 {
        self.sums.get(key).copied().unwrap_or(f64::NAN) / self.tokens.max(1.0)
    }

    fn mean_kl(&self) -> Option<f64> {
        self.kl_tokens_sum.map(|s| s / self.tokens.max(1.0))
    }
}
