//! Options and helpers several subcommands share: loading a model, rendering prompts.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use tiller_data::Tokenizer;
use tiller_model::train::DeviceName;
use tiller_model::{CausalLm, DType};

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// HF-format model directory (config.json, *.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: DType,
}

impl ModelArgs {
    pub fn load(&self) -> Result<(CausalLm, Tokenizer)> {
        Ok(load_model(&self.model, &self.device, self.dtype)?)
    }
}

/// Loading a checkpoint with its tokenizer lives with the evaluation library, which needs
/// it too.
pub use tiller_eval::run::load_model;

pub use crate::generation::generate_all;

/// Draws a finished run's `metrics.jsonl` as `curves.html` beside it and says where.
pub fn write_curves(run: &Path) -> Result<()> {
    if let Some(page) = tiller_eval::report::curves::write_curves_if_logged(run)? {
        println!("curves: {}", page.display());
    }
    Ok(())
}

/// `--device`, checked as the config's `device` is.
fn parse_device_name(s: &str) -> std::result::Result<DeviceName, String> {
    s.parse()
        .map_err(|e: tiller_model::ModelError| e.to_string())
}

/// The flags every trainer command takes: its TOML file and the overrides of its keys.
#[derive(clap::Args, Debug)]
pub struct TrainerArgs {
    /// The trainer's TOML file (see examples/); unknown keys are errors.
    #[arg(long)]
    pub config: PathBuf,
    /// Run directory (overrides `out`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Optimizer steps (overrides `train.max_steps`).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// cpu, cuda or cuda:N (overrides `device`).
    #[arg(long, value_parser = parse_device_name)]
    pub device: Option<DeviceName>,
    /// Continue from the newest checkpoint in the run directory.
    #[arg(long)]
    pub resume: bool,
    /// Data parallel: run N ranks on this machine (rank r on `cuda:r` with --device cuda).
    #[arg(long, value_name = "N")]
    pub nproc_per_node: Option<usize>,
}

impl TrainerArgs {
    /// Writes the given overrides into a config's `out`, `train.max_steps` and `device`.
    pub fn apply_overrides(
        &self,
        out: &mut PathBuf,
        max_steps: &mut Option<u64>,
        device: &mut DeviceName,
    ) {
        if let Some(o) = &self.out {
            *out = o.clone();
        }
        if let Some(steps) = self.max_steps {
            *max_steps = Some(steps);
        }
        if let Some(d) = &self.device {
            *device = d.clone();
        }
    }
}
