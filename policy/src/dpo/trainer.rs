//! The DPO loop, written out: load pairs, policy and reference; per step draw `grad_accum`
//! micro-batches, run chosen and rejected through the policy in one forward pass, take the
//! reference log-probs from the cache (or a no-grad reference pass), backpropagate the
//! configured loss; the shared [`Runtime`] does the update, logging, evaluation schedule
//! and checkpoints. Resume is exact as in SFT (weights, AdamW moments, schedule, RNG, data
//! position, and `bco_pair`'s running mean in `dpo_state.json`, which a `bco_pair` resume
//! requires).
//!
//! Data parallel: every rank starts from rank 0's weights, weights each micro-batch's
//! pair-mean loss by its share of that micro-batch's pairs over all ranks (times the
//! world size, which the runtime's mean of gradients divides out), and logs and
//! evaluates sums over all ranks; the reference cache is computed sharded and gathered
//! into one file ([`compute_rows`]). NLL(yw) (`cpo`, `orpo`, `rpo_alpha`) is a token
//! mean over the whole micro-batch, its normaliser summed over all ranks; `bco_pair`'s
//! running mean of rewards is updated from sums over all ranks, so every rank holds one δ.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::Tensor;
use tiller_data::{load_preferences, PairOptions, TokenizedPair, Tokenizer};
use tiller_model::train::{AdamW, RunDir, Runtime, TrainOptions};

use crate::dpo::config::DpoConfig;
use crate::dpo::loss::{has_chosen_nll, DpoLoss, RunningMean};
pub use crate::dpo::metrics::DpoMetrics;
use crate::dpo::step::Ctx;
use crate::error::{PolicyError, Result};
use crate::reference::{self, compute_rows, KeyRow, ReferenceLogps, ReferenceSetup};
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

/// The reference to train against (cached, live or none), as `config` says.
fn build_reference(
    config: &DpoConfig,
    ctx: &mut Ctx,
    trainee: &Trainee,
    resumed: bool,
    train_set: &[TokenizedPair],
    eval_set: Option<&[TokenizedPair]>,
) -> Result<ReferenceLogps> {
    if !config.loss.kind.needs_reference() {
        return Ok(ReferenceLogps::None);
    }
    let mut sets = vec![train_set];
    sets.extend(eval_set);
    let keys: Vec<Vec<KeyRow>> = sets
        .iter()
        .map(|set| {
            set.iter()
                .map(|p| [&p.prompt_ids[..], &p.chosen_ids[..], &p.rejected_ids[..]])
                .collect()
        })
        .collect();
    let setup = ReferenceSetup {
        config: &config.reference,
        model: &config.model,
        out: &config.out,
        dtype: config.dtype,
        what: "dpo",
        collective: ctx.collective,
    };
    reference::build(&setup, trainee, resumed, &keys, &mut |live, k| {
        let set = sets[k];
        compute_rows(
            set.len(),
            config.train.batch_size,
            ctx.collective,
            |chunk| {
                let b = ctx.batch(set, chunk, trainee)?;
                ctx.reference(live, trainee, &b, chunk, false)?
                    .ok_or_else(|| PolicyError::Invalid("no reference".into()))
            },
        )
    })
}

/// Runs DPO as `config` says; with `resume`, continues from the newest checkpoint in
/// `config.out`. `on_step` sees every step (for a progress bar).
pub fn train(
    config: &DpoConfig,
    resume: bool,
    on_step: &mut dyn FnMut(&DpoProgress),
) -> Result<DpoSummary> {
    train_in(config, &TrainOptions::resume(resume), on_step)
}

/// `bco_pair`'s running mean as a checkpoint left it: required on resume (it is part of
/// the loss), never silently reset.
fn read_bco_state(dir: &Path) -> Result<RunningMean> {
    let path = dir.join(DPO_STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| PolicyError::Config {
        path,
        message: format!("bco_pair running mean: {e}"),
    })
}

