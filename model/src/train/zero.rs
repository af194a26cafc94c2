//! ZeRO-1 (`optim.shard_optimizer = true`): in a world of N ranks each rank keeps the
//! AdamW state — both moments, and the f32 master weights of a parameter stored in bf16
//! or f16 — of only its 1/N of the parameters. Per optimizer step:
//! 1. each bucket's gradients are reduce-scattered (summed, then divided by N, as the
//!    unsharded all-reduce averages), so a rank receives the averaged gradient of its
//!    chunk only;
//! 2. the global gradient norm is the square root of the all-reduced sum of the chunks'
//!    squared norms, and clipping scales every chunk by the same factor;
//! 3. each rank runs the fused AdamW update on its chunk;
//! 4. the updated chunks are all-gathered (in the parameters' dtype), so every rank ends
//!    the step holding the whole updated model, as without sharding.
//!
//! Partition: the parameters, in the optimizer's (name) order, form flat buckets — runs
//! of one dtype and device of at most [`BUCKET_BYTES`], as the gradient all-reduce cuts
//! them — each padded with zeros to a multiple of N; rank r owns the r-th of N equal
//! chunks of every bucket. It depends only on the parameter list and N, so every rank
//! computes the same partition. Gradients stay whole on every rank (sharding them is
//! ZeRO-2), so only the optimizer state shrinks.
//!
//! Checkpoints keep one format whatever the sharding: every rank all-gathers the state
//! and the main rank alone writes the file an unsharded run writes (`exp_avg.<name>`,
//! `exp_avg_sq.<name>`, `master.<name>`); on resume every rank reads that file and keeps
//! its chunk. So the rank-0-only rule of the run directory holds, and a checkpoint
//! resumes with any world size — with the same one, bit-exactly.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use crate::dist::{Collective, BUCKET_BYTES};
use crate::error::Result;
use crate::train::fused;
use crate::train::optim::{state_kind, take_state, Slot};

/// Elements per f64 slice when summing a gradient chunk's squares.
const NORM_SLICE: i64 = 1 << 20;

/// The start-up line on optimizer memory, e.g. `optimizer state: 1.03 GiB per rank
/// (sharded 1/2)`, for `bytes` held by this rank, sharded over `shards` of `world` ranks.
pub(crate) fn describe_state(bytes: i64, shards: usize, world: usize) -> String {
    let b = bytes as f64;
    let size = if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.2} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b / 1024.0)
    };
    let how = match (shards, world) {
        (_, 1) => String::new(),
        (1, _) => " per rank (not sharded; optim.shard_optimizer = true divides it)".to_owned(),
        (n, _) => format!(" per rank (sharded 1/{n})"),
    };
    format!("optimizer state: {size}{how} ({bytes} bytes)")
}

/// A parameter's elements inside this rank's chunk of its bucket.
struct Piece {
    /// Index into the optimizer's slots.
    slot: usize,
    /// Where the piece starts in this rank's chunk.
    in_chunk: i64,
    /// Where it starts in the flattened parameter.
    in_param: i64,
    len: i64,
}

/// One flat bucket and this rank's state for its chunk.
struct Bucket {
    slots: Range<usize>,
    /// Each slot's offset in the flat bucket.
    starts: Vec<i64>,
    /// The parameters' dtype (and the gradients').
    kind: Kind,
    device: Device,
    /// Elements per rank: the padded bucket length over N.
    chunk: i64,
    /// The padded bucket length, `chunk × N`.
    padded: i64,
    pieces: Vec<Piece>,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    master: Option<Tensor>,
    /// This step's averaged gradient chunk (the parameters' dtype), from `reduce_grads`.
    grad: Option<Tensor>,
}

/// The sharded AdamW state of one rank.
pub(crate) struct Zero {
    collective: Arc<dyn Collective>,
    buckets: Vec<Bucket>,
}

