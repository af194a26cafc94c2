//! AdamW whose whole state (two moments per parameter and a step count) is ours to save and
//! restore bit-exactly — tch's `nn::Optimizer` hides its state — updated by ATen's fused
//! kernel (`fused`). Also global-norm gradient clipping.
//!
//! Mixed precision: a parameter stored in bf16 (or f16) gets an f32 master copy here. The
//! update is applied to the master and the model's weight is its rounding, so forward and
//! backward run in bf16 while small updates still accumulate (as with torch autocast's
//! f32 weights; updating bf16 weights in place would round most of them away).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::checkpoint::{load_safetensors, save_safetensors};
use crate::error::{ModelError, Result};
use crate::train::fused;

/// Optimizer settings (`[optim]` in a trainer config). Defaults are TRL's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate (the schedule scales it).
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Decoupled weight decay; never applied to norms, biases or other 1-D parameters.
    #[serde(default)]
    pub weight_decay: f64,
    /// Clip gradients to this global L2 norm; 0 disables clipping.
    #[serde(default = "default_max_grad_norm")]
    pub max_grad_norm: f64,
}

fn default_lr() -> f64 {
    2e-5
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1e-8
}
fn default_max_grad_norm() -> f64 {
    1.0
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: default_lr(),
            betas: default_betas(),
            eps: default_eps(),
            weight_decay: 0.0,
            max_grad_norm: default_max_grad_norm(),
        }
    }
}

/// The trainable parameters of `vs` (those with `requires_grad`), sorted by name so the
/// order — and with it every reduction over parameters — is the same in every run.
pub fn trainable_params(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut params: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params
}

/// Whether weight decay applies: matrices only, never norms or biases (HF's rule).
pub fn decays(name: &str, tensor: &Tensor) -> bool {
    tensor.dim() >= 2 && !name.contains("norm") && !name.ends_with("bias")
}

struct Slot {
    name: String,
    param: Tensor,
    decay: bool,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// The f32 master weights of a parameter stored in lower precision.
    master: Option<Tensor>,
}

/// AdamW as in `torch.optim.AdamW(fused=True)` (non-amsgrad). Moments are kept in f32 (f64
/// for f64 parameters).
pub struct AdamW {
    config: OptimConfig,
    slots: Vec<Slot>,
    /// Optimizer steps taken (bias correction uses `steps + 1` for the next one).
    steps: u64,
}

impl AdamW {
    /// An optimizer over `params` (name, tensor), e.g. from [`trainable_params`].
    pub fn new(params: Vec<(String, Tensor)>, config: &OptimConfig) -> Self {
        let slots = params
            .into_iter()
            .map(|(name, param)| {
                let wide = matches!(param.kind(), Kind::Float | Kind::Double);
                let state_kind = if wide { param.kind() } else { Kind::Float };
                Slot {
                    decay: decays(&name, &param),
                    exp_avg: param.zeros_like().to_kind(state_kind),
                    exp_avg_sq: param.zeros_like().to_kind(state_kind),
                    master: (!wide).then(|| param.detach().to_kind(Kind::Float)),
                    name,
                    param,
                }
            })
            .collect();
        AdamW {
            config: config.clone(),
            slots,
            steps: 0,
        }
    }

    pub fn config(&self) -> &OptimConfig {
        &self.config
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Number of parameter elements being optimized.
    pub fn numel(&self) -> usize {
        self.slots.iter().map(|s| s.param.numel()).sum()
    }

    /// Clears every gradient (before the first micro-batch of a step).
    pub fn zero_grad(&mut self) {
        for slot in &mut self.slots {
            let mut grad = slot.param.grad();
            if grad.defined() {
                let _ = grad.detach_().zero_();
            }
        }
    }

    /// Averages every gradient across the ranks of `collective` — once per optimizer
    /// step, after the last micro-batch and before clipping (a no-op in a world of one).
    /// Every rank passes the same parameters in the same (name) order; a parameter without
    /// a gradient on this rank gets a zero one first, so no rank waits on a missing tensor.
    pub fn all_reduce_grads(&mut self, collective: &dyn crate::dist::Collective) -> Result<()> {
        if collective.world_size() == 1 {
            return Ok(());
        }
        let grads: Vec<Tensor> = self
            .slots
            .iter()
            .map(|s| {
                let grad = s.param.grad();
                if grad.defined() {
                    Ok(grad)
                } else {
                    // A zero-loss backward defines the gradient (as zeros).
                    (s.param.sum(s.param.kind()) * 0.0).f_backward()?;
                    Ok(s.param.grad())
                }
            })
            .collect::<Result<_>>()?;
        collective.all_reduce_mean(&grads)
    }

    /// The global L2 norm of all gradients, as `torch.nn.utils.clip_grad_norm_` computes it
    /// (the norm of the per-parameter norms), in f64.
    pub fn grad_norm(&self) -> Result<f64> {
        let norms: Vec<Tensor> = self
            .slots
            .iter()
            .map(|s| s.param.grad())
            .filter(|g| g.defined())
            .map(|g| g.to_kind(Kind::Float).norm())
            .collect();
        if norms.is_empty() {
            return Ok(0.0);
        }
        Ok(Tensor::stack(&norms, 0).norm().f_double_value(&[])?)
    }

    /// Scales gradients so their global norm is at most `max_norm` (no-op when `max_norm`
    /// is 0) and returns the norm before clipping — TRL's `grad_norm` metric.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.grad_norm()?;
        if max_norm > 0.0 && norm.is_finite() {
            let coef = max_norm / (norm + 1e-6);
            if coef < 1.0 {
                tch::no_grad(|| {
                    for slot in &self.slots {
                        let mut grad = slot.param.grad();
                        if grad.defined() {
                            let _ = grad.g_mul_scalar_(coef);
                        }
                    }
                });
            }
        }
        Ok(norm)
    }

