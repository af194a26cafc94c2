//! Training primitives every trainer shares (SFT, reward, DPO, PPO): an optimizer whose
//! state can be saved, schedules, a NaN guard, loss helpers that skip unused positions,
//! metrics and atomic, exactly-resumable checkpoints. Helpers, not a framework: each
//! trainer writes its own loop with them.

pub mod fused;
pub mod guard;
pub mod loop_config;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod schedule;
pub mod state;

pub use guard::{check_finite, OnNonFinite};
pub use loop_config::TrainConfig;
pub use loss::{
    per_example_sum, segment_mask, target_logits, token_logprobs, token_nll, Targets, TokenLoss,
    TrainBatch,
};
pub use metrics::MetricsWriter;
pub use optim::{decays, trainable_params, AdamW, OptimConfig};
pub use schedule::{Schedule, ScheduleConfig};
pub use state::{
    checkpoint_dir, latest_checkpoint, list_checkpoints, prune_checkpoints, resume_checkpoint,
    start_or_resume, write_atomically, TrainState, OPTIMIZER_FILE, TRAIN_STATE_FILE,
    TRAIN_STATE_VERSION,
};