/// Cuts `slots` into runs of one dtype and device of at most [`BUCKET_BYTES`] (a
/// parameter larger than that is a bucket of its own).
fn bucket_ranges(slots: &[Slot]) -> Vec<Range<usize>> {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut bytes = 0i64;
    for (i, slot) in slots.iter().enumerate() {
        let p = &slot.param;
        let size = (p.numel() * p.kind().elt_size_in_bytes()) as i64;
        let fits = ranges.last().is_some_and(|r| {
            let first = &slots[r.start].param;
            bytes + size <= BUCKET_BYTES && first.kind() == p.kind() && first.device() == p.device()
        });
        match ranges.last_mut() {
            Some(r) if fits => r.end = i + 1,
            _ => {
                ranges.push(i..i + 1);
                bytes = 0;
            }
        }
        bytes += size;
    }
    ranges
}

impl Zero {
    /// This rank's share of the state of `slots`: moments at zero and master weights
    /// copied from the parameters, for its chunk of every bucket.
    pub(crate) fn new(slots: &[Slot], collective: Arc<dyn Collective>) -> Zero {
        let (rank, world) = (collective.rank() as i64, collective.world_size() as i64);
        let buckets = bucket_ranges(slots)
            .into_iter()
            .map(|range| {
                let first = &slots[range.start].param;
                let (kind, device) = (first.kind(), first.device());
                let mut starts = Vec::with_capacity(range.len());
                let mut total = 0i64;
                for slot in &slots[range.clone()] {
                    starts.push(total);
                    total += slot.param.numel() as i64;
                }
                let chunk = (total + world - 1) / world;
                let (lo, hi) = (rank * chunk, (rank + 1) * chunk);
                let pieces = range
                    .clone()
                    .zip(&starts)
                    .filter_map(|(slot, &start)| {
                        let end = start + slots[slot].param.numel() as i64;
                        let (a, b) = (start.max(lo), end.min(hi));
                        (a < b).then(|| Piece {
                            slot,
                            in_chunk: a - lo,
                            in_param: a - start,
                            len: b - a,
                        })
                    })
                    .collect();
                let (state, wide) = state_kind(kind);
                let zeros = || Tensor::zeros([chunk], (state, device));
                let mut bucket = Bucket {
                    slots: range,
                    starts,
                    kind,
                    device,
                    chunk,
                    padded: chunk * world,
                    pieces,
                    exp_avg: zeros(),
                    exp_avg_sq: zeros(),
                    master: None,
                    grad: None,
                };
                if !wide {
                    bucket.master = Some(bucket.own(slots, |s| s.param.detach()).to_kind(state));
                }
                bucket
            })
            .collect();
        Zero {
            collective,
            buckets,
        }
    }

    pub(crate) fn world_size(&self) -> usize {
        self.collective.world_size()
    }

    /// Bytes of optimizer state this rank holds.
    pub(crate) fn state_bytes(&self) -> i64 {
        self.buckets
            .iter()
            .flat_map(|b| [Some(&b.exp_avg), Some(&b.exp_avg_sq), b.master.as_ref()])
            .flatten()
            .map(|t| (t.numel() * t.kind().elt_size_in_bytes()) as i64)
            .sum()
    }

    /// Reduce-scatters every bucket's gradients: this rank keeps the average over ranks
    /// of its chunk. A parameter without a gradient on this rank counts as zeros. The
    /// whole gradients are not read again this step (a backend may use a one-tensor
    /// bucket's gradient as its scratch space).
    pub(crate) fn reduce_grads(&mut self, slots: &[Slot]) -> Result<()> {
        let world = self.collective.world_size();
        for bucket in &mut self.buckets {
            let input = bucket.flat(slots, |s| {
                let grad = s.param.grad();
                if grad.defined() {
                    grad
                } else {
                    s.param.zeros_like()
                }
            });
            let mut output = Tensor::empty([bucket.chunk], (bucket.kind, bucket.device));
            self.collective.reduce_scatter_sum(&output, &input)?;
            // Sum, then divide: the order the unsharded all-reduce's average takes.
            let _ = tch::no_grad(|| output.f_div_scalar_(world as f64))?;
            bucket.grad = Some(output);
        }
        Ok(())
    }

