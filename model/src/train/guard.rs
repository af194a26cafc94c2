//! What to do when a loss or gradient is NaN or infinite. Either way the parameters are
//! not updated with it, so no checkpoint written afterwards can hold poisoned weights.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// `on_non_finite` in a trainer config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnNonFinite {
    /// Stop the run with an error naming the step (the default).
    #[default]
    Stop,
    /// Drop the step's gradients, count it as skipped, and go on.
    Skip,
}

/// Whether a step may update the parameters: `Ok(true)` when `loss` and `grad_norm` are
/// finite, `Ok(false)` when they are not and the policy is to skip, an error otherwise.
/// `step` is the 1-based number of the step being taken.
pub fn check_finite(step: u64, loss: f64, grad_norm: f64, policy: OnNonFinite) -> Result<bool> {
    let what = if !loss.is_finite() {
        format!("loss is {loss}")
    } else if !grad_norm.is_finite() {
        format!("gradient norm is {grad_norm}")
    } else {
        return Ok(true);
    };
    match policy {
        OnNonFinite::Stop => Err(ModelError::NonFinite { step, what }),
        OnNonFinite::Skip => {
            tracing::warn!("step {step}: {what}; skipping the update (on_non_finite = \"skip\")");
            Ok(false)
        }
    }
}
