//! The collective operations a data-parallel trainer needs, over the processes of one job.
//!
//! The training runtime is written against this trait only: [`Single`] is the world of
//! one process (every operation a no-op, so a one-process run is exactly what it was
//! before data parallelism), and the c10d process group (Gloo on CPU, NCCL on CUDA) is
//! the real one. Tensors are tch handles: "in place" means every rank's tensor holds the
//! result afterwards.

use tch::Tensor;

use crate::error::Result;

pub trait Collective: Send + Sync {
    /// This process's rank, `0..world_size()`.
    fn rank(&self) -> usize;
    fn world_size(&self) -> usize;
    /// Rank 0 alone writes metrics, checkpoints, manifests and curves.
    fn is_main(&self) -> bool {
        self.rank() == 0
    }
    /// Averages each tensor in place across ranks (gradients before an optimizer step).
    fn all_reduce_mean(&self, tensors: &[Tensor]) -> Result<()>;
    /// Sums in place across ranks (metric sums and counts, moments for whitening).
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()>;
    /// Copies rank 0's tensors into every rank's (initial weights, a broadcast decision).
    fn broadcast(&self, tensors: &[Tensor]) -> Result<()>;
    /// Sums `input` across ranks and leaves this rank's chunk of the sum in `output`:
    /// `input` (flat) holds `world_size()` chunks of `output`'s length, and rank r gets the
    /// r-th (ZeRO-1's gradient reduce-scatter).
    fn reduce_scatter_sum(&self, output: &Tensor, input: &Tensor) -> Result<()>;
    /// Every rank's `input` (flat, one length), in rank order, into each rank's `output`
    /// (`world_size()` times as long): ZeRO-1's all-gather of the updated weight shards.
    fn all_gather(&self, output: &Tensor, input: &Tensor) -> Result<()>;
    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;
}

/// The world of one process.
#[derive(Debug, Default, Clone, Copy)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_mean(&self, _tensors: &[Tensor]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum_f64(&self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _tensors: &[Tensor]) -> Result<()> {
        Ok(())
    }
    fn reduce_scatter_sum(&self, output: &Tensor, input: &Tensor) -> Result<()> {
        tch::no_grad(|| output.shallow_clone().f_copy_(input))?;
        Ok(())
    }
    fn all_gather(&self, output: &Tensor, input: &Tensor) -> Result<()> {
        tch::no_grad(|| output.shallow_clone().f_copy_(input))?;
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
}
