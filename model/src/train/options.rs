//! How a caller (the CLI, the pipeline, a launcher) hands a trainer its run: fresh or
//! resumed, and the world of processes it is one rank of. Every trainer's `train_in`
//! takes one; its `train` is `train_in` with a world of one.

use std::sync::Arc;

use crate::dist::{Collective, Single};

/// How a caller (the CLI, the pipeline) runs a trainer: fresh or resumed, in which world.
#[derive(Clone)]
pub struct TrainOptions {
    /// Continue from the newest checkpoint in the run directory.
    pub resume: bool,
    /// The processes of a data-parallel job; [`Single`] for one process.
    pub collective: Arc<dyn Collective>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            resume: false,
            collective: Arc::new(Single),
        }
    }
}

impl TrainOptions {
    /// One process, resuming or not.
    pub fn resume(resume: bool) -> Self {
        TrainOptions {
            resume,
            ..TrainOptions::default()
        }
    }
}
