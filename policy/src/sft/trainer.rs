//! The SFT loop, written out: load data and model, then per step draw `grad_accum`
//! micro-batches, backpropagate the token-averaged cross-entropy, clip, guard against
//! non-finite values, update, and log / evaluate / checkpoint on schedule.
//!
//! Exact resume: a checkpoint holds the weights (or adapter), AdamW's moments and a
//! [`TrainState`] with the step, the data position and the RNG state; torch is reseeded
//! from that RNG at every step (dropout is its only consumer). A resumed run therefore
//! replays the same batches, masks and updates as an uninterrupted one.
//!
//! Data parallelism (the `DP:` comments, to move onto the shared runtime): every rank
//! draws the same global batch of `batch_size × world_size` and keeps its strided shard,
//! scales its loss so the averaged gradients equal the one-process gradient of the
//! global batch, and all-reduces gradients once per step (after the last micro-batch).
//! Metrics are summed across ranks; rank 0 alone writes files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::Tensor;
use tiller_data::{collate, load_sft, TokenizeOptions, TokenizedExample, Tokenizer};
use tiller_model::dist::{Collective, Single};
use tiller_model::sampling::SplitMix64;
use tiller_model::train::{
    check_finite, resume_checkpoint, start_or_resume, token_nll, AdamW, MetricsWriter, TrainBatch,
};

use crate::error::{PolicyError, Result};
use crate::sft::config::SftConfig;
use crate::trainee::{load_trainee, save_final, Trainee};