    /// One AdamW update at learning rate `lr` with the current gradients (the formula is
    /// at [`fused::adamw`], which runs it). Parameters without a gradient are left alone;
    /// weight decay applies to those [`decays`] picks. A parameter with a master copy is
    /// updated through it and then set to its rounding.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        self.steps += 1;
        tch::no_grad(|| -> Result<()> {
            for decay in [true, false] {
                let (mut params, mut grads, mut exp_avgs, mut exp_avg_sqs) =
                    (vec![], vec![], vec![], vec![]);
                for slot in self.slots.iter().filter(|s| s.decay == decay) {
                    let grad = slot.param.grad();
                    if !grad.defined() {
                        continue;
                    }
                    let param = slot.master.as_ref().unwrap_or(&slot.param);
                    grads.push(grad.to_kind(param.kind()));
                    params.push(param.shallow_clone());
                    exp_avgs.push(slot.exp_avg.shallow_clone());
                    exp_avg_sqs.push(slot.exp_avg_sq.shallow_clone());
                }
                let weight_decay = if decay { self.config.weight_decay } else { 0.0 };
                let update = fused::AdamWUpdate {
                    lr,
                    betas: self.config.betas,
                    weight_decay,
                    eps: self.config.eps,
                    step: self.steps,
                };
                fused::adamw(&params, &grads, &exp_avgs, &exp_avg_sqs, update)?;
            }
            for slot in &self.slots {
                if let Some(master) = &slot.master {
                    if slot.param.grad().defined() {
                        slot.param.shallow_clone().copy_(master);
                    }
                }
            }
            Ok(())
        })
    }

    /// Writes both moments of every parameter to one safetensors file
    /// (`exp_avg.<name>`, `exp_avg_sq.<name>`, and `master.<name>` for mixed precision);
    /// the step count goes in the train state.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = HashMap::new();
        for slot in &self.slots {
            if let Some(master) = &slot.master {
                tensors.insert(format!("master.{}", slot.name), master.shallow_clone());
            }
            tensors.insert(
                format!("exp_avg.{}", slot.name),
                slot.exp_avg.shallow_clone(),
            );
            tensors.insert(
                format!("exp_avg_sq.{}", slot.name),
                slot.exp_avg_sq.shallow_clone(),
            );
        }
        save_safetensors(&tensors, path)
    }

    /// Restores the moments written by [`AdamW::save`] and the step count. Every moment
    /// must be present with the parameter's shape: a partial restore is an error.
    pub fn load(&mut self, path: &Path, steps: u64) -> Result<()> {
        let mut tensors = load_safetensors(path)?;
        for slot in &mut self.slots {
            let mut parts = vec![
                ("exp_avg", &mut slot.exp_avg),
                ("exp_avg_sq", &mut slot.exp_avg_sq),
            ];
            if let Some(master) = &mut slot.master {
                parts.push(("master", master));
            }
            for (prefix, moment) in parts {
                let name = format!("{prefix}.{}", slot.name);
                let src = tensors
                    .remove(&name)
                    .ok_or_else(|| ModelError::MissingTensors {
                        dir: path.to_owned(),
                        names: vec![name.clone()],
                    })?;
                if src.size() != moment.size() {
                    return Err(ModelError::TensorShape {
                        file: path.to_owned(),
                        name,
                        expected: moment.size(),
                        found: src.size(),
                    });
                }
                tch::no_grad(|| moment.f_copy_(&src))?;
            }
        }
        if !tensors.is_empty() {
            let mut names: Vec<String> = tensors.into_keys().collect();
            names.sort();
            return Err(ModelError::UnexpectedTensors {
                file: path.to_owned(),
                names,
            });
        }
        self.steps = steps;
        Ok(())
    }
}
