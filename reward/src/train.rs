//! The reward-model loop, written out: per step draw `grad_accum` micro-batches of pairs,
//! run chosen and rejected through one forward pass (per length group, see
//! [`crate::length_groups`]) and backpropagate the Bradley–Terry loss; the shared
//! [`Runtime`] does the update, logging, evaluation schedule and checkpoints.
//! Resume restores weights, AdamW moments, schedule position, RNG and data position.
//!
//! Data parallel: every rank starts from rank 0's weights (score head included); a length
//! group's share of the step is its pairs over the micro-batch's pairs on all ranks (so
//! length groups form within a rank, changing only padding), times the world size, which
//! the runtime's mean of gradients divides out; the logged metrics and the evaluation are
//! sums over all ranks.

use std::path::{Path, PathBuf};

use tch::Tensor;
use tiller_data::{
    load_records, pad_pairs, tokenize_loaded, tokenize_preference_whole, PairOptions,
    PreferenceRecord, TokenizedPair, Tokenizer,
};
use tiller_model::dist::Collective;
use tiller_model::train::{AdamW, RunDir, Runtime, TrainOptions};

use crate::config::{Head, RewardTrainConfig};
use crate::error::{Result, RewardError};
use crate::length_groups::length_groups;
use crate::loss::bradley_terry;
use crate::margins::read_margins;
use crate::model::RewardModel;
use crate::pair_metrics::eval_metrics;
pub use crate::pair_metrics::PairMetrics;