/// Reported after every optimizer step (for a progress bar).
#[derive(Debug, Clone)]
pub struct Progress {
    pub step: u64,
    pub total_steps: u64,
    /// This step's mean token loss.
    pub loss: f64,
    /// The latest eval loss, if any.
    pub eval_loss: Option<f64>,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct SftSummary {
    pub out: PathBuf,
    pub steps: u64,
    /// Eval loss before the first step (None when resumed or without an eval file).
    pub eval_loss_before: Option<f64>,
    pub eval_loss_after: Option<f64>,
    /// Real tokens per second of training compute (excluding eval and checkpoints).
    pub train_tokens_per_second: f64,
    pub skipped_steps: u64,
}

fn load_examples(
    config: &SftConfig,
    path: &Path,
    tokenizer: &Tokenizer,
) -> Result<Vec<TokenizedExample>> {
    let options = TokenizeOptions {
        max_seq_len: config.data.max_seq_len,
        loss_on: config.data.loss_on,
    };
    let (examples, report) = load_sft(path, tokenizer, &options, config.data.on_bad_row)?;
    tracing::info!("{report}");
    Ok(examples)
}

/// Collates examples `indices` into tensors on the model's device.
fn batch(
    config: &SftConfig,
    trainee: &Trainee,
    examples: &[TokenizedExample],
    indices: &[usize],
) -> Result<TrainBatch> {
    let picked: Vec<&TokenizedExample> = indices.iter().map(|&i| &examples[i]).collect();
    let pad_id = trainee.lm.config.pad_token_id.unwrap_or(0) as i64;
    let packed = collate(
        &picked,
        config.data.collation,
        config.data.max_seq_len,
        pad_id,
    )?;
    Ok(TrainBatch::from_packed(&packed, trainee.lm.device())?)
}

/// Mean token loss and accuracy over `examples` in file order, without gradients or dropout.
fn evaluate(
    config: &SftConfig,
    trainee: &Trainee,
    examples: &[TokenizedExample],
    dist: &dyn Collective,
) -> Result<(f64, f64)> {
    trainee.set_training(false);
    let (mut nll, mut correct, mut count) = (0.0, 0i64, 0i64);
    let indices: Vec<usize> = (0..examples.len()).collect();
    // DP: rank r evaluates chunks r, r + world, ...; the sums are reduced below.
    let chunks = indices.chunks(config.train.batch_size);
    for chunk in chunks.skip(dist.rank()).step_by(dist.world_size()) {
        let b = batch(config, trainee, examples, chunk)?;
        let loss = tch::no_grad(|| {
            let hidden =
                trainee
                    .lm
                    .model
                    .forward(&b.input_ids, &b.positions, b.mask.as_ref(), None);
            token_nll(&trainee.lm.model, &hidden, &b.targets)
        })?;
        nll += loss.nll_sum.f_double_value(&[])?;
        correct += loss.correct;
        count += loss.count;
    }
    let mut sums = [nll, correct as f64, count as f64];
    dist.all_reduce_sum_f64(&mut sums)?;
    let [nll, correct, count] = sums;
    let count = count.max(1.0);
    Ok((nll / count, correct / count))
}

/// DP: this rank's examples of a global batch: positions rank, rank + world, ...
fn shard(global: &[usize], dist: &dyn Collective) -> Vec<usize> {
    global
        .iter()
        .skip(dist.rank())
        .step_by(dist.world_size())
        .copied()
        .collect()
}

/// Running sums between two log lines (TRL logs window averages).
#[derive(Default)]
struct Window {
    loss: f64,
    steps: u64,
    correct: i64,
    targets: i64,
    tokens: u64,
    seconds: f64,
}

/// Runs SFT as `config` says; with `resume`, continues from the newest checkpoint in
/// `config.out`. `on_step` sees every step (for a progress bar).
pub fn train(
    config: &SftConfig,
    resume: bool,
    on_step: &mut dyn FnMut(&Progress),
) -> Result<SftSummary> {
    train_on(config, resume, &Single, on_step)
}

/// [`train`] as one rank of a data-parallel job (`dist`); with [`Single`] it is `train`.
pub fn train_on(
    config: &SftConfig,
    resume: bool,
    dist: &dyn Collective,
    on_step: &mut dyn FnMut(&Progress),
) -> Result<SftSummary> {
    let out = &config.out;
    let resume_dir = resume_checkpoint(out, resume)?;
    if dist.is_main() {
        std::fs::create_dir_all(out).map_err(|e| PolicyError::io(out, e))?;
        let config_path = out.join("sft_config.toml");
        std::fs::write(&config_path, config.to_toml()?)
            .map_err(|e| PolicyError::io(&config_path, e))?;
    }

    let tokenizer = Tokenizer::from_dir(&config.model)?;
    let train_set = load_examples(config, &config.data.train, &tokenizer)?;
    let eval_set = match &config.data.eval {
        Some(path) => Some(load_examples(config, path, &tokenizer)?),
        None => None,
    };
    let trainee = load_trainee(&config.trainee_spec(), resume_dir.as_deref())?;
    let mut optimizer = AdamW::new(trainee.params(), &config.optim);
    let params: Vec<Tensor> = trainee.params().into_iter().map(|(_, p)| p).collect();
    // DP: every rank starts from rank 0's weights (they load the same files anyway).
    tch::no_grad(|| dist.broadcast(&params))?;
    tracing::info!(
        "training {} parameters ({})",
        optimizer.numel(),
        if trainee.lora.is_some() {
            "LoRA adapters"
        } else {
            "full fine-tuning"
        }
    );

    let t = &config.train;
    // DP: the sampler draws global batches; each rank keeps its shard (see `shard`).
    let world = dist.world_size();
    let global = tiller_model::train::TrainConfig {
        batch_size: t.batch_size * world,
        ..t.clone()
    };
    if dist.is_main() {
        tracing::info!(
            "global batch {} = batch_size {} × grad_accum {} × world_size {world}",
            t.batch_size * t.grad_accum * world,
            t.batch_size,
            t.grad_accum
        );
    }
    let (mut sampler, mut state) = start_or_resume(
        train_set.len(),
        &global,
        config.seed,
        config.schedule,
        &mut optimizer,
        resume_dir.as_deref(),
    )?;
    let total_steps = state.total_steps;
    let mut rng = SplitMix64(state.rng);
    // DP: rank 0 alone writes metrics.
    let mut metrics = match dist.is_main() {
        true => Some(MetricsWriter::open(
            &out.join("metrics.jsonl"),
            resume_dir.as_ref().map(|_| state.step),
        )?),
        false => None,
    };

    let mut eval_loss = None;
    let mut eval_loss_before = None;
    let run_eval = |step: u64,
                    epoch: f64,
                    trainee: &Trainee,
                    metrics: &mut Option<MetricsWriter>|
     -> Result<Option<f64>> {
        let Some(set) = &eval_set else {
            return Ok(None);
        };
        let started = Instant::now();
        let (loss, accuracy) = evaluate(config, trainee, set, dist)?;
        let runtime = started.elapsed().as_secs_f64();
        let Some(metrics) = metrics else {
            return Ok(Some(loss));
        };
        tracing::info!("step {step}: eval_loss {loss:.4}, eval_mean_token_accuracy {accuracy:.4}");
        metrics.write(
            step,
            &[
                ("eval_loss", loss),
                ("eval_mean_token_accuracy", accuracy),
                ("eval_runtime", runtime),
                ("epoch", epoch),
            ],
        )?;
        Ok(Some(loss))
    };
    if resume_dir.is_none() {
        eval_loss = run_eval(0, 0.0, &trainee, &mut metrics)?;
        eval_loss_before = eval_loss;
    }

    let (mut window, mut total_tokens, mut total_seconds, mut skipped) =
        (Window::default(), 0u64, 0.0, 0u64);
    while state.step < total_steps {
        let step = state.step + 1;
        let started = Instant::now();
        let lr = config.schedule.lr(config.optim.lr, state.step, total_steps);
        tch::manual_seed((rng.next_u64() >> 1) as i64);
        trainee.set_training(true);
        optimizer.zero_grad();
        // Collate first so every micro-batch's loss can be divided by the step's total
        // target count: the update then averages over tokens, not over micro-batches.
        let micro: Vec<TrainBatch> = (0..t.grad_accum)
            .map(|_| shard(&sampler.next_batch(), dist))
            .filter(|indices| !indices.is_empty())
            .map(|indices| batch(config, &trainee, &train_set, &indices))
            .collect::<Result<_>>()?;
        let mut targets = [micro.iter().map(|b| b.targets.len()).sum::<usize>() as f64];
        // DP: the step's target count over all ranks; each rank's loss is scaled by the
        // world size so that the mean of the ranks' gradients is the global token mean's.
        dist.all_reduce_sum_f64(&mut targets)?;
        let targets = targets[0] as usize;
        let (mut nll, mut correct, mut tokens) = (0.0, 0i64, 0u64);
        if micro.is_empty() {
            // A rank with no examples this step (a short last batch) still joins the
            // all-reduce, with zero gradients.
            let zero = params
                .iter()
                .map(|p| p.sum(p.kind()) * 0.0)
                .reduce(|a, b| a + b);
            if let Some(zero) = zero {
                zero.f_backward()?;
            }
        }
        for b in &micro {
            let hidden =
                trainee
                    .lm
                    .model
                    .forward(&b.input_ids, &b.positions, b.mask.as_ref(), None);
            let loss = token_nll(&trainee.lm.model, &hidden, &b.targets)?;
            let scaled = &loss.nll_sum / targets.max(1) as f64;
            match world {
                1 => scaled.f_backward()?,
                _ => (scaled * world as f64).f_backward()?,
            }
            nll += loss.nll_sum.f_double_value(&[])?;
            correct += loss.correct;
            tokens += b.num_tokens as u64;
        }
        // DP: one gradient all-reduce per step, then the step's sums over all ranks.
        let grads: Vec<Tensor> = params
            .iter()
            .map(|p| p.grad())
            .filter(|g| g.defined())
            .collect();
        dist.all_reduce_mean(&grads)?;
        let mut sums = [nll, correct as f64, tokens as f64];
        dist.all_reduce_sum_f64(&mut sums)?;
        let (nll, correct, tokens) = (sums[0], sums[1] as i64, sums[2] as u64);
        let loss = nll / targets.max(1) as f64;
        let grad_norm = optimizer.clip_grad_norm(config.optim.max_grad_norm)?;
        if check_finite(step, loss, grad_norm, t.on_non_finite)? {
            optimizer.step(lr)?;
        } else {
            optimizer.zero_grad();
            skipped += 1;
        }
        let seconds = started.elapsed().as_secs_f64();
        state.step = step;
        state.optimizer_steps = optimizer.steps();
        state.data = sampler.position();
        state.rng = rng.0;
        state.num_tokens += tokens;
        (total_tokens, total_seconds) = (total_tokens + tokens, total_seconds + seconds);
        window.loss += if loss.is_finite() { loss } else { 0.0 };
        window.steps += 1;
        window.correct += correct;
        window.targets += targets as i64;
        window.tokens += tokens;
        window.seconds += seconds;

        let epoch = state.data.epoch_fraction();
        if let Some(metrics) = metrics
            .as_mut()
            .filter(|_| step % t.log_every == 0 || step == total_steps)
        {
            metrics.write(
                step,
                &[
                    ("loss", window.loss / window.steps as f64),
                    ("learning_rate", lr),
                    ("grad_norm", grad_norm),
                    ("epoch", epoch),
                    ("num_tokens", state.num_tokens as f64),
                    (
                        "mean_token_accuracy",
                        window.correct as f64 / window.targets.max(1) as f64,
                    ),
                    (
                        "train_tokens_per_second",
                        window.tokens as f64 / window.seconds.max(1e-9),
                    ),
                ],
            )?;
            window = Window::default();
        }
        if t.eval_every > 0 && step % t.eval_every == 0 && step < total_steps {
            eval_loss = run_eval(step, epoch, &trainee, &mut metrics)?;
        }
        if t.save_every > 0 && step % t.save_every == 0 && dist.is_main() {
            trainee.save_checkpoint(
                &config.trainee_spec(),
                t.keep_checkpoints,
                &optimizer,
                &state,
                &[],
            )?;
        }
        on_step(&Progress {
            step,
            total_steps,
            loss,
            eval_loss,
        });
    }

    let eval_loss_after = run_eval(
        state.step,
        state.data.epoch_fraction(),
        &trainee,
        &mut metrics,
    )?;
    if dist.is_main() {
        save_final(&config.trainee_spec(), trainee)?;
    }
    Ok(SftSummary {
        out: out.clone(),
        steps: state.step,
        eval_loss_before,
        eval_loss_after,
        train_tokens_per_second: total_tokens as f64 / total_seconds.max(1e-9),
        skipped_steps: skipped,
    })
}
