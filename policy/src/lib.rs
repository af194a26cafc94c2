//! tiller-policy: policy trainers. Each algorithm is a pure loss plus an explicit loop
//! built from tiller-model's training primitives (see docs/architecture.md).

mod config_file;
pub mod dpo;
pub mod error;
pub mod kto;
pub mod reference;
pub mod rl;
pub mod sequences;
pub mod sft;
mod trainee;

pub use error::{PolicyError, Result};
