//! AdamW whose whole state (two moments per parameter and a step count) is ours to save and
//! restore bit-exactly — tch's `nn::Optimizer` hides its state — updated by ATen's fused
//! kernel (`fused`). Also global-norm gradient clipping.
//!
//! Mixed precision: a parameter stored in bf16 (or f16) gets an f32 master copy here. The
//! update is applied to the master and the model's weight is its rounding, so forward and
//! backward run in bf16 while small updates still accumulate (as with torch autocast's
//! f32 weights; updating bf16 weights in place would round most of them away).
//!
//! With `shard_optimizer` in a world of several ranks, [`AdamW::shard`] hands the state
//! to ZeRO-1 ([`crate::train::zero`]): each rank then keeps only its 1/N of the moments
//! and master weights, and the same methods reduce-scatter, clip, step and all-gather.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tch::{Kind, Tensor};

use crate::checkpoint::{load_safetensors, save_safetensors};
use crate::dist::Collective;
use crate::error::{ModelError, Result};
use crate::train::fused;
pub use crate::train::optim_config::{decays, trainable_params, OptimConfig};
use crate::train::zero::Zero;

/// One optimized parameter.
pub(crate) struct Slot {
    pub(crate) name: String,
    pub(crate) param: Tensor,
    pub(crate) decay: bool,
}

/// The state of one parameter, unsharded.
struct Moments {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// The f32 master weights of a parameter stored in lower precision.
    master: Option<Tensor>,
}

/// Where the optimizer state lives: not allocated yet, whole on this rank, or this rank's
/// ZeRO-1 share. It is allocated at first use, so that a sharded rank never holds the
/// whole state, not even briefly, and master weights copy the parameters as they are
/// then (after a trainer loaded or broadcast them).
enum State {
    Unallocated,
    /// One entry per slot.
    Whole(Vec<Moments>),
    Sharded(Zero),
}

/// Fresh state for `slots`: zero moments, and master copies of low-precision parameters.
fn fresh_moments(slots: &[Slot]) -> Vec<Moments> {
    slots
        .iter()
        .map(|s| {
            let (kind, wide) = state_kind(s.param.kind());
            Moments {
                exp_avg: s.param.zeros_like().to_kind(kind),
                exp_avg_sq: s.param.zeros_like().to_kind(kind),
                master: (!wide).then(|| s.param.detach().to_kind(Kind::Float)),
            }
        })
        .collect()
}

/// The dtype of the moments (and master) of a parameter of `kind`, and whether `kind` is
/// that wide already (f32, f64: no master copy).
pub(crate) fn state_kind(kind: Kind) -> (Kind, bool) {
    let wide = matches!(kind, Kind::Float | Kind::Double);
    (if wide { kind } else { Kind::Float }, wide)
}

fn bytes(t: &Tensor) -> i64 {
    (t.numel() * t.kind().elt_size_in_bytes()) as i64
}

/// Checks that `tensors` holds `<prefix>.<slot name>` with the parameter's shape.
pub(crate) fn take_state(
    tensors: &HashMap<String, Tensor>,
    prefix: &str,
    slot: &Slot,
    path: &Path,
) -> Result<()> {
    let name = format!("{prefix}.{}", slot.name);
    let src = tensors
        .get(&name)
        .ok_or_else(|| ModelError::MissingTensors {
            dir: path.to_owned(),
            names: vec![name.clone()],
        })?;
    if src.size() != slot.param.size() {
        return Err(ModelError::TensorShape {
            file: path.to_owned(),
            name,
            expected: slot.param.size(),
            found: src.size(),
        });
    }
    Ok(())
}

/// AdamW as in `torch.optim.AdamW(fused=True)` (non-amsgrad). Moments are kept in f32 (f64
/// for f64 parameters).
pub struct AdamW {
    config: OptimConfig,
    slots: Vec<Slot>,
    state: State,
    /// Optimizer steps taken (bias correction uses `steps + 1` for the next one).
    steps: u64,
}

impl AdamW {
    /// An optimizer over `params` (name, tensor), e.g. from [`trainable_params`].
    pub fn new(params: Vec<(String, Tensor)>, config: &OptimConfig) -> Self {
        let slots: Vec<Slot> = params
            .into_iter()
            .map(|(name, param)| Slot {
                decay: decays(&name, &param),
                name,
                param,
            })
            .collect();
        AdamW {
            config: config.clone(),
            slots,
            state: State::Unallocated,
            steps: 0,
        }
    }

