//! Rotary position embeddings (HF's `rotate_half` convention), with linear and llama3
//! frequency scaling.

use tch::{Device, Kind, Tensor};

use crate::config::{LlamaConfig, RopeType};

/// Precomputed cos/sin tables of shape (max_positions, head_dim), in f32.
#[derive(Debug)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
}

fn inverse_frequencies(cfg: &LlamaConfig) -> Vec<f64> {
    let dim = cfg.head_dim();
    let base: Vec<f64> = (0..dim / 2)
        .map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f64 / dim as f64))
        .collect();
    let Some(scaling) = &cfg.rope_scaling else {
        return base;
    };
    let factor = scaling.factor.unwrap_or(1.0);
    match scaling.rope_type {
        RopeType::Default => base,
        RopeType::Linear => base.iter().map(|f| f / factor).collect(),
        RopeType::Llama3 => {
            // transformers' _compute_llama3_parameters: long wavelengths are slowed by
            // `factor`, short ones kept, the band between interpolated smoothly.
            let low = scaling.low_freq_factor.unwrap_or(1.0);
            let high = scaling.high_freq_factor.unwrap_or(4.0);
            let original = scaling.original_max_position_embeddings.unwrap_or(8192) as f64;
            let low_wavelen = original / low;
            let high_wavelen = original / high;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (original / wavelen - low) / (high - low);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

impl Rope {
    pub fn new(cfg: &LlamaConfig, device: Device) -> Self {
        let inv_freq: Vec<f32> = inverse_frequencies(cfg).iter().map(|&f| f as f32).collect();
        let inv_freq = Tensor::from_slice(&inv_freq);
        let positions = Tensor::arange(
            cfg.max_position_embeddings as i64,
            (Kind::Float, Device::Cpu),
        );
        let freqs = positions.outer(&inv_freq); // (p, d/2)
        let emb = Tensor::cat(&[&freqs, &freqs], -1); // (p, d)
        Rope {
            cos: emb.cos().to_device(device),
            sin: emb.sin().to_device(device),
        }
    }

    /// Rotates `q` (b, h, t, d) and `k` (b, kv, t, d) by `positions` (b, t).
    ///
    /// Invariant: `positions` is (b, t) and `q`, `k` have t positions — what
    /// [`crate::llama::Llama::forward`] passes for any (b, t) batch of ids. Shapes here come
    /// from the model's own code, never from user data, so a mismatch is a bug in the
    /// caller, and it panics.
    pub fn apply(&self, q: &Tensor, k: &Tensor, positions: &Tensor) -> (Tensor, Tensor) {
        let kind = q.kind();
        let cos = self.cos.index_select(0, &positions.flatten(0, 1)); // (b*t, d)
        let sin = self.sin.index_select(0, &positions.flatten(0, 1));
        let size = positions.size();
        let (b, t) = (size[0], size[1]);
        let cos = cos.view([b, 1, t, -1]).to_kind(kind);
        let sin = sin.view([b, 1, t, -1]).to_kind(kind);
        (
            q * &cos + rotate_half(q) * &sin,
            k * &cos + rotate_half(k) * &sin,
        )
    }
}

fn rotate_half(x: &Tensor) -> Tensor {
    let half = x.size()[x.dim() - 1] / 2;
    let x1 = x.narrow(-1, 0, half);
    let x2 = x.narrow(-1, half, half);
    Tensor::cat(&[&x2.neg(), &x1], -1)
}
