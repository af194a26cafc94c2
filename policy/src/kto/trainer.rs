//! The KTO loop, written out: load the unpaired rows (each with its KL pair, see
//! [`crate::kto::data`]), policy and reference; per step draw `grad_accum` micro-batches,
//! run the completions through the policy (with gradients) and their KL pairs (without,
//! as TRL: z0 is detached), take the reference log-probs of both from the cache (or a
//! no-grad reference pass) and backpropagate the KTO loss; the shared [`Runtime`] does the
//! update, logging, evaluation schedule and checkpoints. Resume is exact as in DPO.
//!
//! Data parallel: each rank takes its share of every global micro-batch; z0 is the mean
//! over the whole micro-batch's KL pairs (an all-reduce of their summed log-ratios), the
//! loss weights each rank's rows by the micro-batch over all ranks, and the KL pairs are
//! made in chunks of the global micro-batch, so N ranks of `batch_size` B/N train as one
//! process of B. The reference cache is computed sharded and gathered (as in DPO).

use std::path::PathBuf;
use std::time::Instant;

use tch::{Kind, Tensor};
use tiller_data::{TokenizedExample, Tokenizer};
use tiller_model::dist::Collective;
use tiller_model::train::{rank_share, AdamW, RunDir, Runtime, TrainOptions};

use crate::error::{PolicyError, Result};
use crate::kto::config::KtoConfig;
use crate::kto::data::{load_set, KtoSet};
use crate::kto::loss::{kto_loss, kto_loss_with_kl, KtoInputs};
use crate::kto::metrics::{KtoMetrics, KtoTally};
use crate::reference::{self, compute_rows, Reference, ReferenceSetup};
use crate::sequences::{logp_kind, sequence_logps, SeqBatch};
use crate::trainee::{load_trainee, save_final, Trainee};

#[derive(Debug, Clone)]
pub struct KtoProgress {
    pub step: u64,
    pub total_steps: u64,
    pub loss: f64,
    /// Held-out `rewards/margins` at the latest evaluation.
    pub eval_margin: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct KtoSummary {
    pub out: PathBuf,
    pub steps: u64,
    pub eval_before: Option<KtoMetrics>,
    pub eval_after: Option<KtoMetrics>,
    pub train_tokens_per_second: f64,
    pub skipped_steps: u64,
    /// Batches run through the reference model (0 when the cache had everything).
    pub reference_forwards: u64,
    /// The loss of every step, in order (for tests and reports).
    pub losses: Vec<f64>,
}

struct Ctx<'a> {
    config: &'a KtoConfig,
    collective: &'a dyn Collective,
    pad_id: i64,
    reference_forwards: u64,
}

/// A micro-batch: the rows' completions and their KL pairs.
struct Batches {
    rows: SeqBatch,
    kl: SeqBatch,
}