    /// The global L2 norm of the averaged gradients: every rank's chunks' squared norms,
    /// summed over ranks (in f64), square-rooted. Collective: every rank calls it.
    pub(crate) fn grad_norm(&self) -> Result<f64> {
        let mut local = 0.0;
        for grad in self.buckets.iter().filter_map(|b| b.grad.as_ref()) {
            // In slices, so the f64 copies stay small next to a chunk of an embedding.
            for slice in grad.split(NORM_SLICE, 0) {
                local += slice
                    .to_kind(Kind::Double)
                    .square()
                    .sum(Kind::Double)
                    .f_double_value(&[])?;
            }
        }
        let mut total = [local];
        self.collective.all_reduce_sum_f64(&mut total)?;
        Ok(total[0].sqrt())
    }

    /// Scales this rank's gradient chunks by `coef` (clipping).
    pub(crate) fn scale_grads(&mut self, coef: f64) {
        tch::no_grad(|| {
            for grad in self.buckets.iter_mut().filter_map(|b| b.grad.as_mut()) {
                let _ = grad.g_mul_scalar_(coef);
            }
        });
    }

    /// Forgets the step's gradient chunks (a skipped update).
    pub(crate) fn clear_grads(&mut self) {
        self.buckets.iter_mut().for_each(|b| b.grad = None);
    }

