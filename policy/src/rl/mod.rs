//! Online RL: PPO with a value head (GRPO and RLOO alongside).

pub mod advantages;
pub mod config;
pub mod critic;
pub mod gae;
pub mod kl;
pub mod kl_control;
pub mod loss;
pub mod ppo;
pub mod reference;
pub mod rollout;
