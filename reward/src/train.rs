//! The reward-model loop, written out: per step draw `grad_accum` micro-batches of pairs,
//! run chosen and rejected through one forward pass (per length group, see
//! [`crate::length_groups`]), backpropagate the Bradley–Terry loss, clip, guard against
//! non-finite values, update, and log / evaluate / checkpoint.
//! Resume restores weights, AdamW moments, schedule position, RNG and data position.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::{Kind, Tensor};
use tiller_data::{
    load_records, pad_pairs, read_table, tokenize_loaded, tokenize_preference, PairOptions,
    PreferenceRecord, TokenizedPair, Tokenizer,
};
use tiller_model::parse_device;
use tiller_model::sampling::SplitMix64;
use tiller_model::train::{
    check_finite, checkpoint_dir, prune_checkpoints, resume_checkpoint, start_or_resume,
    write_atomically, AdamW, MetricsWriter, OPTIMIZER_FILE,
};

use crate::config::RewardTrainConfig;
use crate::error::{Result, RewardError};
use crate::length_groups::length_groups;
use crate::loss::bradley_terry;
use crate::model::RewardModel;

#[derive(Debug, Clone)]
pub struct RewardProgress {
    pub step: u64,
    pub total_steps: u64,
    pub loss: f64,
    pub eval_accuracy: Option<f64>,
}

/// Means over a set of pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PairMetrics {
    pub loss: f64,
    pub accuracy: f64,
    pub margin: f64,
    pub chosen: f64,
    pub rejected: f64,
}

impl PairMetrics {
    fn from_loss(out: &crate::loss::PairwiseLoss) -> Self {
        PairMetrics {
            loss: out.loss.to_kind(Kind::Double).double_value(&[]),
            accuracy: out.accuracy,
            margin: out.margin,
            chosen: out.chosen,
            rejected: out.rejected,
        }
    }

    /// self += w · other
    fn add_scaled(&mut self, other: &PairMetrics, w: f64) {
        self.loss += w * other.loss;
        self.accuracy += w * other.accuracy;
        self.margin += w * other.margin;
        self.chosen += w * other.chosen;
        self.rejected += w * other.rejected;
    }
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
    let pairs = tokenize_loaded(&loaded, |r| tokenize_preference(tokenizer, r, &options))?;
    let margins = if config.loss.use_margin {
        read_margins(path, &loaded.locations)?
    } else {
        None
    };
    tracing::info!(
        "{}: {} pairs ({} bad rows skipped)",
        path.display(),
        pairs.len(),
        loaded.skipped
    );
    Ok(PairSet { pairs, margins })
}

