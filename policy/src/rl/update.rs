//! Small pieces the RL update loops share: config checks, micro-batching, reference (and
//! recomputed policy) log-probs of a whole rollout, and the rollout's own metrics.

use tch::{Kind, Tensor};
use tiller_model::dist::Collective;
use tiller_model::train::RunConfig;

use crate::error::Result;
use crate::reference::ReferenceModel;
use crate::rl::rollout::{completion_logprobs, Rollout, RolloutBatch, Sample};
use crate::rl::run::{MetricWindow, Run};

/// The shared sections' checks ([`RunConfig::validate`]) plus the RL rule: a step is one
/// rollout, so `train.grad_accum` must be 1.
pub fn validate_common(run: &RunConfig) -> std::result::Result<(), String> {
    run.validate()?;
    if run.train.grad_accum != 1 {
        return Err(format!(
            "train.grad_accum = {}: must be 1 for RL trainers: a step is one rollout; split \
             its updates with num_minibatches and its memory with micro_batch_size",
            run.train.grad_accum
        ));
    }
    Ok(())
}

/// Consecutive chunks of `rows` of at most `size` (all of them when `None`).
pub struct MicroBatches<'a> {
    rows: &'a [usize],
    size: usize,
}

impl<'a> MicroBatches<'a> {
    pub fn new(rows: &'a [usize], size: Option<usize>) -> Self {
        MicroBatches {
            rows,
            size: size.unwrap_or(rows.len()).max(1),
        }
    }
}

impl<'a> Iterator for MicroBatches<'a> {
    type Item = &'a [usize];
    fn next(&mut self) -> Option<Self::Item> {
        if self.rows.is_empty() {
            return None;
        }
        let n = self.size.min(self.rows.len());
        let (head, tail) = self.rows.split_at(n);
        self.rows = tail;
        Some(head)
    }
}

/// The reference's per-token log-probs of every sample's completion (one vector per
/// sample), computed once per rollout in micro-batches.
pub(crate) fn reference_logprobs(
    reference: &ReferenceModel,
    run: &Run,
    samples: &[Sample],
    micro_batch_size: Option<usize>,
    temperature: f64,
) -> Result<Vec<Vec<f32>>> {
    per_sample_logprobs(run, samples, micro_batch_size, &|batch| {
        reference.logprobs(&run.trainee, batch, temperature)
    })
}

/// Where the sampling-time log-probs would not be the policy's own, replaces them with
/// those of a full forward pass without gradients, as TRL computes `old_per_token_logps`.
/// That is the case in bf16: the cached one-token-at-a-time decode rounds differently from
/// the full forward (an approximate KL of ~2e-3 on the default model), which the clipped
/// ratio would read as a change of policy and clip. In f32 the two agree within 1e-4
/// (tested) and the sampling-time ones are kept.
pub(crate) fn align_old_logprobs(
    run: &Run,
    samples: &mut [Sample],
    micro_batch_size: Option<usize>,
    temperature: f64,
) -> Result<()> {
    if run.trainee.lm.kind() == Kind::Float {
        return Ok(());
    }
    let model = &run.trainee.lm.model;
    let fresh = per_sample_logprobs(run, samples, micro_batch_size, &|batch| {
        tch::no_grad(|| completion_logprobs(model, batch, temperature, false)).map(|s| s.logprobs)
    })?;
    for (sample, logprobs) in samples.iter_mut().zip(fresh) {
        sample.old_logprobs = logprobs;
    }
    Ok(())
}

/// `logprobs` (a (b, C) tensor per batch) of every sample's completion, one vector per
/// sample, in micro-batches.
fn per_sample_logprobs(
    run: &Run,
    samples: &[Sample],
    micro_batch_size: Option<usize>,
    logprobs: &dyn Fn(&RolloutBatch) -> Result<Tensor>,
) -> Result<Vec<Vec<f32>>> {
    let rows: Vec<usize> = (0..samples.len()).collect();
    let mut out = Vec::with_capacity(samples.len());
    for micro in MicroBatches::new(&rows, micro_batch_size) {
        let picked: Vec<&Sample> = micro.iter().map(|&i| &samples[i]).collect();
        let batch = RolloutBatch::new(&picked, run.tokenizer.pad_id, run.trainee.lm.device())?;
        let values = logprobs(&batch)?;
        for (r, s) in picked.iter().enumerate() {
            let row = values
                .get(r as i64)
                .narrow(0, 0, s.completion_ids.len() as i64);
            out.push(Vec::<f32>::try_from(&row)?);
        }
    }
    Ok(out)
}

