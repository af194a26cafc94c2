//! PPO with a value head (InstructGPT-style, TRL's `PPOTrainer` semantics): an actor, a
//! frozen reference, a critic giving a value per position, and any `Reward`.
//!
//! - [`config`]: `ppo.toml` and the defaults next to TRL's and OpenRLHF's.
//! - [`experience`]: rollouts → reference log-probs, values, per-token rewards, GAE.
//! - [`update`]: the PPO epochs over minibatches (clipped surrogate, clipped value loss,
//!   entropy bonus, gradient clipping).
//! - [`trainer`]: the loop, metrics, samples and exact-resume checkpoints.

pub mod config;
pub mod experience;
pub mod trainer;
pub mod update;

pub use config::{CriticConfig, PpoConfig, PpoParams};
pub use trainer::{train, train_in, train_with, CRITIC_DIR};
