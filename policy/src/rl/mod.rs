//! Online RL: the policy samples completions for prompts, a [`tiller_reward::Reward`]
//! scores them, and the policy is updated toward higher-scoring completions while a KL
//! term keeps it near a frozen reference.
//!
//! - [`rollout`]: prompts → batched KV-cache generation → scores → training tensors, and
//!   per-token log-probs / entropies of completions under any model (shared by every
//!   trainer below).
//! - [`kl`]: the k1 / k2 / k3 KL estimators.
//! - [`reference`]: the frozen reference (a checkpoint, or the LoRA base with adapters off).
//! - [`config`]: the `[rollout]`, `[reward]` and `[reference]` TOML sections.
//! - [`advantages`], [`loss`]: group-normalized (GRPO, Dr.GRPO) and leave-one-out (RLOO)
//!   advantages, whitening; the clipped surrogate and its token weights.
//! - [`grpo`], [`rloo`]: the critic-free trainers: each its advantages and loss, run by
//!   the loop they share ([`group`]) and its metrics ([`group_metrics`]).
//! - [`run`]: the shared runtime plus policy, reward and rollouts, under every trainer.
//! - [`ppo`]: PPO with a value head, built from [`critic`] (backbone + value head and the
//!   clipped value loss), [`gae`] (per-token rewards, GAE, whitening) and [`kl_control`]
//!   (fixed or adaptive KL coefficient).

pub mod advantages;
pub mod config;
pub mod critic;
pub mod gae;
pub mod group;
mod group_metrics;
pub mod grpo;
pub mod kl;
pub mod kl_control;
pub mod loss;
pub mod ppo;
pub mod reference;
pub mod rloo;
pub mod rollout;
pub mod run;
pub mod update;