impl Ctx<'_> {
    fn batches(&self, set: &KtoSet, indices: &[usize], trainee: &Trainee) -> Result<Batches> {
        let d = &self.config.data;
        let seqs = |make: &dyn Fn(usize) -> TokenizedExample| -> Result<SeqBatch> {
            let examples: Vec<TokenizedExample> = indices.iter().map(|&i| make(i)).collect();
            SeqBatch::new(
                &examples,
                d.collation,
                d.max_seq_len,
                self.pad_id,
                trainee.lm.device(),
            )
        };
        Ok(Batches {
            rows: seqs(&|i| set.example(i))?,
            kl: seqs(&|i| set.kl_example(i))?,
        })
    }

    /// Reference log-probs (completions, KL pairs) of a micro-batch, without gradients.
    fn reference(
        &mut self,
        reference: &Reference,
        trainee: &Trainee,
        b: &Batches,
        indices: &[usize],
        eval: bool,
    ) -> Result<(Tensor, Tensor)> {
        let (kind, device) = (logp_kind(trainee.lm.kind()), trainee.lm.device());
        if let Some(cached) = reference.cached(eval, indices, kind, device)? {
            return Ok(cached);
        }
        let live = reference.run(trainee, |lm| {
            Ok((
                sequence_logps(lm, &b.rows)?.logps,
                sequence_logps(lm, &b.kl)?.logps,
            ))
        })?;
        self.reference_forwards += 1;
        live.ok_or_else(|| PolicyError::Invalid("KTO needs a reference".into()))
    }

    /// The loss and metrics of this rank's share `indices` of a micro-batch of
    /// `global_rows` rows over all ranks, and its real tokens; None for an empty share.
    /// z0 is the mean over the whole micro-batch's KL pairs (one all-reduce in a world of
    /// several, which every rank joins, an empty share too); the loss is this rank's part
    /// of the micro-batch mean, and the tally's `weight`, `loss` and `kl` are scaled by
    /// the share, so the ranks' sums are one process's.
    fn step_loss(
        &mut self,
        reference: &Reference,
        trainee: &Trainee,
        set: &KtoSet,
        indices: &[usize],
        global_rows: usize,
        eval: bool,
    ) -> Result<Option<(Tensor, KtoTally, usize)>> {
        let world = self.collective.world_size();
        if indices.is_empty() {
            if world > 1 {
                self.collective.all_reduce_sum_f64(&mut [0.0])?;
            }
            return Ok(None);
        }
        let b = self.batches(set, indices, trainee)?;
        let (ref_logps, ref_kl_logps) = self.reference(reference, trainee, &b, indices, eval)?;
        let policy = &trainee.lm.model;
        let s = sequence_logps(policy, &b.rows)?;
        let kl_logps = tch::no_grad(|| sequence_logps(policy, &b.kl))?.logps;
        let labels: Vec<bool> = indices.iter().map(|&i| set.rows[i].label).collect();
        let inputs = KtoInputs {
            logps: s.logps.shallow_clone(),
            ref_logps,
            desirable: Tensor::from_slice(&labels).to_device(trainee.lm.device()),
            kl_logps,
            ref_kl_logps,
        };
        let parts = if world == 1 {
            kto_loss(&inputs, &self.config.loss)?
        } else {
            let mut kl_sum = [(&inputs.kl_logps - &inputs.ref_kl_logps)
                .detach()
                .sum(Kind::Double)
                .f_double_value(&[])?];
            self.collective.all_reduce_sum_f64(&mut kl_sum)?;
            let kl_mean = kl_sum[0] / global_rows.max(1) as f64;
            kto_loss_with_kl(&inputs, kl_mean, &self.config.loss)?
        };
        let share = indices.len() as f64 / global_rows.max(1) as f64;
        let loss_value = parts
            .loss
            .detach()
            .to_kind(Kind::Double)
            .f_double_value(&[])?;
        let rewards = Vec::<f64>::try_from(&parts.rewards.to_kind(Kind::Double))?;
        let logps = Vec::<f64>::try_from(&s.logps.detach().to_kind(Kind::Double))?;
        let logits = Vec::<f64>::try_from(&s.logit_sums)?;
        let mut tally = KtoTally {
            weight: share,
            loss: share * loss_value,
            kl: share * parts.kl,
            ..KtoTally::default()
        };
        for (k, &label) in labels.iter().enumerate() {
            let side = if label {
                &mut tally.chosen
            } else {
                &mut tally.rejected
            };
            side.count += 1.0;
            side.rewards += rewards[k];
            side.logps += logps[k];
            side.logits += logits[k];
            side.logit_entries += b.rows.tokens[k] * s.vocab as f64;
        }
        let tokens = b.rows.num_tokens() + b.kl.num_tokens();
        Ok(Some((parts.loss * share, tally, tokens)))
    }

    /// Metrics over `set` in file order, in chunks of one global micro-batch (those its
    /// KL pairs were made in), without gradients or dropout; each rank scores its share
    /// of every chunk and the sums are reduced.
    fn evaluate(
        &mut self,
        reference: &Reference,
        trainee: &Trainee,
        set: &KtoSet,
    ) -> Result<KtoMetrics> {
        trainee.set_training(false);
        let (rank, world) = (self.collective.rank(), self.collective.world_size());
        let indices: Vec<usize> = (0..set.len()).collect();
        let mut sum = KtoTally::default();
        for chunk in indices.chunks(self.config.train.batch_size * world) {
            let share = rank_share(chunk, rank, world).1;
            let scored =
                tch::no_grad(|| self.step_loss(reference, trainee, set, share, chunk.len(), true))?;
            if let Some((_, mut m, _)) = scored {
                let w = chunk.len() as f64;
                (m.weight, m.loss, m.kl) = (w * m.weight, w * m.loss, w * m.kl);
                sum.add(&m);
            }
        }
        sum.reduce(self.collective)?;
        Ok(sum.metrics())
    }
}

/// The reference to train against (cached or live), as `config` says.
fn build_reference(
    config: &KtoConfig,
    ctx: &mut Ctx,
    trainee: &Trainee,
    resumed: bool,
    sets: &[&KtoSet],
) -> Result<Reference> {
    let keys: Vec<_> = sets.iter().map(|s| s.key_rows()).collect();
    let setup = ReferenceSetup {
        config: &config.reference,
        model: &config.model,
        out: &config.out,
        dtype: config.dtype,
        what: "kto",
        collective: ctx.collective,
    };
    reference::build(&setup, trainee, resumed, &keys, &mut |live, k| {
        let set = sets[k];
        compute_rows(
            set.len(),
            config.train.batch_size,
            ctx.collective,
            |chunk: &[usize]| {
                let b = ctx.batches(set, chunk, trainee)?;
                ctx.reference(live, trainee, &b, chunk, false)
            },
        )
    })
}

/// Runs KTO as `config` says; with `resume`, continues from the newest checkpoint in
/// `config.out`. `on_step` sees every step (for a progress bar).
pub fn train(
    config: &KtoConfig,
    resume: bool,
    on_step: &mut dyn FnMut(&KtoProgress),
) -> Result<KtoSummary> {
    train_in(config, &TrainOptions::resume(resume), on_step)
}

