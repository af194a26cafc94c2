//! The `tiller` command line and the pipeline runner.
//! Architecture invariant: this crate wires the libraries together; algorithms live in
//! tiller-data, tiller-model, tiller-reward, tiller-policy, tiller-eval and tiller-annotate.
//! Nothing outside `cli` imports from `cli`: the pipeline calls the libraries directly, and
//! what both need beyond the libraries (`generation`, `progress`, `ranks`) sits beside them.

pub mod cli;
pub mod generation;
pub mod pipeline;
pub mod progress;
pub mod ranks;
