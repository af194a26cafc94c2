//! The DPO loop, written out: load pairs, policy and reference; per step draw `grad_accum`
//! micro-batches, run chosen and rejected through the policy in one forward pass, take the
//! reference log-probs from the cache (or a no-grad reference pass), backpropagate the
//! configured loss, clip, guard against non-finite values, update, and log / evaluate /
//! checkpoint on schedule. Resume is exact as in SFT (weights, AdamW moments, schedule,
//! RNG, data position, and `bco_pair`'s running mean in `dpo_state.json`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::{Kind, Tensor};
use tiller_data::{load_preferences, PairOptions, TokenizedPair, Tokenizer};
use tiller_model::sampling::SplitMix64;
use tiller_model::train::{
    check_finite, checkpoint_dir, prune_checkpoints, resume_checkpoint, start_or_resume,
    write_atomically, AdamW, MetricsWriter, OPTIMIZER_FILE,
};
use tiller_model::{CausalLm, DType};

use crate::dpo::batch::{logp_kind, sequence_logps, PairBatch};
use crate::dpo::cache;
use crate::dpo::config::DpoConfig;
use crate::dpo::loss::{bco_batch_mean, loss, DpoLoss, PairLogps, RunningMean};
pub use crate::dpo::metrics::DpoMetrics;
use crate::error::{PolicyError, Result};
use crate::trainee::{load_trainee, save_final, Trainee};

const DPO_STATE_FILE: &str = "dpo_state.json";

#[derive(Debug, Clone)]
pub struct DpoProgress {
    pub step: u64,
    pub total_steps: u64,
    pub loss: f64,
    pub eval_accuracy: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct DpoSummary {
    pub out: PathBuf,
    pub steps: u64,
    pub eval_before: Option<DpoMetrics>,
    pub eval_after: Option<DpoMetrics>,
    pub train_tokens_per_second: f64,
    pub skipped_steps: u64,
    /// Forward passes through the reference model (0 when the cache had everything).
    pub reference_forwards: u64,
    /// The loss of every step, in order (for tests and reports).
    pub losses: Vec<f64>,
}

/// Where reference log-probs come from.
enum Reference {
    /// Reference-free loss.
    None,
    /// Per pair, precomputed (train set, eval set).
    Cached {
        train: Vec<[f64; 2]>,
        eval: Option<Vec<[f64; 2]>>,
    },
    /// A separate frozen model.
    Model(CausalLm),
    /// The policy's own base with its LoRA adapters switched off.
    Adapters,
    /// The policy itself, only before its first update (fills the cache of a full
    /// fine-tuning run without a second copy of the weights).
    Policy,
}

struct Ctx<'a> {
    config: &'a DpoConfig,
    pad_id: i64,
    reference_forwards: u64,
    bco: RunningMean,
}