/// [`train`] as one process of a data-parallel job (`options.collective`).
pub fn train_in(
    config: &DpoConfig,
    options: &TrainOptions,
    on_step: &mut dyn FnMut(&DpoProgress),
) -> Result<DpoSummary> {
    config.validate().map_err(PolicyError::Invalid)?;
    let spec = config.run_config();
    let dir = RunDir::open(&config.out, "dpo_config.toml", &config.to_toml()?, options)?;
    let tokenizer = Tokenizer::from_dir(&config.model)?;
    let train_set = load_pairs(config, &config.data.train, &tokenizer)?;
    let eval_set = config
        .data
        .eval
        .as_ref()
        .map(|p| load_pairs(config, p, &tokenizer))
        .transpose()?;
    let trainee = load_trainee(&spec, dir.resume_from.as_deref())?;
    let collective = options.collective.as_ref();
    let world = collective.world_size();
    if world > 1 {
        // Every rank starts from rank 0's weights, before the reference is computed.
        let params: Vec<Tensor> = trainee.params().into_iter().map(|(_, p)| p).collect();
        tch::no_grad(|| collective.broadcast(&params))?;
    }
    let mut ctx = Ctx {
        config,
        collective,
        pad_id: tokenizer.pad_id as i64,
        reference_forwards: 0,
        bco: RunningMean::default(),
    };
    let reference = build_reference(
        config,
        &mut ctx,
        &trainee,
        dir.resume_from.is_some(),
        &train_set,
        eval_set.as_deref(),
    )?;
    if let (Some(ckpt), DpoLoss::BcoPair) = (&dir.resume_from, config.loss.kind) {
        ctx.bco = read_bco_state(ckpt)?;
    }
    let mut optimizer = AdamW::new(trainee.params(), &config.optim);
    tracing::info!(
        "DPO ({}, {})",
        config.loss.kind.name(),
        if trainee.lora.is_some() {
            "LoRA adapters"
        } else {
            "full fine-tuning"
        }
    );
    let mut rt = dir.start("dpo", train_set.len(), &spec, &mut optimizer)?;
    let t = &config.train;

    let run_eval = |ctx: &mut Ctx,
                    rt: &mut Runtime,
                    trainee: &Trainee|
     -> Result<Option<DpoMetrics>> {
        let Some(set) = &eval_set else {
            return Ok(None);
        };
        let started = Instant::now();
        let m = ctx.evaluate(&reference, trainee, set)?;
        let step = rt.state.step;
        tracing::info!(
                "step {step}: eval_loss {:.4}, eval_rewards/accuracies {:.3}, eval_rewards/margins {:.4}",
                m.loss,
                m.accuracy,
                m.rewards_chosen - m.rewards_rejected
            );
        let mut values = m.named("eval_");
        values.push(("eval_runtime".into(), started.elapsed().as_secs_f64()));
        rt.write(step, &values)?;
        Ok(Some(m))
    };
    let eval_before = if rt.evals_before() {
        run_eval(&mut ctx, &mut rt, &trainee)?
    } else {
        None
    };
    let mut eval_accuracy = eval_before.map(|m| m.accuracy);

    let mut losses = Vec::new();
    while !rt.done() {
        rt.begin_step();
        rt.seed_torch();
        trainee.set_training(true);
        optimizer.zero_grad();
        let mut step_metrics = DpoMetrics::default();
        let mut tokens = 0u64;
        // Each micro-batch's loss is a mean over its pairs; a rank holding a share of a
        // global micro-batch weights its mean by that share (times the world size, which
        // the runtime's mean of gradients divides out), as one process would weight it.
        let micro: Vec<Vec<usize>> = (0..t.grad_accum).map(|_| rt.next_batch()).collect();
        // NLL(yw) is a token mean over the whole micro-batch: its chosen tokens over all
        // ranks are summed with the pair counts.
        let nll = world > 1 && has_chosen_nll(&config.loss);
        let mut local: Vec<f64> = micro.iter().map(|m| m.len() as f64).collect();
        if nll {
            for m in &micro {
                local.push(ctx.chosen_tokens(&train_set, m, &trainee)?);
            }
        }
        let global = rt.global_sums(&local)?;
        let (global_lens, global_tokens) = global.split_at(micro.len());
        let ga = t.grad_accum as f64;
        for (i, (indices, &global_len)) in micro.iter().zip(global_lens).enumerate() {
            if indices.is_empty() {
                if let DpoLoss::BcoPair = config.loss.kind {
                    // `bco_pair`'s running mean is updated from sums over every rank.
                    ctx.update_bco(0.0, 0)?;
                }
                continue;
            }
            let nll_tokens =
                nll.then(|| global_tokens[i].max(1.0) * indices.len() as f64 / global_len);
            let (l, m, n) =
                ctx.step_loss(&reference, &trainee, &train_set, indices, false, nll_tokens)?;
            if world == 1 {
                (&l / ga).f_backward()?;
                step_metrics.add_scaled(&m, 1.0 / ga);
            } else {
                let share = indices.len() as f64 / (global_len * ga);
                (&l * (share * world as f64)).f_backward()?;
                step_metrics.add_scaled(&m, share);
            }
            tokens += n as u64;
        }
        step_metrics.all_reduce_sum(collective)?;
        let update = rt.apply_update(&mut optimizer, step_metrics.loss)?;
        losses.push(step_metrics.loss);
        let finite = step_metrics.loss.is_finite();
        for (key, value) in step_metrics.named("") {
            rt.window.add(&key, if finite { value } else { f64::NAN });
        }
        rt.end_step(&optimizer, tokens, &[("grad_norm", update.grad_norm)])?;
        if rt.evals_now() {
            eval_accuracy = run_eval(&mut ctx, &mut rt, &trainee)?.map(|m| m.accuracy);
        }
        if rt.saves_now() {
            let bco =
                serde_json::to_string(&ctx.bco).map_err(|e| PolicyError::Invalid(e.to_string()))?;
            rt.save_checkpoint(&optimizer, |dir| -> Result<()> {
                trainee.save(dir, &config.model)?;
                let path = dir.join(DPO_STATE_FILE);
                std::fs::write(&path, &bco).map_err(|e| PolicyError::io(&path, e))
            })?;
        }
        on_step(&DpoProgress {
            step: rt.state.step,
            total_steps: rt.total_steps(),
            loss: step_metrics.loss,
            eval_accuracy,
        });
    }

    let eval_after = run_eval(&mut ctx, &mut rt, &trainee)?;
    let reference_forwards = ctx.reference_forwards;
    drop(reference);
    let steps = rt.state.step;
    let totals = rt.finish(|_| save_final(&spec, trainee))?;
    Ok(DpoSummary {
        out: config.out.clone(),
        steps,
        eval_before,
        eval_after,
        train_tokens_per_second: totals.tokens_per_second(),
        skipped_steps: totals.skipped,
        reference_forwards,
        losses,
    })
}