    /// Switches to ZeRO-1 over `collective` when `optim.shard_optimizer` is set and the
    /// world has several ranks (otherwise nothing changes): this rank keeps only its share
    /// of it, fresh — so call it before any step or load (a no-op after). Every rank
    /// must pass the same parameters in the same order.
    pub fn shard(&mut self, collective: Arc<dyn Collective>) {
        if !self.config.shard_optimizer || collective.world_size() == 1 {
            return;
        }
        if let State::Unallocated = self.state {
            self.state = State::Sharded(Zero::new(&self.slots, collective));
        }
    }

    /// Allocates the whole state if it is not yet (and not sharded).
    fn allocate(&mut self) {
        if let State::Unallocated = self.state {
            self.state = State::Whole(fresh_moments(&self.slots));
        }
    }

    /// The world size the state is sharded over (1 when it is whole).
    pub fn shards(&self) -> usize {
        match &self.state {
            State::Unallocated | State::Whole(_) => 1,
            State::Sharded(zero) => zero.world_size(),
        }
    }

    /// Bytes of optimizer state (moments and master weights) this process holds (or will,
    /// once allocated).
    pub fn state_bytes(&self) -> i64 {
        match &self.state {
            State::Unallocated => self
                .slots
                .iter()
                .map(|s| {
                    let (kind, wide) = state_kind(s.param.kind());
                    let per = kind.elt_size_in_bytes() * if wide { 2 } else { 3 };
                    (s.param.numel() * per) as i64
                })
                .sum(),
            State::Whole(moments) => moments
                .iter()
                .flat_map(|m| [Some(&m.exp_avg), Some(&m.exp_avg_sq), m.master.as_ref()])
                .flatten()
                .map(bytes)
                .sum(),
            State::Sharded(zero) => zero.state_bytes(),
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
        if let State::Sharded(zero) = &mut self.state {
            zero.clear_grads();
        }
    }

    /// Averages every gradient across the ranks of `collective` — once per optimizer
    /// step, after the last micro-batch and before clipping (a no-op in a world of one).
    /// Every rank passes the same parameters in the same (name) order; a parameter without
    /// a gradient on this rank gets a zero one first, so no rank waits on a missing tensor.
    /// Sharded, each rank receives the average of its own share only (a reduce-scatter
    /// over the group it was sharded with).
    pub fn all_reduce_grads(&mut self, collective: &dyn crate::dist::Collective) -> Result<()> {
        if let State::Sharded(zero) = &mut self.state {
            return zero.reduce_grads(&self.slots);
        }
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
    /// (the norm of the per-parameter norms), in f64. Sharded, it is the norm of every
    /// rank's share of the averaged gradient, and every rank must call it.
    pub fn grad_norm(&self) -> Result<f64> {
        if let State::Sharded(zero) = &self.state {
            return zero.grad_norm();
        }
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
                match &mut self.state {
                    State::Sharded(zero) => zero.scale_grads(coef),
                    State::Unallocated | State::Whole(_) => tch::no_grad(|| {
                        for slot in &self.slots {
                            let mut grad = slot.param.grad();
                            if grad.defined() {
                                let _ = grad.g_mul_scalar_(coef);
                            }
                        }
                    }),
                }
            }
        }
        Ok(norm)
    }