/// Every rank's `value`, in rank order (`[value]` in a world of one): each rank fills
/// its own slot of a zero vector and a sum all-reduce gathers them (x + 0 is exact), so
/// a minimum or maximum over ranks needs no other collective.
pub(crate) fn every_rank(collective: &dyn Collective, value: f64) -> Result<Vec<f64>> {
    let mut slots = vec![0.0; collective.world_size()];
    slots[collective.rank()] = value;
    if slots.len() > 1 {
        collective.all_reduce_sum_f64(&mut slots)?;
    }
    Ok(slots)
}

/// The step's samples over all ranks, and where this rank's start (its samples are
/// consecutive rows of the step's global batch, in rank order; its own count and 0 in a
/// world of one).
pub(crate) fn global_rows(collective: &dyn Collective, local: usize) -> Result<(usize, usize)> {
    let counts = every_rank(collective, local as f64)?;
    let offset = counts[..collective.rank()].iter().sum::<f64>() as usize;
    Ok((counts.iter().sum::<f64>() as usize, offset))
}

/// `local` summed over every rank (itself in a world of one).
pub(crate) fn global_sums(collective: &dyn Collective, local: &[f64]) -> Result<Vec<f64>> {
    let mut values = local.to_vec();
    if collective.world_size() > 1 {
        collective.all_reduce_sum_f64(&mut values)?;
    }
    Ok(values)
}

/// TRL's rollout metrics of one step (reward mean/std, completion lengths, truncation)
/// and the time split, into `window`. In a world of several the rollout is this rank's
/// share: means and the (unbiased, two-pass) std come from all-reduced sums, min and max
/// from every rank's, so every rank adds the whole step's values (the window's mean over
/// ranks of equal values is that value); the times stay each rank's own.
pub fn rollout_metrics(
    window: &mut MetricWindow,
    rollout: &Rollout,
    training_seconds: f64,
    collective: &dyn Collective,
) -> Result<()> {
    let scores: Vec<f64> = rollout.samples.iter().map(|s| s.score).collect();
    let lengths: Vec<f64> = rollout
        .samples
        .iter()
        .map(|s| s.completion_ids.len() as f64)
        .collect();
    let truncated = rollout.samples.iter().filter(|s| s.truncated()).count() as f64;
    let sums = global_sums(
        collective,
        &[
            scores.len() as f64,
            scores.iter().sum(),
            lengths.iter().sum(),
            truncated,
        ],
    )?;
    let n = sums[0].max(1.0);
    let reward_mean = sums[1] / n;
    let squares: f64 = scores.iter().map(|v| (v - reward_mean).powi(2)).sum();
    let squares = global_sums(collective, &[squares])?[0];
    let reward_std = if sums[0] < 2.0 {
        0.0
    } else {
        (squares / (sums[0] - 1.0)).sqrt()
    };
    // A rank without samples has no minimum or maximum: ±∞ and 0 leave it out.
    let min_length = every_rank(
        collective,
        lengths.iter().copied().fold(f64::INFINITY, f64::min),
    )?
    .into_iter()
    .fold(f64::INFINITY, f64::min);
    let max_length = every_rank(collective, lengths.iter().copied().fold(0.0, f64::max))?
        .into_iter()
        .fold(0.0, f64::max);
    let step_seconds = rollout.generation_seconds + rollout.scoring_seconds + training_seconds;
    for (key, value) in [
        ("reward", reward_mean),
        ("reward_std", reward_std),
        ("completions/mean_length", sums[2] / n),
        ("completions/min_length", min_length),
        ("completions/max_length", max_length),
        ("completions/clipped_ratio", sums[3] / n),
        ("time/generation_s", rollout.generation_seconds),
        ("time/scoring_s", rollout.scoring_seconds),
        ("time/training_s", training_seconds),
        ("time/step_s", step_seconds),
        ("rollout/tokens_per_second", rollout.tokens_per_second()),
        ("eps", n / step_seconds.max(1e-9)),
    ] {
        window.add(key, value);
    }
    Ok(())
}
