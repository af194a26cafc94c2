//! Safety and bias evaluation: input formats, the refusal classifier, the metrics and the
//! model-driven parts (generating answers, scoring likelihoods). Reports are in
//! `crate::report`; the command line in `crate::cli::eval`.
//!
//! Architecture: every metric is a pure function of scored items (`*_metrics`,
//! `compare_*`), tested on hand-made fixtures; only `run` touches a model.

pub mod agreement;
pub mod bbq;
pub mod crows;
pub mod helpfulness;
pub mod inputs;
pub mod judge;
pub mod probes;
pub mod refusal;
pub mod run;
pub mod safety;
pub mod stats;
pub mod table;