    /// One AdamW update at learning rate `lr` with the current gradients (the formula is
    /// at [`fused::adamw`], which runs it). Parameters without a gradient are left alone;
    /// weight decay applies to those [`decays`] picks. A parameter with a master copy is
    /// updated through it and then set to its rounding. Sharded, each rank updates its
    /// share and every rank then receives the others' (collective).
    pub fn step(&mut self, lr: f64) -> Result<()> {
        self.steps += 1;
        let update = fused::AdamWUpdate {
            lr,
            betas: self.config.betas,
            weight_decay: self.config.weight_decay,
            eps: self.config.eps,
            step: self.steps,
        };
        self.allocate();
        let moments = match &mut self.state {
            State::Sharded(zero) => return zero.step(&self.slots, update),
            State::Whole(moments) => &*moments,
            State::Unallocated => unreachable!("allocated above"),
        };
        let slots = &self.slots;
        tch::no_grad(|| -> Result<()> {
            for decay in [true, false] {
                let (mut params, mut grads, mut exp_avgs, mut exp_avg_sqs) =
                    (vec![], vec![], vec![], vec![]);
                for (slot, m) in slots.iter().zip(moments.iter()) {
                    let grad = slot.param.grad();
                    if slot.decay != decay || !grad.defined() {
                        continue;
                    }
                    let param = m.master.as_ref().unwrap_or(&slot.param);
                    grads.push(grad.to_kind(param.kind()));
                    params.push(param.shallow_clone());
                    exp_avgs.push(m.exp_avg.shallow_clone());
                    exp_avg_sqs.push(m.exp_avg_sq.shallow_clone());
                }
                let weight_decay = if decay { update.weight_decay } else { 0.0 };
                let update = fused::AdamWUpdate {
                    weight_decay,
                    ..update
                };
                fused::adamw(&params, &grads, &exp_avgs, &exp_avg_sqs, update)?;
            }
            for (slot, m) in slots.iter().zip(moments.iter()) {
                if let Some(master) = &m.master {
                    if slot.param.grad().defined() {
                        slot.param.shallow_clone().copy_(master);
                    }
                }
            }
            Ok(())
        })
    }

    /// Both moments of every parameter (`exp_avg.<name>`, `exp_avg_sq.<name>`, and
    /// `master.<name>` for mixed precision), whole. Sharded, they are all-gathered:
    /// every rank must call it.
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let fresh;
        let moments = match &self.state {
            State::Sharded(zero) => return zero.gather_state(&self.slots),
            State::Whole(moments) => moments,
            State::Unallocated => {
                fresh = fresh_moments(&self.slots);
                &fresh
            }
        };
        let mut tensors = HashMap::new();
        for (slot, m) in self.slots.iter().zip(moments) {
            if let Some(master) = &m.master {
                tensors.insert(format!("master.{}", slot.name), master.shallow_clone());
            }
            tensors.insert(format!("exp_avg.{}", slot.name), m.exp_avg.shallow_clone());
            tensors.insert(
                format!("exp_avg_sq.{}", slot.name),
                m.exp_avg_sq.shallow_clone(),
            );
        }
        Ok(tensors)
    }

    /// Writes [`AdamW::state_tensors`] to one safetensors file; the step count goes in the
    /// train state. Sharded, every rank must call it (see
    /// [`crate::train::Runtime::save_checkpoint`], which writes on the main rank only).
    pub fn save(&self, path: &Path) -> Result<()> {
        save_safetensors(&self.state_tensors()?, path)
    }

    /// Restores the moments written by [`AdamW::save`] and the step count. Every moment
    /// must be present with the parameter's shape: a partial restore is an error. The
    /// file is the same sharded or not; sharded, this rank keeps its share of it.
    pub fn load(&mut self, path: &Path, steps: u64) -> Result<()> {
        let mut tensors = load_safetensors(path)?;
        self.allocate();
        match &mut self.state {
            State::Sharded(zero) => zero.load(&self.slots, &tensors, path)?,
            State::Whole(moments) => {
                for (slot, m) in self.slots.iter().zip(moments.iter_mut()) {
                    let mut parts = vec![
                        ("exp_avg", &mut m.exp_avg),
                        ("exp_avg_sq", &mut m.exp_avg_sq),
                    ];
                    if let Some(master) = &mut m.master {
                        parts.push(("master", master));
                    }
                    for (prefix, moment) in parts {
                        take_state(&tensors, prefix, slot, path)?;
                        let src = &tensors[&format!("{prefix}.{}", slot.name)];
                        tch::no_grad(|| moment.f_copy_(src))?;
                    }
                }
            }
            State::Unallocated => unreachable!("allocated above"),
        }
        let expected = |prefix: &str, s: &Slot| format!("{prefix}.{}", s.name);
        let has_master = |s: &Slot| !state_kind(s.param.kind()).1;
        for slot in &self.slots {
            tensors.remove(&expected("exp_avg", slot));
            tensors.remove(&expected("exp_avg_sq", slot));
            if has_master(slot) {
                tensors.remove(&expected("master", slot));
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
