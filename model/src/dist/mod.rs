//! Data parallelism: the [`Collective`] operations the training runtime uses, the world
//! of one process, and the real c10d process group (csrc/c10d.cpp: a TCPStore plus Gloo
//! on CPU or NCCL on CUDA) that ranks started by a launcher join.

mod collective;
mod group;
mod world;

pub use collective::{Collective, Single};
pub use group::{Backend, ProcessGroup, BUCKET_BYTES};
pub use world::{World, ENV_VARS, INIT_TIMEOUT_VAR, TIMEOUT_VAR};
