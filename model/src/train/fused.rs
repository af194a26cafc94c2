//! The binding of csrc/fused_adamw.cpp: ATen's fused AdamW kernel (what
//! `torch.optim.AdamW(fused=True)` runs), one pass over each parameter instead of the
//! ten or so element-wise passes of the update written with tensor operations. On CPU
//! the optimizer step is memory-bound, so the pass count is its cost.

use std::ffi::{c_char, CStr};

use tch::Tensor;
use torch_sys::C_tensor;

use crate::error::{ModelError, Result};

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn tiller_fused_adamw(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        exp_avgs: *const *mut C_tensor,
        exp_avg_sqs: *const *mut C_tensor,
        step: *mut C_tensor,
        n: i64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
    ) -> *mut c_char;
}

/// One AdamW update's settings; `step` counts from 1 (bias correction).
#[derive(Debug, Clone, Copy)]
pub struct AdamWUpdate {
    pub lr: f64,
    pub betas: [f64; 2],
    pub weight_decay: f64,
    pub eps: f64,
    pub step: u64,
}

/// Updates `params` and both moments in place from `grads`, as torch's AdamW does:
/// `p ← p·(1 − lr·wd)`, `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)`. The four lists are parallel; each
/// parameter's gradient and moments have its dtype and device.
pub fn adamw(
    params: &[Tensor],
    grads: &[Tensor],
    exp_avgs: &[Tensor],
    exp_avg_sqs: &[Tensor],
    update: AdamWUpdate,
) -> Result<()> {
    let n = params.len();
    if [grads.len(), exp_avgs.len(), exp_avg_sqs.len()] != [n; 3] {
        return Err(ModelError::InvalidArgument(format!(
            "fused AdamW: {n} parameters but {} gradients, {} and {} moments",
            grads.len(),
            exp_avgs.len(),
            exp_avg_sqs.len()
        )));
    }
    let Some(first) = params.first() else {
        return Ok(());
    };
    let mut step = Tensor::from(update.step as f32).to_device(first.device());
    let pointers = |ts: &[Tensor]| -> Vec<*mut C_tensor> {
        ts.iter().map(|t| t.as_ptr() as *mut C_tensor).collect()
    };
    let (p, g, m, v) = (
        pointers(params),
        pointers(grads),
        pointers(exp_avgs),
        pointers(exp_avg_sqs),
    );
    let [beta1, beta2] = update.betas;
    // SAFETY: every pointer comes from a live tch Tensor (an `at::Tensor*`) borrowed for
    // the call; the C++ side copies the handles and returns null or a strdup'd message.
    let error = unsafe {
        tiller_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            step.as_mut_ptr(),
            n as i64,
            update.lr,
            beta1,
            beta2,
            update.weight_decay,
            update.eps,
        )
    };
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null result is a NUL-terminated string from strdup, freed here once.
    let message = unsafe {
        let message = CStr::from_ptr(error).to_string_lossy().into_owned();
        libc::free(error.cast());
        message
    };
    Err(ModelError::InvalidArgument(format!(
        "fused AdamW: {message}"
    )))
}
