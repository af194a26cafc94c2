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

/// The option of [`Sampling::try_from_options`] that was out of range; callers name it
/// as their users spell it (`--temperature`, `"temperature"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplingOption {
    Temperature,
    TopP,
}

impl Sampling {
    /// `temperature == 0` means greedy, as in the CLI's `--temperature 0`; `top_k == 0`
    /// and `top_p == 1` mean "off". Options are assumed valid (see `try_from_options`).
    pub fn from_options(temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> Self {
        if temperature <= 0.0 || temperature.is_nan() {
            Sampling::Greedy
        } else {
            Sampling::Random {
                temperature,
                top_k: top_k.filter(|&k| k > 0),
                top_p: top_p.filter(|&p| p < 1.0),
            }
        }
    }

    /// As `from_options`, but a NaN, infinite or negative temperature, or a top-p outside
    /// (0, 1], is an error naming the option and saying what is allowed.
    pub fn try_from_options(
        temperature: f64,
        top_k: Option<usize>,
        top_p: Option<f64>,
    ) -> std::result::Result<Self, (SamplingOption, String)> {
        if !temperature.is_finite() || temperature < 0.0 {
            return Err((
                SamplingOption::Temperature,
                format!("must be a finite number >= 0 (0 = greedy), got {temperature}"),
            ));
        }
        if let Some(p) = top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            return Err((SamplingOption::TopP, format!("must be in (0, 1], got {p}")));
        }
        Ok(Self::from_options(temperature, top_k, top_p))
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
                (Some(k), _) if k > 0 && (k as i64) < vocab => {
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

/// `choose_tokens` with each row's own sampling: rows that share a sampling are chosen
/// together, so a batch where all rows agree does exactly what `choose_tokens` does.
pub fn choose_tokens_per_row(
    logits: &Tensor,
    samplings: &[Sampling],
    rngs: &mut [SplitMix64],
) -> Result<(Vec<i64>, Vec<f32>)> {
    let Some(first) = samplings.first() else {
        return Ok((vec![], vec![]));
    };
    if samplings.iter().all(|s| s == first) {
        return choose_tokens(logits, *first, rngs);
    }
    let (mut ids, mut logprobs) = (vec![0i64; samplings.len()], vec![0f32; samplings.len()]);
    let mut done = vec![false; samplings.len()];
    for start in 0..samplings.len() {
        if done[start] {
            continue;
        }
        let group: Vec<usize> = (start..samplings.len())
            .filter(|&r| !done[r] && samplings[r] == samplings[start])
            .collect();
        let index: Vec<i64> = group.iter().map(|&r| r as i64).collect();
        let rows = logits.index_select(0, &Tensor::from_slice(&index).to_device(logits.device()));
        let mut group_rngs: Vec<SplitMix64> = group.iter().map(|&r| rngs[r].clone()).collect();
        let (g_ids, g_logprobs) = choose_tokens(&rows, samplings[start], &mut group_rngs)?;
        for (k, &r) in group.iter().enumerate() {
            ids[r] = g_ids[k];
            logprobs[r] = g_logprobs[k];
            rngs[r] = group_rngs[k].clone();
            done[r] = true;
        }
    }
    Ok((ids, logprobs))
}

/// The `k` most likely tokens and their log-probabilities under `sampling`'s
/// temperature-scaled distribution (the one `choose_tokens` reports), for one row (v,).
pub fn top_logprobs(logits: &Tensor, sampling: Sampling, k: usize) -> Result<Vec<(u32, f32)>> {
    let logits = logits.to_kind(Kind::Float);
    let scaled = match sampling {
        Sampling::Greedy => logits,
        Sampling::Random { temperature, .. } => logits / temperature,
    };
    let k = (k as i64).min(scaled.size()[0]);
    let (values, ids) = scaled.log_softmax(-1, Kind::Float).topk(k, -1, true, true);
    let values = Vec::<f32>::try_from(values.to_device(tch::Device::Cpu))?;
    let ids = Vec::<i64>::try_from(ids.to_device(tch::Device::Cpu))?;
    Ok(ids.into_iter().map(|i| i as u32).zip(values).collect())
}