/// [`train`] as one process of a data-parallel job (`options.collective`).
pub fn train_in(
    config: &KtoConfig,
    options: &TrainOptions,
    on_step: &mut dyn FnMut(&KtoProgress),
) -> Result<KtoSummary> {
    config.validate().map_err(PolicyError::Invalid)?;
    let world = options.collective.world_size();
    let spec = config.run_config();
    let dir = RunDir::open(&config.out, "kto_config.toml", &config.to_toml()?, options)?;
    let tokenizer = Tokenizer::from_dir(&config.model)?;
    let train_set = load_set(config, &config.data.train, &tokenizer, world)?;
    let eval_set = config
        .data
        .eval
        .as_ref()
        .map(|p| load_set(config, p, &tokenizer, world))
        .transpose()?;
    let trainee = load_trainee(&spec, dir.resume_from.as_deref())?;
    if world > 1 {
        // Every rank starts from rank 0's weights, before the reference is computed.
        let params: Vec<Tensor> = trainee.params().into_iter().map(|(_, p)| p).collect();
        tch::no_grad(|| options.collective.broadcast(&params))?;
    }
    let mut ctx = Ctx {
        config,
        collective: options.collective.as_ref(),
        pad_id: tokenizer.pad_id as i64,
        reference_forwards: 0,
    };
    let mut sets = vec![&train_set];
    sets.extend(eval_set.as_ref());
    let resumed = dir.resume_from.is_some();
    let reference = build_reference(config, &mut ctx, &trainee, resumed, &sets)?;
    let mut optimizer = AdamW::new(trainee.params(), &config.optim);
    tracing::info!(
        "KTO ({})",
        if trainee.lora.is_some() {
            "LoRA adapters"
        } else {
            "full fine-tuning"
        }
    );
    let mut rt = dir.start("kto", train_set.len(), &spec, &mut optimizer)?;
    let t = &config.train;

    let run_eval =
        |ctx: &mut Ctx, rt: &mut Runtime, trainee: &Trainee| -> Result<Option<KtoMetrics>> {
            let Some(set) = &eval_set else {
                return Ok(None);
            };
            let started = Instant::now();
            let m = ctx.evaluate(&reference, trainee, set)?;
            let step = rt.state.step;
            tracing::info!(
                "step {step}: eval_loss {:.4}, eval_kl {:.4}, eval_rewards/margins {:.4}",
                m.loss,
                m.kl,
                m.margin()
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
    let mut eval_margin = eval_before.map(|m| m.margin());

    // KTO divides each side's sums by that side's count over the whole window, so it
    // keeps its own window (of step tallies already summed over the ranks).
    let mut window = KtoTally::default();
    let mut losses = Vec::new();
    while !rt.done() {
        rt.begin_step();
        rt.seed_torch();
        trainee.set_training(true);
        optimizer.zero_grad();
        let mut step_tally = KtoTally::default();
        let mut tokens = 0u64;
        // Each rank's share of every global micro-batch, and the micro-batch's rows over
        // all ranks (the loss is a mean over those; the runtime's mean of gradients
        // divides the world size back out).
        let micro: Vec<Vec<usize>> = (0..t.grad_accum).map(|_| rt.next_batch()).collect();
        let local: Vec<f64> = micro.iter().map(|m| m.len() as f64).collect();
        let global = rt.global_sums(&local)?;
        let scale = world as f64 / t.grad_accum as f64;
        for (indices, &global_rows) in micro.iter().zip(&global) {
            let global_rows = global_rows as usize;
            if global_rows == 0 {
                continue;
            }
            let scored = ctx.step_loss(
                &reference,
                &trainee,
                &train_set,
                indices,
                global_rows,
                false,
            )?;
            if let Some((l, m, n)) = scored {
                (&l * scale).f_backward()?;
                step_tally.add(&m);
                tokens += n as u64;
            }
        }
        step_tally.reduce(rt.collective())?;
        let step_loss = step_tally.loss / step_tally.weight;
        let update = rt.apply_update(&mut optimizer, step_loss)?;
        losses.push(step_loss);
        if step_loss.is_finite() {
            window.add(&step_tally);
        }
        let mut extra = Vec::new();
        if rt.logs_now() {
            extra = window.metrics().named("");
            window = KtoTally::default();
        }
        extra.push(("grad_norm".to_owned(), update.grad_norm));
        let refs: Vec<(&str, f64)> = extra.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        rt.end_step(&optimizer, tokens, &refs)?;
        if rt.evals_now() {
            eval_margin = run_eval(&mut ctx, &mut rt, &trainee)?.map(|m| m.margin());
        }
        if rt.saves_now() {
            rt.save_checkpoint(&optimizer, |dir| trainee.save(dir, &config.model))?;
        }
        on_step(&KtoProgress {
            step: rt.state.step,
            total_steps: rt.total_steps(),
            loss: step_loss,
            eval_margin,
        });
    }

    let eval_after = run_eval(&mut ctx, &mut rt, &trainee)?;
    let reference_forwards = ctx.reference_forwards;
    drop(reference);
    let steps = rt.state.step;
    let totals = rt.finish(|_| save_final(&spec, trainee))?;
    Ok(KtoSummary {
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