impl Ctx<'_> {
    fn batch(
        &self,
        set: &[TokenizedPair],
        indices: &[usize],
        trainee: &Trainee,
    ) -> Result<PairBatch> {
        let picked: Vec<&TokenizedPair> = indices.iter().map(|&i| &set[i]).collect();
        let d = &self.config.data;
        PairBatch::new(
            &picked,
            d.collation,
            d.max_seq_len,
            self.pad_id,
            trainee.lm.device(),
        )
    }

    /// Reference log-probs (chosen, rejected) of a batch, without gradients.
    fn reference(
        &mut self,
        reference: &Reference,
        trainee: &Trainee,
        b: &PairBatch,
        indices: &[usize],
        eval: bool,
    ) -> Result<Option<(Tensor, Tensor)>> {
        let from_model = |lm: &tiller_model::llama::Llama| -> Result<(Tensor, Tensor)> {
            let s = tch::no_grad(|| sequence_logps(lm, b))?;
            Ok((s.chosen.detach(), s.rejected.detach()))
        };
        let out = match reference {
            Reference::None => return Ok(None),
            Reference::Cached {
                train,
                eval: eval_set,
            } => {
                let table = if eval { eval_set.as_ref() } else { Some(train) };
                let table = table.ok_or_else(|| {
                    PolicyError::Invalid("no cached reference for the eval set".into())
                })?;
                let kind = trainee.lm.kind();
                let col = |j: usize| {
                    let v: Vec<f64> = indices.iter().map(|&i| table[i][j]).collect();
                    Tensor::from_slice(&v)
                        .to_kind(logp_kind(kind))
                        .to_device(trainee.lm.device())
                };
                return Ok(Some((col(0), col(1))));
            }
            Reference::Model(lm) => from_model(&lm.model)?,
            Reference::Policy => from_model(&trainee.lm.model)?,
            Reference::Adapters => {
                let lora = trainee
                    .lora
                    .as_ref()
                    .ok_or_else(|| PolicyError::Invalid("no adapters to disable".into()))?;
                lora.set_enabled(false);
                let out = from_model(&trainee.lm.model);
                lora.set_enabled(true);
                out?
            }
        };
        self.reference_forwards += 1;
        Ok(Some(out))
    }

    /// The loss and metrics of one micro-batch.
    fn step_loss(
        &mut self,
        reference: &Reference,
        trainee: &Trainee,
        set: &[TokenizedPair],
        indices: &[usize],
        eval: bool,
    ) -> Result<(Tensor, DpoMetrics, usize)> {
        let b = self.batch(set, indices, trainee)?;
        let refs = self.reference(reference, trainee, &b, indices, eval)?;
        let s = sequence_logps(&trainee.lm.model, &b)?;
        let (nc, nr) = b.token_counts(s.chosen.kind(), s.chosen.device());
        let (ref_chosen, ref_rejected) = refs.map_or((None, None), |(c, r)| (Some(c), Some(r)));
        let inputs = PairLogps {
            chosen: s.chosen,
            rejected: s.rejected,
            ref_chosen,
            ref_rejected,
            chosen_tokens: nc,
            rejected_tokens: nr,
        };
        let mut params = self.config.loss;
        if params.kind == DpoLoss::BcoPair {
            if !eval {
                let (mean, count) = bco_batch_mean(&inputs, params.beta)?;
                self.bco.update(mean, count);
            }
            params.bco_delta = Some(self.bco.mean);
        }
        let parts = loss(&inputs, &params)?;
        let m = tch::no_grad(|| -> Result<DpoMetrics> {
            let mean = |t: &Tensor| {
                t.to_kind(Kind::Double)
                    .mean(Kind::Double)
                    .f_double_value(&[])
            };
            Ok(DpoMetrics {
                loss: mean(&parts.loss.detach())?,
                rewards_chosen: mean(&parts.chosen_rewards)?,
                rewards_rejected: mean(&parts.rejected_rewards)?,
                accuracy: mean(&parts.chosen_rewards.gt_tensor(&parts.rejected_rewards))?,
                logps_chosen: mean(&inputs.chosen.detach())?,
                logps_rejected: mean(&inputs.rejected.detach())?,
                logits_chosen: s.logits_chosen,
                logits_rejected: s.logits_rejected,
            })
        })?;
        Ok((parts.loss, m, b.num_tokens()))
    }

    /// Mean metrics over `set` in file order, without gradients or dropout.
    fn evaluate(
        &mut self,
        reference: &Reference,
        trainee: &Trainee,
        set: &[TokenizedPair],
    ) -> Result<DpoMetrics> {
        trainee.set_training(false);
        let indices: Vec<usize> = (0..set.len()).collect();
        let mut sum = DpoMetrics::default();
        for chunk in indices.chunks(self.config.train.batch_size) {
            let (_, m, _) = tch::no_grad(|| self.step_loss(reference, trainee, set, chunk, true))?;
            sum.add_scaled(&m, chunk.len() as f64);
        }
        let mut mean = DpoMetrics::default();
        mean.add_scaled(&sum, 1.0 / set.len().max(1) as f64);
        Ok(mean)
    }
}

fn load_pairs(
    config: &DpoConfig,
    path: &Path,
    tokenizer: &Tokenizer,
) -> Result<Vec<TokenizedPair>> {
    let options = PairOptions {
        max_seq_len: config.data.max_seq_len,
        max_prompt_len: config.data.max_prompt_len,
    };
    let (pairs, report) = load_preferences(path, tokenizer, &options, config.data.on_bad_row)?;
    tracing::info!("{report}");
    if pairs.is_empty() {
        return Err(PolicyError::Invalid(format!(
            "{}: no preference pairs",
            path.display()
        )));
    }
    Ok(pairs)
}

