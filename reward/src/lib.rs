//! tiller-reward: reward models (a backbone + scalar head, Bradley–Terry training, scoring,
//! accuracy and calibration), the `Reward` trait, rule-based rewards, and the one refusal
//! classifier (`refusal`) that the `refusal` rule and tiller-eval's reports share.

// On tch tensors `a += b` is an in-place `add_`, which breaks autograd when `a` is
// saved for backward; `a = a + b` is kept on purpose.
#![allow(clippy::assign_op_pattern)]

pub mod calibration;
pub mod classes;
pub mod config;
pub mod error;
pub mod length_groups;
pub mod loss;
pub mod margins;
pub mod model;
pub mod pair_metrics;
pub mod refusal;
pub mod reward;
pub mod rules;
pub mod train;

pub use config::RewardTrainConfig;
pub use error::{Result, RewardError};
pub use model::RewardModel;
pub use refusal::Verdict;
pub use reward::{FnReward, ModelReward, Reward, RewardInput, WeightedSum};
pub use rules::{looks_like_refusal, rules_reward, Rule, RuleConfig};
