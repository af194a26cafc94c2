//! GRPO (Shao et al. 2024, DeepSeekMath): per step, `num_generations` completions for
//! each prompt, advantages normalized within each prompt's group (or, Dr.GRPO, only
//! centered), then `num_iterations` passes of the clipped surrogate over minibatches, with
//! an optional per-token KL term to a frozen reference (`beta`, k3 as TRL). The loop and
//! the metrics are [`crate::rl::group`]'s, shared with RLOO.
//!
//! ```toml
//! model = "models/smollm2-135m-instruct"
//! out = "runs/grpo"
//! [rollout]
//! prompts = "datasets/prompts/train.jsonl"
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

use serde::{Deserialize, Serialize};
use tch::Kind;
use tiller_model::dist::Collective;
use tiller_model::train::{OptimConfig, ScheduleConfig, TrainConfig, TrainOptions};
use tiller_model::{DType, LoraTrainConfig};
use tiller_reward::Reward;

use crate::error::{PolicyError, Result};
use crate::rl::advantages::{group_advantages_in, group_stds, ScaleRewards};
use crate::rl::config::{ReferenceModelConfig, RewardConfig, RolloutConfig};
use crate::rl::group::{
    train_group, GroupMethod, GroupParams, MicroInputs, MicroTerms, StepAdvantages,
};
use crate::rl::kl::KlEstimator;
use crate::rl::loss::{clipped_surrogate, ClipRange, LossType};
use crate::rl::rollout::{completion_logprobs, Sample};
use crate::rl::run::{RlProgress, RlSummary, Run, RunSpec};

/// `grpo.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpoConfig {
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
    pub lora: Option<LoraTrainConfig>,
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

tiller_model::impl_run_config!(GrpoConfig);

impl GrpoConfig {
    /// Reads and validates a TOML file; errors name the file and the offending key.
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config_file::read(path, Self::validate)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        crate::rl::update::validate_common(&self.run_config())?;
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
            run: self.run_config(),
            rollout: &self.rollout,
            reward: &self.reward,
            config_toml: self.to_toml()?,
            config_name: "grpo_config.toml",
            label: "grpo",
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
    train_in(config, reward, &TrainOptions::resume(resume), on_step)
}

/// [`train_with`] as one process of a data-parallel job (`options.collective`).
pub fn train_in(
    config: &GrpoConfig,
    reward: Option<Box<dyn Reward>>,
    options: &TrainOptions,
    on_step: &mut dyn FnMut(&RlProgress),
) -> Result<RlSummary> {
    config.validate().map_err(PolicyError::Invalid)?;
    let method = Grpo {
        g: &config.grpo,
        temperature: config.rollout.temperature,
        max_new_tokens: config.rollout.max_new_tokens,
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

/// GRPO's advantages (normalized within each prompt's group) and loss (the per-token
/// clipped surrogate plus `beta ·` the per-token KL, averaged as `loss_type` says).
struct Grpo<'a> {
    g: &'a GrpoParams,
    temperature: f64,
    max_new_tokens: usize,
}

impl GroupMethod for Grpo<'_> {
    fn params(&self) -> GroupParams {
        let g = self.g;
        GroupParams {
            num_generations: g.num_generations,
            num_iterations: g.num_iterations,
            num_minibatches: g.num_minibatches,
            micro_batch_size: g.micro_batch_size,
            mask_truncated_completions: g.mask_truncated_completions,
            beta: g.beta,
            clip: ClipRange {
                low: g.epsilon,
                high: g.epsilon_high.unwrap_or(g.epsilon),
            },
        }
    }

    fn advantages(
        &self,
        samples: &[Sample],
        _ref_logprobs: Option<&[Vec<f32>]>,
        collective: &dyn Collective,
    ) -> Result<StepAdvantages> {
        let scores: Vec<f64> = samples.iter().map(|s| s.score).collect();
        let g = self.g;
        let stds = group_stds(&scores, g.num_generations)?;
        let zero_std = stds.iter().filter(|s| **s < 1e-8).count() as f64 / stds.len().max(1) as f64;
        Ok(StepAdvantages {
            advantages: group_advantages_in(
                &scores,
                g.num_generations,
                g.scale_rewards,
                collective,
            )?,
            sequence_kl: None,
            metrics: vec![("frac_reward_zero_std", zero_std)],
        })
    }

    fn loss(&self, run: &Run, m: &MicroInputs) -> Result<MicroTerms> {
        let g = self.g;
        let stats = completion_logprobs(&run.trainee.lm.model, m.batch, self.temperature, true)?;
        // With one update per rollout the policy being trained is the one that sampled: its
        // own detached log-probs are the old ones (as TRL), and the ratio is exactly 1.
        let old = if self.params().single_update() {
            stats.logprobs.detach()
        } else {
            m.batch.old_logprobs.shallow_clone()
        };
        let adv = m.advantages.unsqueeze(1);
        let surrogate = clipped_surrogate(&stats.logprobs, &old, &adv, self.params().clip);
        let kl = m
            .ref_logprobs
            .map(|r| g.kl_estimator.per_token(&stats.logprobs, r) * m.mask);
        let per_token = match &kl {
            Some(kl) => &surrogate.loss + kl * g.beta,
            None => surrogate.loss.shallow_clone(),
        };
        let weights = g.loss_type.token_weights(
            m.mask,
            m.minibatch_rows,
            m.minibatch_tokens,
            self.max_new_tokens,
        );
        let logprobs = stats.logprobs.detach();
        Ok(MicroTerms {
            loss: (&per_token * &weights).sum(Kind::Float),
            policy_loss: surrogate.loss.detach(),
            ratio: surrogate.ratio.detach(),
            clipped: surrogate.clipped,
            approxkl: (&logprobs - &old).square() * 0.5,
            entropy: stats
                .entropy
                .unwrap_or_else(|| m.mask.zeros_like())
                .detach(),
            kl: kl.map(|k| k.detach()),
        })
    }
}
