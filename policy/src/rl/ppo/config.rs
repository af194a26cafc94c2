//! `ppo.toml`: the shared RL sections (`[rollout]`, `[reward]`, `[reference]`), the
//! critic, PPO's own coefficients, and the usual `[train]`/`[optim]`/`[schedule]`/`[lora]`.
//! Unknown keys are errors.
//!
//! Defaults, next to TRL's `PPOConfig` (1.16) and OpenRLHF's `train_ppo`:
//!
//! | key                        | tiller | TRL       | OpenRLHF                 |
//! |----------------------------|--------|-----------|--------------------------|
//! | `ppo.kl` (β)               | fixed 0.05 | fixed 0.05 | 0.01, adaptive with `kl_target` (horizon 10000) |
//! | `ppo.kl_estimator`         | k1     | k1        | k1                       |
//! | `ppo.gamma`                | 1.0    | 1.0       | 1.0                      |
//! | `ppo.lam`                  | 0.95   | 0.95      | 0.95                     |
//! | `ppo.cliprange`            | 0.2    | 0.2       | 0.2 (`eps_clip`)         |
//! | `ppo.cliprange_value`      | 0.2    | 0.2       | 0.2 (`value_clip`)       |
//! | `ppo.vf_coef`              | 0.1    | 0.1       | — (separate critic loss) |
//! | `ppo.ent_coef`             | 0.0    | — (none)  | 0 (`entropy_loss_coef`)  |
//! | `ppo.epochs`               | 4      | 4 (`num_ppo_epochs`) | 1 (`max_epochs`) |
//! | `ppo.num_mini_batches`     | 1      | 1         | train/micro batch sizes  |
//! | `ppo.whiten_rewards`       | false  | false     | false (`normalize_reward`) |
//! | `ppo.whiten_advantages`    | true   | true      | true                     |
//! | `ppo.reward_clip`          | none   | none      | 10 (`reward_clip_range`) |
//! | `reward.missing_eos_penalty` | none | none      | —                        |
//! | `optim.max_grad_norm`      | 1.0    | 1.0       | 1.0 (`max_norm`)         |

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tiller_model::train::{OptimConfig, ScheduleConfig, TrainConfig};
use tiller_model::{DType, LoraTrainConfig};

use crate::error::{PolicyError, Result};
use crate::rl::config::{ReferenceModelConfig, RewardConfig, RolloutConfig};
use crate::rl::kl::KlEstimator;
use crate::rl::kl_control::KlControlConfig;
use crate::rl::run::RunSpec;
use crate::rl::update::validate_common;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PpoConfig {
    /// The policy to start from (typically an SFT run), HF format.
    pub model: PathBuf,
    /// Run directory: checkpoints, metrics.jsonl, samples.jsonl, the final actor and critic.
    pub out: PathBuf,
    /// `cpu`, `cuda` or `cuda:N`, checked when the file is read.
    #[serde(default)]
    pub device: tiller_model::train::DeviceName,
    #[serde(default)]
    pub dtype: DType,
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub rollout: RolloutConfig,
    pub reward: RewardConfig,
    #[serde(default)]
    pub reference: ReferenceModelConfig,
    #[serde(default)]
    pub critic: CriticConfig,
    #[serde(default)]
    pub ppo: PpoParams,
    /// `batch_size`: prompts (= rollouts) per PPO step; `max_steps` or `epochs` over the
    /// prompts; `save_every`, `log_every`, `on_non_finite` as everywhere.
    #[serde(default)]
    pub train: TrainConfig,
    /// The actor's optimizer (and the critic's, unless `critic.lr` is set).
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Present: the actor trains LoRA adapters (the reference is then its base with the
    /// adapters off); absent: full fine-tuning. The critic is always trained in full.
    #[serde(default)]
    pub lora: Option<LoraTrainConfig>,
}

fn default_seed() -> u64 {
    42
}

/// `[critic]`: where the value model starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriticConfig {
    /// A reward checkpoint (its score head becomes the value head, as in InstructGPT and
    /// TRL) or any causal LM checkpoint (a fresh head). Absent: the policy's checkpoint.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// The critic's peak learning rate; absent: `optim.lr`.
    #[serde(default)]
    pub lr: Option<f64>,
}

