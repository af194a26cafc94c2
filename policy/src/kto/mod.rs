//! KTO: alignment from unpaired `prompt`/`completion`/`label` feedback against a frozen
//! reference, with the DPO trainer's reference handling (and its log-prob cache).

pub mod config;
pub mod data;
pub mod loss;
pub mod metrics;
pub mod trainer;

pub use config::{KtoConfig, KtoData};
pub use loss::{kto_loss, kto_loss_with_kl, KtoInputs, KtoLossParts, KtoParams};
pub use metrics::KtoMetrics;
pub use trainer::{train, train_in, KtoProgress, KtoSummary};