/// The `margin` column, aligned with the records read; None when the file has none.
fn read_margins(path: &Path, locations: &[tiller_data::RowLocation]) -> Result<Option<Vec<f32>>> {
    let mut by_location = HashMap::new();
    for (location, row) in read_table(path)? {
        if let Some(v) = row.get("margin") {
            let m = v.as_f64().ok_or_else(|| {
                RewardError::Config(format!(
                    "{location}: field `margin` must be a number, got {v}"
                ))
            })?;
            by_location.insert(location.to_string(), m as f32);
        }
    }
    if by_location.is_empty() {
        return Ok(None);
    }
    locations
        .iter()
        .map(|l| {
            by_location.get(&l.to_string()).copied().ok_or_else(|| {
                RewardError::Config(format!("{l}: missing field `margin` (other rows have one)"))
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
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

/// Loss and metrics over `set`, without gradients.
pub fn evaluate(
    config: &RewardTrainConfig,
    model: &RewardModel,
    set: &PairSet,
    pad_id: i64,
) -> Result<PairMetrics> {
    let mut indices: Vec<usize> = (0..set.pairs.len()).collect();
    // The metrics are means over pairs, so batching by length changes only the padding.
    indices.sort_by_key(|&i| pair_length(&set.pairs[i]));
    let mut sum = PairMetrics::default();
    for chunk in indices.chunks(config.train.batch_size.max(1)) {
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
    let mut mean = PairMetrics::default();
    mean.add_scaled(&sum, 1.0 / indices.len().max(1) as f64);
    Ok(mean)
}

fn eval_metrics(prefix: &str, m: &PairMetrics) -> Vec<(String, f64)> {
    vec![
        (format!("{prefix}loss"), m.loss),
        (format!("{prefix}accuracy"), m.accuracy),
        (format!("{prefix}margin"), m.margin),
        (format!("{prefix}rewards/chosen"), m.chosen),
        (format!("{prefix}rewards/rejected"), m.rejected),
    ]
}

/// Trains a reward model as `config` says; with `resume`, continues from the newest
/// checkpoint in `config.out`.
pub fn train(
    config: &RewardTrainConfig,
    resume: bool,
    on_step: &mut dyn FnMut(&RewardProgress),
) -> Result<RewardSummary> {
    let out = &config.out;
    let io = |e: std::io::Error| RewardError::Config(format!("{}: {e}", out.display()));
    std::fs::create_dir_all(out).map_err(io)?;
    let resume_dir = resume_checkpoint(out, resume)?;
    std::fs::write(out.join("reward_config.toml"), config.to_toml()?).map_err(io)?;

    let tokenizer = Tokenizer::from_dir(&config.model)?;
    let pad_id = tokenizer.pad_id as i64;
    let train_set = load_pairs(config, &config.data.train, &tokenizer)?;
    let eval_set = config
        .data
        .eval
        .as_ref()
        .map(|p| load_pairs(config, p, &tokenizer))
        .transpose()?;
    let device = parse_device(&config.device)?;
    let mut model = match &resume_dir {
        Some(dir) => RewardModel::load(dir, device, config.dtype.kind())?,
        None => {
            let mut model = RewardModel::load_or_init(
                &config.model,
                device,
                config.dtype.kind(),
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
            out.display(),
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
    let mut optimizer = AdamW::new(model.trainable(), &config.optim);
    tracing::info!(
        "training {} reward-model parameters ({})",
        optimizer.numel(),
        if model.lora.is_some() {
            "LoRA adapters and the score head"
        } else {
            "full fine-tuning"
        }
    );

    let t = &config.train;
    let (mut sampler, mut state) = start_or_resume(
        train_set.pairs.len(),
        t,
        config.seed,
        config.schedule,
        &mut optimizer,
        resume_dir.as_deref(),
    )?;
    let total_steps = state.total_steps;
    let mut rng = SplitMix64(state.rng);
    let mut metrics = MetricsWriter::open(
        &out.join("metrics.jsonl"),
        resume_dir.as_ref().map(|_| state.step),
    )?;
    let run_eval = |step: u64,
                    metrics: &mut MetricsWriter,
                    model: &RewardModel|
     -> Result<Option<PairMetrics>> {
        let Some(set) = &eval_set else {
            return Ok(None);
        };
        model.set_training(false);
        let m = evaluate(config, model, set, pad_id)?;
        tracing::info!(
            "step {step}: eval_loss {:.4}, eval_accuracy {:.3}, eval_margin {:.3}",
            m.loss,
            m.accuracy,
            m.margin
        );
        let values = eval_metrics("eval_", &m);
        let refs: Vec<(&str, f64)> = values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        metrics.write(step, &refs)?;
        Ok(Some(m))
    };
    let eval_before = if resume_dir.is_none() {
        run_eval(0, &mut metrics, &model)?
    } else {
        None
    };
    let mut eval_accuracy = eval_before.map(|m| m.accuracy);

    let (mut window, mut window_steps) = (PairMetrics::default(), 0u64);
    let (mut tokens_total, mut seconds_total) = (0usize, 0.0);
    while state.step < total_steps {
        let step = state.step + 1;
        let started = Instant::now();
        let lr = config.schedule.lr(config.optim.lr, state.step, total_steps);
        tch::manual_seed((rng.next_u64() >> 1) as i64);
        model.set_training(true);
        optimizer.zero_grad();
        let mut step_metrics = PairMetrics::default();
        let mut tokens = 0;
        for _ in 0..t.grad_accum {
            let indices = sampler.next_batch();
            for group in grouped_by_length(&train_set, &indices) {
                // The group's share of the step's pairs: the weighted group means add up
                // to the step's mean loss and metrics.
                let share = group.len() as f64 / (indices.len() * t.grad_accum) as f64;
                let (c, r, n) = pair_rewards(&model, &train_set, &group, pad_id)?;
                let margin = margins_of(&train_set, &group, model.device());
                let out = bradley_terry(&c, &r, margin.as_ref(), config.loss.center_coef);
                (&out.loss * share).f_backward()?;
                step_metrics.add_scaled(&PairMetrics::from_loss(&out), share);
                tokens += n;
            }
        }
        let grad_norm = optimizer.clip_grad_norm(config.optim.max_grad_norm)?;
        if check_finite(step, step_metrics.loss, grad_norm, t.on_non_finite)? {
            optimizer.step(lr)?;
        } else {
            optimizer.zero_grad();
        }
        let seconds = started.elapsed().as_secs_f64();
        (tokens_total, seconds_total) = (tokens_total + tokens, seconds_total + seconds);
        state.step = step;
        state.optimizer_steps = optimizer.steps();
        state.data = sampler.position();
        state.rng = rng.0;
        state.num_tokens += tokens as u64;
        window.add_scaled(&step_metrics, 1.0);
        window_steps += 1;
        if step % t.log_every.max(1) == 0 || step == total_steps {
            let mut mean = PairMetrics::default();
            mean.add_scaled(&window, 1.0 / window_steps as f64);
            let mut values = eval_metrics("", &mean);
            values.extend([
                ("learning_rate".to_owned(), lr),
                ("grad_norm".to_owned(), grad_norm),
                ("epoch".to_owned(), state.data.epoch_fraction()),
                ("num_tokens".to_owned(), state.num_tokens as f64),
                (
                    "train_tokens_per_second".to_owned(),
                    tokens as f64 / seconds.max(1e-9),
                ),
            ]);
            let refs: Vec<(&str, f64)> = values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            metrics.write(step, &refs)?;
            (window, window_steps) = (PairMetrics::default(), 0);
        }
        if t.eval_every > 0 && step % t.eval_every == 0 && step < total_steps {
            eval_accuracy = run_eval(step, &mut metrics, &model)?.map(|m| m.accuracy);
        }
        if t.save_every > 0 && step % t.save_every == 0 {
            write_atomically(&checkpoint_dir(out, step), |dir| -> Result<()> {
                model.save_adapter_or_full(dir, &config.model, Some(&config.model))?;
                optimizer.save(&dir.join(OPTIMIZER_FILE))?;
                Ok(state.write(dir)?)
            })?;
            prune_checkpoints(out, t.keep_checkpoints)?;
        }
        on_step(&RewardProgress {
            step,
            total_steps,
            loss: step_metrics.loss,
            eval_accuracy,
        });
    }
    let eval_after = run_eval(state.step, &mut metrics, &model)?;
    if config.lora.as_ref().is_some_and(|l| l.merge) {
        model.merge_lora()?;
    }
    model.save_adapter_or_full(out, &config.model, Some(&config.model))?;
    Ok(RewardSummary {
        out: out.clone(),
        steps: state.step,
        eval_before,
        eval_after,
        train_tokens_per_second: tokens_total as f64 / seconds_total.max(1e-9),
    })
}