/// `[ppo]`: the algorithm's coefficients (defaults: see the module table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PpoParams {
    /// Passes over each step's rollouts.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Each pass splits the rollouts into this many minibatches, one optimizer step each.
    #[serde(default = "one")]
    pub num_mini_batches: usize,
    /// Rows per forward pass (gradients accumulate over a minibatch's micro-batches);
    /// absent: a whole minibatch at once.
    #[serde(default)]
    pub micro_batch_size: Option<usize>,
    #[serde(default = "one_f")]
    pub gamma: f64,
    #[serde(default = "default_lam")]
    pub lam: f64,
    /// ε of the clipped surrogate: the ratio is clipped to [1 − ε, 1 + ε].
    #[serde(default = "default_clip")]
    pub cliprange: f64,
    /// Values move at most this far from the rollout's values before the loss stops caring.
    #[serde(default = "default_clip")]
    pub cliprange_value: f64,
    /// Weight of the value loss in the summed loss.
    #[serde(default = "default_vf_coef")]
    pub vf_coef: f64,
    /// Weight of the entropy bonus (subtracted from the loss).
    #[serde(default)]
    pub ent_coef: f64,
    /// The KL coefficient β: `{ kind = "fixed", coef = 0.05 }` or
    /// `{ kind = "adaptive", coef = 0.1, target = 6.0, horizon = 10000 }`.
    #[serde(default)]
    pub kl: KlControlConfig,
    /// Per-token KL estimate of the penalty: `k1` (TRL's default), `k2` or `k3`.
    #[serde(default = "default_estimator")]
    pub kl_estimator: KlEstimator,
    #[serde(default)]
    pub whiten_rewards: bool,
    #[serde(default = "yes")]
    pub whiten_advantages: bool,
    /// Scores are clipped to [−reward_clip, reward_clip]; absent: no clipping.
    #[serde(default)]
    pub reward_clip: Option<f64>,
}

fn default_epochs() -> usize {
    4
}
fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}
fn default_lam() -> f64 {
    0.95
}
fn default_clip() -> f64 {
    0.2
}
fn default_vf_coef() -> f64 {
    0.1
}
fn default_estimator() -> KlEstimator {
    KlEstimator::K1
}
fn yes() -> bool {
    true
}

impl Default for PpoParams {
    fn default() -> Self {
        PpoParams {
            epochs: default_epochs(),
            num_mini_batches: one(),
            micro_batch_size: None,
            gamma: one_f(),
            lam: default_lam(),
            cliprange: default_clip(),
            cliprange_value: default_clip(),
            vf_coef: default_vf_coef(),
            ent_coef: 0.0,
            kl: KlControlConfig::default(),
            kl_estimator: default_estimator(),
            whiten_rewards: false,
            whiten_advantages: true,
            reward_clip: None,
        }
    }
}

impl PpoParams {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.epochs == 0 || self.num_mini_batches == 0 || self.micro_batch_size == Some(0) {
            return Err(
                "ppo.epochs, ppo.num_mini_batches and ppo.micro_batch_size must be at least 1"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&self.gamma) || !(0.0..=1.0).contains(&self.lam) {
            return Err("ppo.gamma and ppo.lam must lie in [0, 1]".into());
        }
        if !(self.cliprange > 0.0 && self.cliprange_value > 0.0) {
            return Err("ppo.cliprange and ppo.cliprange_value must be positive".into());
        }
        if !(self.vf_coef >= 0.0 && self.ent_coef >= 0.0) {
            return Err("ppo.vf_coef and ppo.ent_coef must be at least 0".into());
        }
        if self.reward_clip.is_some_and(|c| c.is_nan() || c <= 0.0) {
            return Err("ppo.reward_clip must be positive".into());
        }
        self.kl.validate()
    }
}

tiller_model::impl_run_config!(PpoConfig);

impl PpoConfig {
    /// Reads and validates a TOML file; errors name the file and the offending key.
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config_file::read(path, Self::validate)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        validate_common(&self.run_config())?;
        if self.train.batch_size < self.ppo.num_mini_batches {
            return Err("train.batch_size must be at least ppo.num_mini_batches".into());
        }
        if self.critic.lr.is_some_and(|lr| lr.is_nan() || lr <= 0.0) {
            return Err("critic.lr must be positive".into());
        }
        self.rollout.validate()?;
        self.reward.validate()?;
        self.ppo.validate()
    }

    /// The config as TOML, written into the run directory.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self)
            .map_err(|e| PolicyError::Invalid(format!("cannot serialize the config: {e}")))
    }

    /// The critic's optimizer settings: the actor's, with `critic.lr` if set.
    pub fn critic_optim(&self) -> OptimConfig {
        OptimConfig {
            lr: self.critic.lr.unwrap_or(self.optim.lr),
            ..self.optim.clone()
        }
    }

    /// What the shared RL run needs from this config.
    pub fn spec(&self) -> Result<RunSpec<'_>> {
        Ok(RunSpec {
            run: self.run_config(),
            rollout: &self.rollout,
            reward: &self.reward,
            config_toml: self.to_toml()?,
            config_name: "ppo_config.toml",
            label: "ppo",
        })
    }
}
