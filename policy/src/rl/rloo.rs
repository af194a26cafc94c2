//! RLOO (Ahmadian et al. 2024, "Back to Basics"): per step, `k` completions per prompt;
//! each completion's reward is its score minus `beta ×` its summed KL to the reference
//! (k1 by default), its advantage that reward minus the mean reward of the *other* `k − 1`
//! completions; the update is REINFORCE on the whole sequence's log-prob with PPO-style
//! clipping of the sequence ratio, as TRL 1.16's `RLOOTrainer`. The loop and the metrics
//! are [`crate::rl::group`]'s, shared with GRPO.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};
use tiller_model::dist::Collective;
use tiller_model::train::{OptimConfig, ScheduleConfig, TrainConfig, TrainOptions};
use tiller_model::{DType, LoraTrainConfig};
use tiller_reward::Reward;

use crate::error::{PolicyError, Result};
use crate::rl::advantages::{rloo_advantages, whiten_in};
use crate::rl::config::{ReferenceModelConfig, RewardConfig, RolloutConfig};
use crate::rl::group::{
    train_group, GroupMethod, GroupParams, MicroInputs, MicroTerms, StepAdvantages,
};
use crate::rl::kl::KlEstimator;
use crate::rl::loss::{clipped_surrogate, ClipRange};
use crate::rl::rollout::{completion_logprobs, Sample};
use crate::rl::run::{RlProgress, RlSummary, Run, RunSpec};

/// `rloo.toml`: the same sections as `grpo.toml`, with `[rloo]` instead of `[grpo]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlooConfig {
    pub model: PathBuf,
    pub out: PathBuf,
    /// `cpu`, `cuda` or `cuda:N`, checked when the file is read.
    #[serde(default)]
    pub device: tiller_model::train::DeviceName,
    #[serde(default)]
    pub dtype: DType,
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub rollout: RolloutConfig,
    #[serde(default)]
    pub reward: RewardConfig,
    #[serde(default)]
    pub reference: ReferenceModelConfig,
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
    pub lora: Option<LoraTrainConfig>,
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

tiller_model::impl_run_config!(RlooConfig);

impl RlooConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config_file::read(path, Self::validate)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        crate::rl::update::validate_common(&self.run_config())?;
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
            run: self.run_config(),
            rollout: &self.rollout,
            reward: &self.reward,
            config_toml: self.to_toml()?,
            config_name: "rloo_config.toml",
            label: "rloo",
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
    train_in(config, reward, &TrainOptions::resume(resume), on_step)
}

/// [`train_with`] as one process of a data-parallel job (`options.collective`).
pub fn train_in(
    config: &RlooConfig,
    reward: Option<Box<dyn Reward>>,
    options: &TrainOptions,
    on_step: &mut dyn FnMut(&RlProgress),
) -> Result<RlSummary> {
    config.validate().map_err(PolicyError::Invalid)?;
    let method = Rloo {
        r: &config.rloo,
        temperature: config.rollout.temperature,
    };
    train_group(
        &config.spec()?,
        &method,
        &config.reference,
        config.rollout.temperature,
        reward,
        options,
        on_step,
    )
}

/// RLOO's advantages (score − `beta ·` summed KL, minus the mean of the group's others)
/// and loss (REINFORCE on the sequence log-prob with a clipped sequence ratio, averaged
/// over the minibatch's sequences).
struct Rloo<'a> {
    r: &'a RlooParams,
    temperature: f64,
}

impl GroupMethod for Rloo<'_> {
    fn params(&self) -> GroupParams {
        let r = self.r;
        GroupParams {
            num_generations: r.num_generations,
            num_iterations: r.num_iterations,
            num_minibatches: r.num_minibatches,
            micro_batch_size: r.micro_batch_size,
            mask_truncated_completions: r.mask_truncated_completions,
            beta: r.beta,
            clip: ClipRange {
                low: r.epsilon,
                high: r.epsilon_high.unwrap_or(r.epsilon),
            },
        }
    }

    fn advantages(
        &self,
        samples: &[Sample],
        ref_logprobs: Option<&[Vec<f32>]>,
        collective: &dyn Collective,
    ) -> Result<StepAdvantages> {
        let r = self.r;
        // Sequence KL to the reference (per token, summed) under the sampling policy.
        let kl: Vec<f64> = match ref_logprobs {
            Some(refs) => samples
                .iter()
                .zip(refs)
                .map(|(s, rl)| {
                    s.old_logprobs
                        .iter()
                        .zip(rl)
                        .map(|(&p, &q)| r.kl_estimator.value(p as f64, q as f64))
                        .sum()
                })
                .collect(),
            None => vec![0.0; samples.len()],
        };
        let rewards: Vec<f64> = samples
            .iter()
            .zip(&kl)
            .map(|(s, k)| s.score - r.beta * k)
            .collect();
        let mut advantages = rloo_advantages(&rewards, r.num_generations)?;
        if r.normalize_advantages {
            advantages = whiten_in(&advantages, collective)?;
        }
        Ok(StepAdvantages {
            advantages,
            sequence_kl: Some(kl),
            metrics: vec![],
        })
    }

    fn loss(&self, run: &Run, m: &MicroInputs) -> Result<MicroTerms> {
        let tokens = completion_logprobs(&run.trainee.lm.model, m.batch, self.temperature, true)?;
        let mask = &m.batch.completion_mask;
        let logp = (&tokens.logprobs * mask).sum_dim_intlist(-1, false, Kind::Float);
        // One update per rollout: the sampling policy is the one being trained, and its
        // detached log-probs are the old ones (as TRL).
        let old = if self.params().single_update() {
            logp.detach()
        } else {
            (&m.batch.old_logprobs * mask).sum_dim_intlist(-1, false, Kind::Float)
        };
        let s = clipped_surrogate(&logp, &old, m.advantages, self.params().clip);
        // Mean over the minibatch's sequences.
        let loss = (&s.loss * m.keep).sum(Kind::Float) / m.minibatch_rows as f64;
        // Sequence-level terms, broadcast over each sequence's tokens for the metrics.
        let per_token = |t: &Tensor| t.detach().unsqueeze(1) * mask;
        let d = (logp.detach() - &old).square() * 0.5;
        Ok(MicroTerms {
            loss,
            policy_loss: per_token(&s.loss),
            ratio: per_token(&s.ratio),
            clipped: per_token(&s.clipped),
            approxkl: per_token(&d),
            entropy: tokens.entropy.unwrap_or_else(|| mask.zeros_like()).detach(),
            kl: None,
        })
    }
}
