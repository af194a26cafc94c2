//! Data parallelism: the [`Collective`] operations the training runtime uses, and the
//! world of one process.

mod collective;

pub use collective::{Collective, Single};
