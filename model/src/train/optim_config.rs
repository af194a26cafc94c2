//! The optimizer's settings (`[optim]` in every trainer config) and which parameters it
//! trains and decays.

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Tensor;

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
    /// ZeRO-1: in a world of several ranks, each keeps the AdamW state of only its 1/N of
    /// the parameters (gradients reduce-scattered, updated weights all-gathered). Same
    /// results as unsharded; no effect in a world of one.
    #[serde(default)]
    pub shard_optimizer: bool,
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
            shard_optimizer: false,
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
