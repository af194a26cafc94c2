//! Offline preference optimization: DPO and its family (one closed loss enum), trained
//! from preference pairs against a frozen reference whose log-probs are cached.

pub mod batch;
pub use crate::reference::cache;
pub mod config;
pub mod loss;
pub mod metrics;
pub mod params;
mod step;
pub mod trainer;

pub use config::{CachedReferenceConfig, DpoConfig, DpoData};
pub use loss::{loss, DpoLoss, DpoParams, LossParts, PairLogps, RunningMean};
pub use trainer::{train, train_in, DpoMetrics, DpoProgress, DpoSummary};
