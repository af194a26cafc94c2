//! Offline preference optimization: DPO and its family (one closed loss enum).

pub mod loss;

pub use loss::{loss, DpoLoss, DpoParams, LossParts, PairLogps, RunningMean};
