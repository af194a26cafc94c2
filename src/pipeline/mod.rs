//! `tiller run pipeline.toml`: ordered stages (SFT, reward model, DPO, evaluation,
//! annotation export, ...) whose outputs feed later stages by name, cached like a build
//! system, resumable after a failure, and recorded in a `manifest.json` per output that
//! `tiller lineage` walks back to the base model.
//!
//! - `config`: the file format and reference resolution
//! - `stages`: stage kinds as typed configs, one match arm per kind
//! - `runner`: keys, skip / resume / rerun, manifests
//! - `launched`: a training stage as N data-parallel ranks (`nproc_per_node`)
//! - `manifest`, `hashing`, `lineage`: provenance
//! - `eval_stage`, `annotations`: the two stages that are not trainers

pub mod annotations;
pub mod config;
pub mod eval_stage;
pub mod hashing;
mod launched;
pub mod lineage;
pub mod manifest;
mod progress;
pub mod runner;
pub mod stages;

pub use config::{PipelineConfig, StageKind};
pub use manifest::Manifest;
pub use runner::{run, RunSummary, StageStatus};
