//! tiller-reward: reward models (a backbone + scalar head, Bradley–Terry training, scoring,
//! accuracy and calibration), the `Reward` trait, and rule-based rewards.

pub mod calibration;
pub mod config;
pub mod error;
pub mod loss;
pub mod model;
pub mod reward;
pub mod rules;
pub mod train;

pub use config::RewardTrainConfig;
pub use error::{Result, RewardError};
pub use model::RewardModel;
pub use reward::{FnReward, ModelReward, Reward, RewardInput, WeightedSum};
pub use rules::{looks_like_refusal, rules_reward, Rule, RuleConfig};
