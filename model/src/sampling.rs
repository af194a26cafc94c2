//! Token choice from logits: greedy, or temperature / top-k / top-p sampling with a
//! per-row seeded RNG, so a row's sample does not depend on what else is in the batch.

use tch::{Kind, Tensor};

use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    Greedy,
    Random {
        temperature: f64,
        top_k: Option<usize>,
        top_p: Option<f64>,
    },
}

impl Sampling {
    /// `temperature == 0` means greedy, as in the CLI's `--temperature 0`.
    pub fn from_options(temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> Self {
        if temperature <= 0.0 {
            Sampling::Greedy
        } else {
            Sampling::Random {
                temperature,
                top_k,
                top_p,
            }
        }
    }
}

/// SplitMix64: tiny, fast, and its whole state is one u64 (easy to save and resume).
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Chosen token ids and their log-probabilities under the (temperature-scaled, unfiltered)
/// distribution — the quantity PPO's importance ratios need.
pub fn choose_tokens(
    logits: &Tensor,
    sampling: Sampling,
    rngs: &mut [SplitMix64],
) -> Result<(Vec<i64>, Vec<f32>)> {
    let logits = logits.to_kind(Kind::Float);
    match sampling {
        Sampling::Greedy => {
            let log_probs = logits.log_softmax(-1, Kind::Float);
            let ids = logits.argmax(-1, false);
            let chosen = log_probs.gather(1, &ids.unsqueeze(1), false).squeeze_dim(1);
            Ok((Vec::<i64>::try_from(&ids)?, Vec::<f32>::try_from(&chosen)?))
        }
        Sampling::Random {
            temperature,
            top_k,
            top_p,
        } => {
            let scaled = logits / temperature;
            let log_probs = scaled.log_softmax(-1, Kind::Float);
            let vocab = scaled.size()[1];
            // Candidates sorted by probability: the top k, or all when top-p needs them;
            // without either, every token in vocabulary order (its index is its id).
            let (cand_logits, cand_ids) = match (top_k, top_p) {
                (Some(k), _) if (k as i64) < vocab => {
                    let (logits, ids) = scaled.topk(k as i64, -1, true, true);
                    (logits, Some(ids))
                }
                (_, Some(p)) if p < 1.0 => {
                    let (logits, ids) = scaled.sort(-1, true);
                    (logits, Some(ids))
                }
                _ => (scaled.shallow_clone(), None),
            };
            let probs = cand_logits
                .softmax(-1, Kind::Float)
                .to_device(tch::Device::Cpu);
            let width = probs.size()[1] as usize;
            let probs: Vec<f32> = Vec::try_from(probs.contiguous().view(-1))?;
            let cand_ids: Option<Vec<i64>> = cand_ids
                .map(|ids| Vec::try_from(ids.to_device(tch::Device::Cpu).contiguous().view(-1)))
                .transpose()?;
            let mut ids = Vec::with_capacity(rngs.len());
            for (row, rng) in rngs.iter_mut().enumerate() {
                let p = &probs[row * width..(row + 1) * width];
                // Keep the smallest prefix whose mass reaches top_p (at least one token).
                let keep = match top_p {
                    Some(top_p) if top_p < 1.0 => {
                        let mut mass = 0.0f64;
                        p.iter()
                            .position(|&x| {
                                mass += x as f64;
                                mass >= top_p
                            })
                            .map_or(width, |i| i + 1)
                    }
                    _ => width,
                };
                let total: f64 = p[..keep].iter().map(|&x| x as f64).sum();
                let mut target = rng.next_f64() * total;
                let mut pick = keep - 1;
                for (i, &x) in p[..keep].iter().enumerate() {
                    target -= x as f64;
                    if target < 0.0 {
                        pick = i;
                        break;
                    }
                }
                ids.push(match &cand_ids {
                    Some(cand) => cand[row * width + pick],
                    None => pick as i64,
                });
            }
            let id_tensor = Tensor::from_slice(&ids)
                .to_device(log_probs.device())
                .unsqueeze(1);
            let chosen = log_probs.gather(1, &id_tensor, false).squeeze_dim(1);
            Ok((ids, Vec::<f32>::try_from(&chosen)?))
        }
    }
}
