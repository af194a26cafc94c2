//! The sections every trainer's TOML has — `model`, `out`, `device`, `dtype`, `seed`,
//! `[train]`, `[optim]`, `[schedule]`, `[lora]` — and the one check of them.
//!
//! serde cannot `flatten` a struct into one that rejects unknown keys, so each trainer's
//! config keeps these keys at its top level (the TOML files stay as they are) and lends
//! them as one [`RunConfig`]. [`RunConfig::validate`] is the only place their values are
//! checked: every trainer's `validate()` calls it, the trainers call that before they
//! start, and so does the pipeline's pre-flight check. Errors name the key, e.g.
//! `train.grad_accum = 0: must be at least 1`; the file reader prefixes the file.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::device::{parse_device, DType};
use crate::error::ModelError;
use crate::lora::LoraTrainConfig;
use crate::train::loop_config::TrainConfig;
use crate::train::optim::OptimConfig;
use crate::train::schedule::ScheduleConfig;

/// `device = "cpu" | "cuda" | "cuda:N"`, parsed (and checked usable) when the file is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceName {
    name: String,
    device: Device,
}

impl DeviceName {
    pub fn cpu() -> Self {
        DeviceName {
            name: "cpu".into(),
            device: Device::Cpu,
        }
    }
    pub fn device(&self) -> Device {
        self.device
    }
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl Default for DeviceName {
    fn default() -> Self {
        DeviceName::cpu()
    }
}

impl FromStr for DeviceName {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        Ok(DeviceName {
            name: s.to_owned(),
            device: parse_device(s)?,
        })
    }
}

impl TryFrom<String> for DeviceName {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, ModelError> {
        s.parse()
    }
}

impl From<DeviceName> for String {
    fn from(d: DeviceName) -> String {
        d.name
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// The shared sections of one trainer's config, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct RunConfig<'a> {
    /// The starting checkpoint (and the base of any adapter).
    pub model: &'a Path,
    /// The run directory.
    pub out: &'a Path,
    pub device: &'a DeviceName,
    pub dtype: DType,
    pub seed: u64,
    pub train: &'a TrainConfig,
    pub optim: &'a OptimConfig,
    pub schedule: ScheduleConfig,
    /// Present: LoRA adapters on a frozen base.
    pub lora: Option<&'a LoraTrainConfig>,
}

/// Implements `run_config()` (the sections every trainer shares, for the shared checks,
/// loading and the runtime) for a trainer config whose shared fields carry the shared names:
/// serde cannot flatten one struct of them into a config that also rejects unknown keys,
/// so each config keeps the fields and this borrows them.
#[macro_export]
macro_rules! impl_run_config {
    ($config:ty) => {
        impl $config {
            /// The sections every trainer shares, for the shared checks, loading and runtime.
            pub fn run_config(&self) -> $crate::train::RunConfig<'_> {
                $crate::train::RunConfig {
                    model: &self.model,
                    out: &self.out,
                    device: &self.device,
                    dtype: self.dtype,
                    seed: self.seed,
                    train: &self.train,
                    optim: &self.optim,
                    schedule: self.schedule,
                    lora: self.lora.as_ref(),
                }
            }
        }
    };
}

/// `key = value: why` for the first value that cannot run.
fn bad(key: &str, value: impl fmt::Display, why: &str) -> Result<(), String> {
    Err(format!("{key} = {value}: {why}"))
}

fn at_least_one(key: &str, value: u64) -> Result<(), String> {
    if value == 0 {
        return bad(key, value, "must be at least 1");
    }
    Ok(())
}

fn positive(key: &str, value: f64) -> Result<(), String> {
    if !(value.is_finite() && value > 0.0) {
        return bad(key, value, "must be a positive number");
    }
    Ok(())
}

fn non_negative(key: &str, value: f64) -> Result<(), String> {
    if !(value.is_finite() && value >= 0.0) {
        return bad(key, value, "must be a number ≥ 0");
    }
    Ok(())
}

impl RunConfig<'_> {
    /// Every value of the shared sections that cannot run is an error naming its key.
    pub fn validate(&self) -> Result<(), String> {
        if self.model.as_os_str().is_empty() {
            return bad("model", "\"\"", "must name a model directory");
        }
        if self.out.as_os_str().is_empty() {
            return bad("out", "\"\"", "must name a run directory");
        }
        let t = self.train;
        at_least_one("train.batch_size", t.batch_size as u64)?;
        at_least_one("train.grad_accum", t.grad_accum as u64)?;
        at_least_one("train.log_every", t.log_every)?;
        if let Some(steps) = t.max_steps {
            at_least_one("train.max_steps", steps)?;
        }
        if let Some(every) = t.save_every {
            // "No checkpoints" is the absent key; 0 would divide by zero.
            if every == 0 {
                return bad(
                    "train.save_every",
                    0,
                    "must be at least 1 (leave it out for no checkpoints)",
                );
            }
        }
        if t.max_steps.is_none() {
            positive("train.epochs", t.epochs)?;
        }
        let o = self.optim;
        positive("optim.lr", o.lr)?;
        positive("optim.eps", o.eps)?;
        non_negative("optim.weight_decay", o.weight_decay)?;
        non_negative("optim.max_grad_norm", o.max_grad_norm)?;
        for (i, beta) in o.betas.iter().enumerate() {
            if !(0.0..1.0).contains(beta) {
                return bad(&format!("optim.betas[{i}]"), beta, "must be in [0, 1)");
            }
        }
        if let Some(l) = self.lora {
            at_least_one("lora.r", l.r as u64)?;
            positive("lora.alpha", l.alpha)?;
            if !(0.0..1.0).contains(&l.dropout) {
                return bad("lora.dropout", l.dropout, "must be in [0, 1)");
            }
            if l.target_modules.is_empty() {
                return bad("lora.target_modules", "[]", "must name at least one module");
            }
        }
        Ok(())
    }
}