    /// One AdamW update of this rank's chunks (`update` as [`fused::adamw`] takes it, its
    /// weight decay applied to the parameters `Slot::decay` picks), then the all-gather
    /// that gives every rank the whole updated model. A bucket without a reduced
    /// gradient (no `reduce_grads` this step) is left alone on every rank alike.
    pub(crate) fn step(&mut self, slots: &[Slot], update: fused::AdamWUpdate) -> Result<()> {
        for bucket in &mut self.buckets {
            let Some(grad) = bucket.grad.take() else {
                continue;
            };
            let work = match &bucket.master {
                Some(master) => master.shallow_clone(),
                None => bucket.own(slots, |s| s.param.detach()),
            };
            let grad = grad.to_kind(work.kind());
            tch::no_grad(|| -> Result<()> {
                for decay in [true, false] {
                    let pieces = bucket
                        .pieces
                        .iter()
                        .filter(|p| slots[p.slot].decay == decay);
                    let (mut ps, mut gs, mut ms, mut vs) = (vec![], vec![], vec![], vec![]);
                    for p in pieces {
                        ps.push(work.narrow(0, p.in_chunk, p.len));
                        gs.push(grad.narrow(0, p.in_chunk, p.len));
                        ms.push(bucket.exp_avg.narrow(0, p.in_chunk, p.len));
                        vs.push(bucket.exp_avg_sq.narrow(0, p.in_chunk, p.len));
                    }
                    let weight_decay = if decay { update.weight_decay } else { 0.0 };
                    let update = fused::AdamWUpdate {
                        weight_decay,
                        ..update
                    };
                    fused::adamw(&ps, &gs, &ms, &vs, update)?;
                }
                // A low-precision parameter is the rounding of its master, as unsharded.
                let send = work.to_kind(bucket.kind);
                // A bucket of one unpadded contiguous parameter gathers straight into it.
                let first = &slots[bucket.slots.start].param;
                let direct = bucket.slots.len() == 1
                    && first.numel() as i64 == bucket.padded
                    && first.is_contiguous();
                if direct {
                    return self.collective.all_gather(&first.view([-1]), &send);
                }
                let full = Tensor::empty([bucket.padded], (bucket.kind, bucket.device));
                self.collective.all_gather(&full, &send)?;
                for (slot, &start) in bucket.slots.clone().zip(&bucket.starts) {
                    let param = &slots[slot].param;
                    let whole = full.narrow(0, start, param.numel() as i64);
                    param
                        .shallow_clone()
                        .f_copy_(&whole.view(param.size().as_slice()))?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// The whole state, all-gathered, under the names an unsharded [`AdamW`] saves it
    /// with. Collective: every rank calls it; the main rank writes it.
    ///
    /// [`AdamW`]: crate::train::AdamW
    pub(crate) fn gather_state(&self, slots: &[Slot]) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for bucket in &self.buckets {
            let parts = [
                ("exp_avg", Some(&bucket.exp_avg)),
                ("exp_avg_sq", Some(&bucket.exp_avg_sq)),
                ("master", bucket.master.as_ref()),
            ];
            for (prefix, part) in parts {
                let Some(part) = part else { continue };
                let full = Tensor::empty([bucket.padded], (part.kind(), bucket.device));
                self.collective.all_gather(&full, part)?;
                for (slot, &start) in bucket.slots.clone().zip(&bucket.starts) {
                    let s = &slots[slot];
                    let whole = full.narrow(0, start, s.param.numel() as i64);
                    out.insert(
                        format!("{prefix}.{}", s.name),
                        whole.view(s.param.size().as_slice()),
                    );
                }
            }
        }
        Ok(out)
    }

    /// Keeps this rank's chunk of the whole state in `tensors` (as [`Zero::gather_state`]
    /// names it); a missing or misshapen tensor is an error naming `path`.
    pub(crate) fn load(
        &mut self,
        slots: &[Slot],
        tensors: &HashMap<String, Tensor>,
        path: &Path,
    ) -> Result<()> {
        for bucket in &mut self.buckets {
            let parts = [
                ("exp_avg", Some(&bucket.exp_avg)),
                ("exp_avg_sq", Some(&bucket.exp_avg_sq)),
                ("master", bucket.master.as_ref()),
            ];
            for (prefix, part) in parts {
                let Some(part) = part else { continue };
                for s in &slots[bucket.slots.clone()] {
                    take_state(tensors, prefix, s, path)?;
                }
                tch::no_grad(|| -> Result<()> {
                    for p in &bucket.pieces {
                        let s = &slots[p.slot];
                        let src = &tensors[&format!("{prefix}.{}", s.name)];
                        let mut dst = part.narrow(0, p.in_chunk, p.len);
                        dst.f_copy_(&src.reshape([-1]).narrow(0, p.in_param, p.len))?;
                    }
                    Ok(())
                })?;
            }
        }
        Ok(())
    }
}

impl Bucket {
    /// The whole bucket of `of(slot)` flattened, zero-padded to `chunk × N` elements.
    fn flat(&self, slots: &[Slot], of: impl Fn(&Slot) -> Tensor) -> Tensor {
        let mut parts: Vec<Tensor> = slots[self.slots.clone()]
            .iter()
            .map(|s| of(s).reshape([-1]))
            .collect();
        let total: i64 = parts.iter().map(|t| t.numel() as i64).sum();
        let pad = self.padded - total;
        if pad == 0 && parts.len() == 1 {
            // A bucket of one unpadded tensor: its flat view (`reshape` copies only a
            // non-contiguous one).
            return parts.remove(0);
        }
        if pad > 0 {
            parts.push(Tensor::zeros([pad], (self.kind, self.device)));
        }
        Tensor::cat(&parts, 0)
    }

    /// This rank's chunk of `of(slot)` (zeros where the chunk is padding).
    fn own(&self, slots: &[Slot], of: impl Fn(&Slot) -> Tensor) -> Tensor {
        let chunk = Tensor::zeros([self.chunk], (self.kind, self.device));
        tch::no_grad(|| {
            for p in &self.pieces {
                let src = of(&slots[p.slot])
                    .reshape([-1])
                    .narrow(0, p.in_param, p.len);
                chunk.narrow(0, p.in_chunk, p.len).copy_(&src);
            }
        });
        chunk
    }
}