#[derive(Debug, Clone)]
pub struct RewardProgress {
    pub step: u64,
    pub total_steps: u64,
    pub loss: f64,
    pub eval_accuracy: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct RewardSummary {
    pub out: PathBuf,
    pub steps: u64,
    pub eval_before: Option<PairMetrics>,
    pub eval_after: Option<PairMetrics>,
    pub train_tokens_per_second: f64,
}

/// Tokenized pairs and their optional margins.
pub struct PairSet {
    pub pairs: Vec<TokenizedPair>,
    pub margins: Option<Vec<f32>>,
}

pub fn load_pairs(
    config: &RewardTrainConfig,
    path: &Path,
    tokenizer: &Tokenizer,
) -> Result<PairSet> {
    let options = PairOptions {
        max_seq_len: config.data.max_seq_len,
        max_prompt_len: config.data.max_prompt_len,
    };
    let loaded = load_records::<PreferenceRecord>(path, config.data.on_bad_row)?;
    // Each side whole, as TRL's RewardTrainer and `ModelReward::score` read it.
    let pairs = tokenize_loaded(&loaded, |r| {
        tokenize_preference_whole(tokenizer, r, &options)
    })?;
    let margins = read_margins(
        path,
        &loaded.locations,
        config.loss.use_margin,
        config.loss.strength_margin.as_ref(),
    )?;
    tracing::info!(
        "{}: {} pairs ({} bad rows skipped)",
        path.display(),
        pairs.len(),
        loaded.skipped
    );
    Ok(PairSet { pairs, margins })
}

/// Rewards of the chosen and rejected answers of `indices`, in one forward pass, with the
/// number of real tokens.
fn pair_rewards(
    model: &RewardModel,
    set: &PairSet,
    indices: &[usize],
    pad_id: i64,
) -> Result<(Tensor, Tensor, usize)> {
    let picked: Vec<&TokenizedPair> = indices.iter().map(|&i| &set.pairs[i]).collect();
    let padded = pad_pairs(&picked, pad_id)?;
    let shape = [padded.batch_size as i64, padded.seq_len as i64];
    let device = model.device();
    let ids = Tensor::from_slice(&padded.input_ids)
        .view(shape)
        .to_device(device);
    let valid = Tensor::from_slice(&padded.attention_mask)
        .view(shape)
        .to_device(device)
        .gt(0);
    let rewards = model.rewards(&ids, &valid); // chosen rows first, then rejected
    let b = indices.len() as i64;
    let tokens = padded.attention_mask.iter().filter(|&&m| m > 0).count();
    Ok((rewards.narrow(0, 0, b), rewards.narrow(0, b, b), tokens))
}

/// The longer of a pair's two sequences, prompt included: its padded width.
fn pair_length(pair: &TokenizedPair) -> usize {
    pair.prompt_ids.len() + pair.chosen_ids.len().max(pair.rejected_ids.len())
}

/// `indices` (into `set`) cut into length groups ([`length_groups`]), as indices into `set`.
fn grouped_by_length(set: &PairSet, indices: &[usize]) -> Vec<Vec<usize>> {
    let lengths: Vec<usize> = indices
        .iter()
        .map(|&i| pair_length(&set.pairs[i]))
        .collect();
    length_groups(&lengths)
        .into_iter()
        .map(|group| group.into_iter().map(|g| indices[g]).collect())
        .collect()
}

fn margins_of(set: &PairSet, indices: &[usize], device: tch::Device) -> Option<Tensor> {
    set.margins.as_ref().map(|m| {
        let values: Vec<f32> = indices.iter().map(|&i| m[i]).collect();
        Tensor::from_slice(&values).to_device(device)
    })
}

/// Loss and metrics over `set`, without gradients; rank r of a data-parallel job scores
/// chunks r, r + world, ... and the sums are reduced.
pub fn evaluate(
    config: &RewardTrainConfig,
    model: &RewardModel,
    set: &PairSet,
    pad_id: i64,
    collective: &dyn Collective,
) -> Result<PairMetrics> {
    let mut indices: Vec<usize> = (0..set.pairs.len()).collect();
    // The metrics are means over pairs, so batching by length changes only the padding.
    indices.sort_by_key(|&i| pair_length(&set.pairs[i]));
    let mut sum = PairMetrics::default();
    let chunks = indices.chunks(config.train.batch_size.max(1));
    for chunk in chunks
        .skip(collective.rank())
        .step_by(collective.world_size())
    {
        let out = tch::no_grad(|| -> Result<_> {
            let (c, r, _) = pair_rewards(model, set, chunk, pad_id)?;
            let margin = margins_of(set, chunk, model.device());
            Ok(bradley_terry(
                &c,
                &r,
                margin.as_ref(),
                config.loss.center_coef,
            ))
        })?;
        sum.add_scaled(&PairMetrics::from_loss(&out), chunk.len() as f64);
    }
    sum.all_reduce_sum(collective)?;
    let mut mean = PairMetrics::default();
    mean.add_scaled(&sum, 1.0 / indices.len().max(1) as f64);
    Ok(mean)
}

/// Trains a reward model as `config` says; with `resume`, continues from the newest
/// checkpoint in `config.out`.
pub fn train(
    config: &RewardTrainConfig,
    resume: bool,
    on_step: &mut dyn FnMut(&RewardProgress),
) -> Result<RewardSummary> {
    train_in(config, &TrainOptions::resume(resume), on_step)
}

/// The model to train: the checkpoint's when resuming, else the starting one (with a new
/// score head where it has none, and LoRA adapters when `[lora]` asks).
fn load_model(config: &RewardTrainConfig, resume: Option<&Path>) -> Result<RewardModel> {
    let (device, kind) = (config.device.device(), config.dtype.kind());
    let model = match resume {
        Some(dir) => RewardModel::load(dir, device, kind)?,
        None => {
            let mut model = RewardModel::load_or_init_with_labels(
                &config.model,
                &config.head.labels(),
                device,
                kind,
                config.seed as i64,
            )?;
            if let Some(lora) = &config.lora {
                model.attach_lora(&lora.lora_config(), config.seed as i64)?;
            }
            model
        }
    };
    if config.lora.is_some() != model.lora.is_some() {
        return Err(RewardError::Config(format!(
            "{}: the checkpoint to resume {} LoRA adapters but the config {}",
            config.out.display(),
            if model.lora.is_some() {
                "has"
            } else {
                "has no"
            },
            if config.lora.is_some() {
                "asks for them"
            } else {
                "does not"
            }
        )));
    }
    Ok(model)
}

/// [`train`] as one process of a data-parallel job (`options.collective`).
pub fn train_in(
    config: &RewardTrainConfig,
    options: &TrainOptions,
    on_step: &mut dyn FnMut(&RewardProgress),
) -> Result<RewardSummary> {
    config.validate().map_err(RewardError::Config)?;
    let spec = config.run_config();
    let dir = RunDir::open(
        &config.out,
        "reward_config.toml",
        &config.to_toml()?,
        options,
    )?;
    match config.head {
        Head::Score => {}
        Head::RefusalClasses => {
            let model = load_model(config, dir.resume_from.as_deref())?;
            return crate::classes::train_classes(config, options, model, dir, on_step);
        }
    }
    let tokenizer = Tokenizer::from_dir(&config.model)?;
    let pad_id = tokenizer.pad_id as i64;
    let train_set = load_pairs(config, &config.data.train, &tokenizer)?;
    let eval_set = config
        .data
        .eval
        .as_ref()
        .map(|p| load_pairs(config, p, &tokenizer))
        .transpose()?;
    let mut model = load_model(config, dir.resume_from.as_deref())?;
    let collective = options.collective.as_ref();
    let world = collective.world_size();
    if world > 1 {
        // Every rank starts from rank 0's weights (a new score head included).
        let params: Vec<Tensor> = model.trainable().into_iter().map(|(_, p)| p).collect();
        tch::no_grad(|| collective.broadcast(&params))?;
    }
    let mut optimizer = AdamW::new(model.trainable(), &config.optim);
    tracing::info!(
        "reward model ({})",
        if model.lora.is_some() {
            "LoRA adapters and the score head"
        } else {
            "full fine-tuning"
        }
    );
    let mut rt = dir.start("reward", train_set.pairs.len(), &spec, &mut optimizer)?;
    let t = &config.train;
    let run_eval = |rt: &mut Runtime, model: &RewardModel| -> Result<Option<PairMetrics>> {
        let Some(set) = &eval_set else {
            return Ok(None);
        };
        model.set_training(false);
        let m = evaluate(config, model, set, pad_id, collective)?;
        let step = rt.state.step;
        tracing::info!(
            "step {step}: eval_loss {:.4}, eval_accuracy {:.3}, eval_margin {:.3}",
            m.loss,
            m.accuracy,
            m.margin
        );
        rt.write(step, &eval_metrics("eval_", &m))?;
        Ok(Some(m))
    };
    let eval_before = if rt.evals_before() {
        run_eval(&mut rt, &model)?
    } else {
        None
    };
    let mut eval_accuracy = eval_before.map(|m| m.accuracy);

    while !rt.done() {
        rt.begin_step();
        rt.seed_torch();
        model.set_training(true);
        optimizer.zero_grad();
        let mut step_metrics = PairMetrics::default();
        let mut tokens = 0;
        // A micro-batch's share of the step is its pairs over all ranks' pairs of that
        // micro-batch (times the world size, which the runtime's mean of gradients
        // divides out), so ranks weight their groups as one process would.
        let micro: Vec<Vec<usize>> = (0..t.grad_accum).map(|_| rt.next_batch()).collect();
        let local: Vec<f64> = micro.iter().map(|m| m.len() as f64).collect();
        let global = rt.global_sums(&local)?;
        for (indices, &global_len) in micro.iter().zip(&global) {
            for group in grouped_by_length(&train_set, indices) {
                // The group's share of the step's pairs: the weighted group means add up
                // to the step's mean loss and metrics.
                let share = group.len() as f64 / (global_len * t.grad_accum as f64);
                let (c, r, n) = pair_rewards(&model, &train_set, &group, pad_id)?;
                let margin = margins_of(&train_set, &group, model.device());
                let out = bradley_terry(&c, &r, margin.as_ref(), config.loss.center_coef);
                match world {
                    1 => (&out.loss * share).f_backward()?,
                    _ => (&out.loss * (share * world as f64)).f_backward()?,
                }
                step_metrics.add_scaled(&PairMetrics::from_loss(&out), share);
                tokens += n;
            }
        }
        step_metrics.all_reduce_sum(collective)?;
        let update = rt.apply_update(&mut optimizer, step_metrics.loss)?;
        let finite = step_metrics.loss.is_finite();
        for (key, value) in eval_metrics("", &step_metrics) {
            rt.window.add(&key, if finite { value } else { f64::NAN });
        }
        rt.end_step(
            &optimizer,
            tokens as u64,
            &[("grad_norm", update.grad_norm)],
        )?;
        if rt.evals_now() {
            eval_accuracy = run_eval(&mut rt, &model)?.map(|m| m.accuracy);
        }
        if rt.saves_now() {
            rt.save_checkpoint(&optimizer, |dir| {
                model.save_adapter_or_full(dir, &config.model, Some(&config.model))
            })?;
        }
        on_step(&RewardProgress {
            step: rt.state.step,
            total_steps: rt.total_steps(),
            loss: step_metrics.loss,
            eval_accuracy,
        });
    }
    let eval_after = run_eval(&mut rt, &model)?;
    if config.lora.as_ref().is_some_and(|l| l.merge) {
        model.merge_lora()?;
    }
    let steps = rt.state.step;
    let totals =
        rt.finish(|out| model.save_adapter_or_full(out, &config.model, Some(&config.model)))?;
    Ok(RewardSummary {
        out: config.out.clone(),
        steps,
        eval_before,
        eval_after,
        train_tokens_per_second: totals.tokens_per_second(),
    })
}
