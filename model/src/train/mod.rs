//! Training primitives every trainer shares (SFT, reward, DPO, KTO, PPO, GRPO, RLOO): an
//! optimizer whose state can be saved, schedules, a NaN guard, loss helpers that skip
//! unused positions, metrics, atomic, exactly-resumable checkpoints, the config sections
//! every trainer has ([`RunConfig`]) and the [`Runtime`] around each trainer's own batch,
//! loss and step (run directory, resume, logging, progress, checkpoints, data parallelism).

pub mod fused;
pub mod guard;
pub mod loop_config;
pub mod loss;
pub mod metrics;
pub mod optim;
mod optim_config;
pub mod options;
mod progress;
pub mod run_config;
pub mod runtime;
pub mod schedule;
pub mod state;
mod zero;

pub use guard::{check_finite, OnNonFinite};
pub use loop_config::TrainConfig;
pub use loss::{
    per_example_sum, segment_mask, target_logits, token_logprobs, token_nll, Targets,
    TokenLogprobs, TokenLoss, TrainBatch,
};
pub use metrics::{MetricWindow, MetricsWriter};
pub use optim::{decays, trainable_params, AdamW, OptimConfig};
pub use options::TrainOptions;
pub use run_config::{DeviceName, RunConfig};
pub use runtime::{rank_share, RunDir, RunTotals, Runtime, Update};
pub use schedule::{Schedule, ScheduleConfig};
pub use state::{
    checkpoint_dir, latest_checkpoint, list_checkpoints, prune_checkpoints, resume_checkpoint,
    start_or_resume, TrainState, OPTIMIZER_FILE, TRAIN_STATE_FILE, TRAIN_STATE_VERSION,
};
