//! The SFT loop, written out: load data and model, then per step draw `grad_accum`
//! micro-batches, backpropagate the token-averaged cross-entropy and hand the update,
//! logging, evaluation schedule and checkpoints to the shared [`Runtime`].
//!
//! Exact resume: a checkpoint holds the weights (or adapter), AdamW's moments and a
//! [`TrainState`] with the step, the data position and the RNG state; torch is reseeded
//! from that RNG at every step (dropout is its only consumer). A resumed run therefore
//! replays the same batches, masks and updates as an uninterrupted one.
//!
//! Data parallel: every rank divides its summed token loss by the step's target count
//! over all ranks, times the world size, so the runtime's mean of the ranks' gradients is
//! the one-process gradient of the global batch (token-averaged, as TRL does); the logged
//! loss and the evaluation are sums over all ranks, too.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::Tensor;
use tiller_data::{collate, load_sft, TokenizeOptions, TokenizedExample, Tokenizer};
use tiller_model::dist::Collective;
use tiller_model::train::{token_nll, AdamW, RunDir, Runtime, TrainBatch, TrainOptions};

use crate::error::{PolicyError, Result};
use crate::sft::config::SftConfig;
use crate::trainee::{load_trainee, save_final, Trainee};

/// Reported after every optimizer step (for a progress bar).
#[derive(Debug, Clone)]
pub struct SftProgress {
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

/// Mean token loss and accuracy over `examples` in file order, without gradients or
/// dropout; rank r of a data-parallel job scores chunks r, r + world, ... and the sums
/// are reduced.
fn evaluate(
    config: &SftConfig,
    trainee: &Trainee,
    examples: &[TokenizedExample],
    collective: &dyn Collective,
) -> Result<(f64, f64)> {
    trainee.set_training(false);
    let (mut nll, mut correct, mut count) = (0.0, 0i64, 0i64);
    let indices: Vec<usize> = (0..examples.len()).collect();
    let chunks = indices.chunks(config.train.batch_size);
    for chunk in chunks
        .skip(collective.rank())
        .step_by(collective.world_size())
    {
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
    collective.all_reduce_sum_f64(&mut sums)?;
    let [nll, correct, count] = sums;
    let count = count.max(1.0);
    Ok((nll / count, correct / count))
}

/// The step's summed value over all ranks (itself in a world of one).
fn global_sum(collective: &dyn Collective, value: f64) -> Result<f64> {
    let mut v = [value];
    collective.all_reduce_sum_f64(&mut v)?;
    Ok(v[0])
}

/// Runs SFT as `config` says; with `resume`, continues from the newest checkpoint in
/// `config.out`. `on_step` sees every step (for a progress bar).
pub fn train(
    config: &SftConfig,
    resume: bool,
    on_step: &mut dyn FnMut(&SftProgress),
) -> Result<SftSummary> {
    train_in(config, &TrainOptions::resume(resume), on_step)
}

/// [`train`] as one process of a data-parallel job (`options.collective`).
pub fn train_in(
    config: &SftConfig,
    options: &TrainOptions,
    on_step: &mut dyn FnMut(&SftProgress),
) -> Result<SftSummary> {
    config.validate().map_err(PolicyError::Invalid)?;
    let spec = config.run_config();
    let dir = RunDir::open(&config.out, "sft_config.toml", &config.to_toml()?, options)?;
    let tokenizer = Tokenizer::from_dir(&config.model)?;
    let train_set = load_examples(config, &config.data.train, &tokenizer)?;
    let eval_set = match &config.data.eval {
        Some(path) => Some(load_examples(config, path, &tokenizer)?),
        None => None,
    };
    let trainee = load_trainee(&spec, dir.resume_from.as_deref())?;
    let mut optimizer = AdamW::new(trainee.params(), &config.optim);
    let collective = options.collective.as_ref();
    if collective.world_size() > 1 {
        // Every rank starts from rank 0's weights (they load the same files anyway).
        let params: Vec<Tensor> = trainee.params().into_iter().map(|(_, p)| p).collect();
        tch::no_grad(|| collective.broadcast(&params))?;
    }
    let world = collective.world_size();
    tracing::info!(
        "SFT ({})",
        if trainee.lora.is_some() {
            "LoRA adapters"
        } else {
            "full fine-tuning"
        }
    );
    let mut rt = dir.start("sft", train_set.len(), &spec, &mut optimizer)?;
    let t = &config.train;

    let run_eval = |rt: &mut Runtime, trainee: &Trainee| -> Result<Option<f64>> {
        let Some(set) = &eval_set else {
            return Ok(None);
        };
        let started = Instant::now();
        let (loss, accuracy) = evaluate(config, trainee, set, collective)?;
        let runtime = started.elapsed().as_secs_f64();
        let step = rt.state.step;
        tracing::info!("step {step}: eval_loss {loss:.4}, eval_mean_token_accuracy {accuracy:.4}");
        let epoch = rt.state.data.epoch_fraction();
        rt.write(
            step,
            &[
                ("eval_loss".into(), loss),
                ("eval_mean_token_accuracy".into(), accuracy),
                ("eval_runtime".into(), runtime),
                ("epoch".into(), epoch),
            ],
        )?;
        Ok(Some(loss))
    };
    let mut eval_loss = None;
    let mut eval_loss_before = None;
    if rt.evals_before() {
        eval_loss = run_eval(&mut rt, &trainee)?;
        eval_loss_before = eval_loss;
    }

    while !rt.done() {
        rt.begin_step();
        rt.seed_torch();
        trainee.set_training(true);
        optimizer.zero_grad();
        // Collate first so every micro-batch's loss can be divided by the step's total
        // target count: the update then averages over tokens, not over micro-batches.
        let micro: Vec<TrainBatch> = (0..t.grad_accum)
            .map(|_| rt.next_batch())
            .filter(|indices| !indices.is_empty())
            .map(|indices| batch(config, &trainee, &train_set, &indices))
            .collect::<Result<_>>()?;
        let local_targets: usize = micro.iter().map(|b| b.targets.len()).sum();
        let targets = match world {
            1 => local_targets,
            _ => global_sum(collective, local_targets as f64)? as usize,
        };
        let (mut nll, mut correct, mut tokens) = (0.0, 0i64, 0u64);
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
        if world > 1 {
            nll = global_sum(collective, nll)?;
        }
        let loss = nll / targets.max(1) as f64;
        let update = rt.apply_update(&mut optimizer, loss)?;
        rt.window.add("loss", loss);
        rt.window
            .add_sum("mean_token_accuracy", correct as f64, local_targets as f64);
        rt.end_step(&optimizer, tokens, &[("grad_norm", update.grad_norm)])?;
        if rt.evals_now() {
            eval_loss = run_eval(&mut rt, &trainee)?;
        }
        if rt.saves_now() {
            rt.save_checkpoint(&optimizer, |dir| trainee.save(dir, &config.model))?;
        }
        on_step(&SftProgress {
            step: rt.state.step,
            total_steps: rt.total_steps(),
            loss,
            eval_loss,
        });
    }

    let eval_loss_after = run_eval(&mut rt, &trainee)?;
    let steps = rt.state.step;
    let totals = rt.finish(|_| save_final(&spec, trainee))?;
    Ok(SftSummary {
        out: config.out.clone(),
        steps,
        eval_loss_before,
        eval_loss_after,
        train_tokens_per_second: totals.tokens_per_second(),
        skipped_steps: totals.skipped,
    })
}
