//! tiller-eval: safety and bias evaluation and its reports. Input formats, the refusal
//! classifier and its measurement against human labels, the metrics and statistics, the
//! model-driven parts (answering prompts, scoring likelihoods), and the report
//! (`report.json` + a self-contained `report.html`).
//!
//! Architecture: every metric is a pure function of scored items (`*_metrics`,
//! `compare_*`), tested on hand-made fixtures; only [`run`] touches a model, and only
//! [`evaluate`] reads options. Callers (the `tiller` command line, the pipeline) fill an
//! [`EvalOptions`] and call [`evaluate()`]; nothing here knows about flags or TOML keys.
//! Depends on tiller-data, tiller-model and (for the reward-model win rate) tiller-reward.

pub mod bbq;
pub mod classifier_agreement;
pub mod compare;
pub mod crows;
pub mod csv_table;
pub mod error;
pub mod evaluate;
pub mod helpfulness;
pub mod inputs;
pub mod judge;
pub mod judge_endpoint;
pub mod options;
pub mod probes;
pub mod progress;
pub mod refusal;
pub mod report;
pub mod run;
pub mod safety;
pub mod sample;
pub mod scorecard;
pub mod stats;
pub mod suites;

pub use error::{EvalError, Result};
pub use evaluate::{evaluate, measure_refusal, ClassifierSetup, RefusalOptions};
pub use options::{BiasOptions, EvalOptions, SafetyOptions, Which};
pub use progress::{Progress, Silent};
pub use report::Report;
