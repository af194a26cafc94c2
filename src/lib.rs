//! The `tiller` command line, the pipeline runner, evaluation and reports.
//! Architecture invariant: this crate wires the libraries together; algorithms live in
//! tiller-data, tiller-model, tiller-reward, tiller-policy and tiller-annotate.

pub mod cli;
pub mod eval;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod rows;
