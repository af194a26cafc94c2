//! TOML sections shared by the online RL trainers (GRPO, RLOO, PPO): where prompts come
//! from and how completions are sampled (`[rollout]`), how they are scored (`[reward]`),
//! and what the policy is kept close to (`[reference]`). Unknown keys are errors.
//!
//! Defaults are TRL's (1.16) where it has one; OpenRLHF's are noted beside them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tiller_data::{OnBadRow, Tokenizer};
use tiller_model::{GenerationConfig, LlamaConfig, Sampling};
use tiller_reward::{ModelReward, Reward, RewardModel, RuleConfig, WeightedSum};

use crate::error::{PolicyError, Result};

/// `[rollout]`: prompts and sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// Prompts (a `prompt` column: a string, or a list of messages rendered with the chat
    /// template and its generation prompt), JSONL or Parquet.
    pub prompts: PathBuf,
    /// Longer prompts keep their last tokens. TRL: no limit (1.16 dropped
    /// `max_prompt_length`); OpenRLHF `prompt_max_len` 1024. Default: no limit.
    #[serde(default)]
    pub max_prompt_len: Option<usize>,
    /// TRL GRPO/RLOO `max_completion_length` 512, TRL PPO `response_length` 53, OpenRLHF
    /// `generate_max_len` 1024. Default 512.
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// Sampling temperature; the loss's log-probs use the same `logits / temperature`.
    /// TRL GRPO/RLOO 1.0 (PPO 0.7), OpenRLHF 1.0. Must be > 0.
    #[serde(default = "one")]
    pub temperature: f64,
    /// Nucleus sampling. TRL 1.0 (off), OpenRLHF 1.0.
    #[serde(default = "one")]
    pub top_p: f64,
    /// Top-k sampling; absent: off (TRL `top_k = 0`, OpenRLHF −1).
    #[serde(default)]
    pub top_k: Option<usize>,
    /// Texts that end a completion besides the EOS token.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Rows per `generate` call; absent: all of a step's rows at once (TRL's default,
    /// the effective batch).
    #[serde(default)]
    pub generation_batch_size: Option<usize>,
    /// Write the step's completions to `samples.jsonl` every this many steps (and at step
    /// 1); absent: every `train.log_every` steps; 0: never.
    #[serde(default)]
    pub samples_every: Option<u64>,
    #[serde(default)]
    pub on_bad_row: OnBadRow,
}

fn default_max_new_tokens() -> usize {
    512
}
fn one() -> f64 {
    1.0
}

impl RolloutConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err("rollout.temperature must be > 0 (RL needs sampled completions)".into());
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err("rollout.top_p must be in (0, 1]".into());
        }
        if self.max_new_tokens == 0 {
            return Err("rollout.max_new_tokens must be at least 1".into());
        }
        if self.top_k == Some(0) || self.generation_batch_size == Some(0) {
            return Err(
                "rollout.top_k and rollout.generation_batch_size must be at least 1".into(),
            );
        }
        Ok(())
    }

    /// The generation settings of one rollout, seeded with `seed`. Rows stop at the
    /// tokenizer's EOS and every `eos_token_id` of config.json.
    pub fn generation(
        &self,
        tokenizer: &Tokenizer,
        model: &LlamaConfig,
        seed: u64,
    ) -> GenerationConfig {
        let mut stop_token_ids = model.eos_token_ids();
        if !stop_token_ids.contains(&tokenizer.eos_id) {
            stop_token_ids.push(tokenizer.eos_id);
        }
        GenerationConfig {
            max_new_tokens: self.max_new_tokens,
            sampling: Sampling::Random {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: (self.top_p < 1.0).then_some(self.top_p),
            },
            seed,
            stop_token_ids,
            stop_strings: self.stop.clone(),
        }
    }
}

/// `[reward]`: a reward model, rules, or both (summed with weights). A trainer called
/// from code may take any `Reward` instead (e.g. a closure).
///
/// ```toml
/// [reward]
/// model = "runs/reward"          # optional: a `tiller reward train` checkpoint
/// [[reward.rules]]
/// kind = "length"
/// target_words = 20
/// tolerance = 10
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardConfig {
    /// A reward checkpoint (`LlamaForSequenceClassification`).
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// The reward model's weight in the sum.
    #[serde(default = "one")]
    pub model_weight: f64,
    /// Rule rewards (see tiller_reward::rules), each with its own `weight`.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Rows per reward-model forward pass.
    #[serde(default = "default_reward_batch")]
    pub batch_size: usize,
    /// Reward-model inputs keep their first this many tokens.
    #[serde(default = "default_reward_max_len")]
    pub max_len: usize,
    /// Subtracted from the score of a completion that ran out of tokens without an EOS or
    /// stop string (TRL PPO/Online-DPO `missing_eos_penalty`, default off).
    #[serde(default)]
    pub missing_eos_penalty: Option<f64>,
}

fn default_reward_batch() -> usize {
    16
}
fn default_reward_max_len() -> usize {
    1024
}

impl RewardConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.batch_size == 0 || self.max_len == 0 {
            return Err("reward.batch_size and reward.max_len must be at least 1".into());
        }
        Ok(())
    }

    /// The configured reward: the weighted sum of the rules and the reward model.
    pub fn build(&self, device: &str, dtype: tiller_model::DType) -> Result<Box<dyn Reward>> {
        if self.model.is_none() && self.rules.is_empty() {
            return Err(PolicyError::Invalid(
                "[reward] needs a `model` or at least one [[reward.rules]]".into(),
            ));
        }
        let mut sum: WeightedSum = tiller_reward::rules_reward(&self.rules)?;
        if let Some(dir) = &self.model {
            let config = LlamaConfig::from_file(&dir.join("config.json"))?;
            let is_reward = config
                .architectures
                .iter()
                .any(|a| a.ends_with("ForSequenceClassification"));
            if !is_reward {
                return Err(PolicyError::Config {
                    path: dir.join("config.json"),
                    message: "reward.model is not a reward checkpoint (architectures has no \
                              *ForSequenceClassification); train one with `tiller reward train`"
                        .into(),
                });
            }
            let device = tiller_model::parse_device(device)?;
            let mut model = RewardModel::load_or_init(dir, device, dtype.kind(), 0)?;
            model.vs.freeze();
            let reward = ModelReward {
                model,
                tokenizer: Tokenizer::from_dir(dir)?,
                batch_size: self.batch_size,
                max_len: self.max_len,
            };
            sum.parts.push((self.model_weight, Box::new(reward)));
        }
        Ok(Box::new(sum))
    }
}

pub use crate::reference::ReferenceModelConfig;

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            model: None,
            model_weight: 1.0,
            rules: vec![],
            batch_size: default_reward_batch(),
            max_len: default_reward_max_len(),
            missing_eos_penalty: None,
        }
    }
}