/// The cache directory and the key of `set`'s reference log-probs.
fn cache_slot(config: &DpoConfig, set: &[TokenizedPair]) -> Result<(PathBuf, String)> {
    let dir = config
        .reference
        .cache_dir
        .clone()
        .unwrap_or_else(|| config.out.join("ref_cache"));
    let ref_dir = config.reference.model.as_deref().unwrap_or(&config.model);
    let dtype = match config.dtype {
        DType::F32 => "f32",
        DType::Bf16 => "bf16",
    };
    // A PEFT adapter as the reference: its base weights are part of it too.
    let mut dirs = vec![ref_dir.to_path_buf()];
    if ref_dir.join("adapter_config.json").is_file() {
        dirs.extend(tiller_model::lora::PeftConfig::read(ref_dir)?.base_dir(ref_dir));
    }
    let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
    let key = cache::cache_key(&dirs, &config.model, dtype, set)?;
    Ok((dir, key))
}

/// Reference log-probs of every pair of `set`, computed now with `live` and stored.
fn fill_cache(
    ctx: &mut Ctx,
    (dir, key): &(PathBuf, String),
    set: &[TokenizedPair],
    trainee: &Trainee,
    live: &Reference,
) -> Result<Vec<[f64; 2]>> {
    let started = Instant::now();
    trainee.set_training(false);
    let mut out = Vec::with_capacity(set.len());
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(ctx.config.train.batch_size) {
        let b = ctx.batch(set, chunk, trainee)?;
        let (c, r) = ctx
            .reference(live, trainee, &b, chunk, false)?
            .ok_or_else(|| PolicyError::Invalid("no reference".into()))?;
        let c = Vec::<f64>::try_from(&c.to_kind(Kind::Double))?;
        let r = Vec::<f64>::try_from(&r.to_kind(Kind::Double))?;
        out.extend(c.into_iter().zip(r).map(|(c, r)| [c, r]));
    }
    cache::store(dir, key, &out)?;
    tracing::info!(
        "cached reference log-probs of {} pairs in {:.1}s ({key:.12})",
        set.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// The reference to train against, as `config` says. With the cache on, a reference
/// model is only loaded (or the adapters switched off) when some set misses the cache.
fn build_reference(
    config: &DpoConfig,
    ctx: &mut Ctx,
    trainee: &Trainee,
    resumed: bool,
    train_set: &[TokenizedPair],
    eval_set: Option<&[TokenizedPair]>,
) -> Result<Reference> {
    if !config.loss.kind.needs_reference() {
        return Ok(Reference::None);
    }
    let device = trainee.lm.device();
    let live = || -> Result<Reference> {
        let separate = |dir: &Path| -> Result<Reference> {
            let mut lm = CausalLm::load(dir, device, config.dtype.kind())?;
            lm.vs.freeze();
            Ok(Reference::Model(lm))
        };
        match (&config.reference.model, &trainee.lora) {
            (Some(dir), _) => separate(dir),
            (None, Some(_)) => Ok(Reference::Adapters),
            // Full fine-tuning against the starting weights: before the first step the
            // policy *is* the reference, so filling the cache needs no second copy.
            (None, None) if config.reference.cache && !resumed => Ok(Reference::Policy),
            (None, None) => separate(&config.model),
        }
    };
    if !config.reference.cache {
        return live();
    }
    let mut sets = vec![train_set];
    sets.extend(eval_set);
    let mut found = Vec::new();
    for set in &sets {
        let slot = cache_slot(config, set)?;
        let hit = cache::load(&slot.0, &slot.1, set.len())?;
        if hit.is_some() {
            tracing::info!(
                "reference log-probs of {} pairs from the cache ({:.12})",
                set.len(),
                slot.1
            );
        }
        found.push((slot, hit));
    }
    let mut model = None;
    let mut tables = Vec::new();
    for (set, (slot, hit)) in sets.iter().zip(found) {
        let table = match hit {
            Some(t) => t,
            None => {
                if model.is_none() {
                    model = Some(live()?);
                }
                let live = model
                    .as_ref()
                    .ok_or_else(|| PolicyError::Invalid("no reference".into()))?;
                fill_cache(ctx, &slot, set, trainee, live)?
            }
        };
        tables.push(table);
    }
    let eval = if tables.len() > 1 { tables.pop() } else { None };
    let train = tables
        .pop()
        .ok_or_else(|| PolicyError::Invalid("no reference log-probs".into()))?;
    Ok(Reference::Cached { train, eval })
}

/// Runs DPO as `config` says; with `resume`, continues from the newest checkpoint in
/// `config.out`. `on_step` sees every step (for a progress bar).
pub fn train(
    config: &DpoConfig,
    resume: bool,
    on_step: &mut dyn FnMut(&DpoProgress),
) -> Result<DpoSummary> {
    let out = &config.out;
    std::fs::create_dir_all(out).map_err(|e| PolicyError::io(out, e))?;
    let resume_dir = resume_checkpoint(out, resume)?;
    let config_path = out.join("dpo_config.toml");
    std::fs::write(&config_path, config.to_toml()?)
        .map_err(|e| PolicyError::io(&config_path, e))?;

    let tokenizer = Tokenizer::from_dir(&config.model)?;
    let train_set = load_pairs(config, &config.data.train, &tokenizer)?;
    let eval_set = config
        .data
        .eval
        .as_ref()
        .map(|p| load_pairs(config, p, &tokenizer))
        .transpose()?;
    let trainee = load_trainee(&config.trainee_spec(), resume_dir.as_deref())?;
    let mut ctx = Ctx {
        config,
        pad_id: tokenizer.pad_id as i64,
        reference_forwards: 0,
        bco: RunningMean::default(),
    };
    let reference = build_reference(
        config,
        &mut ctx,
        &trainee,
        resume_dir.is_some(),
        &train_set,
        eval_set.as_deref(),
    )?;
    let mut optimizer = AdamW::new(trainee.params(), &config.optim);
    tracing::info!(
        "DPO ({:?}) on {} parameters ({})",
        config.loss.kind,
        optimizer.numel(),
        if trainee.lora.is_some() {
            "LoRA adapters"
        } else {
            "full fine-tuning"
        }
    );

    let t = &config.train;
    let (mut sampler, mut state) = start_or_resume(
        train_set.len(),
        t,
        config.seed,
        config.schedule,
        &mut optimizer,
        resume_dir.as_deref(),
    )?;
    let total_steps = state.total_steps;
    if let Some(dir) = &resume_dir {
        let bco_path = dir.join(DPO_STATE_FILE);
        if let Ok(text) = std::fs::read_to_string(&bco_path) {
            ctx.bco = serde_json::from_str(&text)
                .map_err(|e| PolicyError::Invalid(format!("{}: {e}", bco_path.display())))?;
        }
    }
    let mut rng = SplitMix64(state.rng);
    let mut metrics = MetricsWriter::open(
        &out.join("metrics.jsonl"),
        resume_dir.as_ref().map(|_| state.step),
    )?;

    let run_eval = |ctx: &mut Ctx,
                    step: u64,
                    trainee: &Trainee,
                    metrics: &mut MetricsWriter|
     -> Result<Option<DpoMetrics>> {
        let Some(set) = &eval_set else {
            return Ok(None);
        };
        let started = Instant::now();
        let m = ctx.evaluate(&reference, trainee, set)?;
        tracing::info!(
            "step {step}: eval_loss {:.4}, eval_rewards/accuracies {:.3}, eval_rewards/margins {:.4}",
            m.loss,
            m.accuracy,
            m.rewards_chosen - m.rewards_rejected
        );
        let mut values = m.named("eval_");
        values.push(("eval_runtime".into(), started.elapsed().as_secs_f64()));
        let refs: Vec<(&str, f64)> = values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        metrics.write(step, &refs)?;
        Ok(Some(m))
    };
    let eval_before = if resume_dir.is_none() {
        run_eval(&mut ctx, 0, &trainee, &mut metrics)?
    } else {
        None
    };
    let mut eval_accuracy = eval_before.map(|m| m.accuracy);

    let (mut window, mut window_steps, mut window_tokens, mut window_seconds) =
        (DpoMetrics::default(), 0u64, 0u64, 0.0);
    let (mut total_tokens, mut total_seconds, mut skipped, mut losses) =
        (0u64, 0.0, 0u64, Vec::new());
    while state.step < total_steps {
        let step = state.step + 1;
        let started = Instant::now();
        let lr = config.schedule.lr(config.optim.lr, state.step, total_steps);
        tch::manual_seed((rng.next_u64() >> 1) as i64);
        trainee.set_training(true);
        optimizer.zero_grad();
        let mut step_metrics = DpoMetrics::default();
        let mut tokens = 0u64;
        for _ in 0..t.grad_accum {
            let indices = sampler.next_batch();
            let (l, m, n) = ctx.step_loss(&reference, &trainee, &train_set, &indices, false)?;
            (&l / t.grad_accum as f64).f_backward()?;
            step_metrics.add_scaled(&m, 1.0 / t.grad_accum as f64);
            tokens += n as u64;
        }
        let grad_norm = optimizer.clip_grad_norm(config.optim.max_grad_norm)?;
        if check_finite(step, step_metrics.loss, grad_norm, t.on_non_finite)? {
            optimizer.step(lr);
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
        losses.push(step_metrics.loss);
        if step_metrics.loss.is_finite() {
            window.add_scaled(&step_metrics, 1.0);
            window_steps += 1;
        }
        (window_tokens, window_seconds) = (window_tokens + tokens, window_seconds + seconds);

        let epoch = state.data.epoch_fraction();
        if step % t.log_every == 0 || step == total_steps {
            let mut mean = DpoMetrics::default();
            mean.add_scaled(&window, 1.0 / window_steps.max(1) as f64);
            let mut values = mean.named("");
            values.extend([
                ("learning_rate".to_owned(), lr),
                ("grad_norm".to_owned(), grad_norm),
                ("epoch".to_owned(), epoch),
                ("num_tokens".to_owned(), state.num_tokens as f64),
                (
                    "train_tokens_per_second".to_owned(),
                    window_tokens as f64 / window_seconds.max(1e-9),
                ),
            ]);
            let refs: Vec<(&str, f64)> = values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            metrics.write(step, &refs)?;
            (window, window_steps, window_tokens, window_seconds) =
                (DpoMetrics::default(), 0, 0, 0.0);
        }
        if t.eval_every > 0 && step % t.eval_every == 0 && step < total_steps {
            eval_accuracy = run_eval(&mut ctx, step, &trainee, &mut metrics)?.map(|m| m.accuracy);
        }
        if t.save_every > 0 && step % t.save_every == 0 {
            let bco =
                serde_json::to_string(&ctx.bco).map_err(|e| PolicyError::Invalid(e.to_string()))?;
            write_atomically(&checkpoint_dir(out, step), |dir| -> Result<()> {
                trainee.save(dir, &config.model)?;
                optimizer.save(&dir.join(OPTIMIZER_FILE))?;
                let path = dir.join(DPO_STATE_FILE);
                std::fs::write(&path, &bco).map_err(|e| PolicyError::io(&path, e))?;
                Ok(state.write(dir)?)
            })?;
            prune_checkpoints(out, t.keep_checkpoints)?;
        }
        on_step(&DpoProgress {
            step,
            total_steps,
            loss: step_metrics.loss,
            eval_accuracy,
        });
    }

    let eval_after = run_eval(&mut ctx, state.step, &trainee, &mut metrics)?;
    let reference_forwards = ctx.reference_forwards;
    drop(reference);
    save_final(&config.trainee_spec(), trainee)?;
    Ok(DpoSummary {
        out: out.clone(),
        steps: state.step,
        eval_before,
        eval_after,
        train_tokens_per_second: total_tokens as f64 / total_seconds.max(1e-9),
        skipped_steps: skipped,
        reference_forwards,
        losses,
    })
}
