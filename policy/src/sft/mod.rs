//! Supervised fine-tuning: next-token cross-entropy on demonstrations, full or LoRA.

pub mod config;
pub mod trainer;

pub use config::{DataConfig, SftConfig, TrainConfig};
pub use trainer::{train, train_in, SftProgress, SftSummary};
