//! The KTO loop, written out: load the unpaired rows (each with its KL pair, see
//! [`crate::kto::data`]), policy and reference; per step draw `grad_accum` micro-batches,
//! run the completions through the policy (with gradients) and their KL pairs (without,
//! as TRL: z0 is detached), take the reference log-probs of both from the cache (or a
//! no-grad reference pass) and backpropagate the KTO loss; the shared [`Runtime`] does the
//! update, logging, evaluation schedule and checkpoints. Resume is exact as in DPO.

use std::path::PathBuf;
use std::time::Instant;

use tch::{Kind, Tensor};
use tiller_data::{TokenizedExample, Tokenizer};
use tiller_model::dist::Collective;
use tiller_model::train::{AdamW, RunDir, Runtime, TrainOptions};

use crate::error::{PolicyError, Result};
use crate::kto::config::KtoConfig;
use crate::kto::data::{load_set, KtoSet};
use crate::kto::loss::{kto_loss, KtoInputs};
use crate::kto::metrics::{KtoMetrics, KtoTally};
use crate::reference::{self, compute_rows, ReferenceLogps, ReferenceSetup};
use crate::sequences::{logp_kind, sequence_logps, PackedSequences};
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
    rows: PackedSequences,
    kl: PackedSequences,
}

impl Ctx<'_> {
    fn batches(&self, set: &KtoSet, indices: &[usize], trainee: &Trainee) -> Result<Batches> {
        let d = &self.config.data;
        let seqs = |make: &dyn Fn(usize) -> TokenizedExample| -> Result<PackedSequences> {
            let examples: Vec<TokenizedExample> = indices.iter().map(|&i| make(i)).collect();
            PackedSequences::new(
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
        reference: &ReferenceLogps,
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

    /// The loss and metrics of one micro-batch, and its real tokens.
    fn step_loss(
        &mut self,
        reference: &ReferenceLogps,
        trainee: &Trainee,
        set: &KtoSet,
        indices: &[usize],
        eval: bool,
    ) -> Result<(Tensor, KtoTally, usize)> {
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
        let parts = kto_loss(&inputs, &self.config.loss)?;
        let loss_value = parts
            .loss
            .detach()
            .to_kind(Kind::Double)
            .f_double_value(&[])?;
        let rewards = Vec::<f64>::try_from(&parts.rewards.to_kind(Kind::Double))?;
        let logps = Vec::<f64>::try_from(&s.logps.detach().to_kind(Kind::Double))?;
        let logits = Vec::<f64>::try_from(&s.logit_sums)?;
        let mut tally = KtoTally {
            weight: 1.0,
            loss: loss_value,
            kl: parts.kl,
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
        Ok((parts.loss, tally, b.rows.num_tokens() + b.kl.num_tokens()))
    }

    /// Metrics over `set` in file order (the chunks its KL pairs were made in), without
    /// gradients or dropout.
    fn evaluate(
        &mut self,
        reference: &ReferenceLogps,
        trainee: &Trainee,
        set: &KtoSet,
    ) -> Result<KtoMetrics> {
        trainee.set_training(false);
        let indices: Vec<usize> = (0..set.len()).collect();
        let mut sum = KtoTally::default();
        for chunk in indices.chunks(self.config.train.batch_size) {
            let (_, mut m, _) =
                tch::no_grad(|| self.step_loss(reference, trainee, set, chunk, true))?;
            let w = chunk.len() as f64;
            (m.weight, m.loss, m.kl) = (w, w * m.loss, w * m.kl);
            sum.add(&m);
        }
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
) -> Result<ReferenceLogps> {
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
            |chunk| {
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
    if options.collective.world_size() > 1 {
        // z0, the KL estimate, is a mean over each batch's KL pairs, and the pairs are
        // made per chunk: sharding a batch would change both.
        return Err(PolicyError::Invalid(
            "kto does not run data parallel yet (its KL estimate is a batch mean); run it as one process".into(),
        ));
    }
    let spec = config.run_config();
    let dir = RunDir::open(&config.out, "kto_config.toml", &config.to_toml()?, options)?;
    let tokenizer = Tokenizer::from_dir(&config.model)?;
    let train_set = load_set(config, &config.data.train, &tokenizer)?;
    let eval_set = config
        .data
        .eval
        .as_ref()
        .map(|p| load_set(config, p, &tokenizer))
        .transpose()?;
    let trainee = load_trainee(&spec, dir.resume_from.as_deref())?;
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
    // keeps its own window (reduced across ranks like the runtime's).
    let mut window = KtoTally::default();
    let mut losses = Vec::new();
    while !rt.done() {
        rt.begin_step();
        rt.seed_torch();
        trainee.set_training(true);
        optimizer.zero_grad();
        let mut step_tally = KtoTally::default();
        let mut tokens = 0u64;
        for _ in 0..t.grad_accum {
            let indices = rt.next_batch();
            if indices.is_empty() {
                continue;
            }
            let (l, m, n) = ctx.step_loss(&reference, &trainee, &train_set, &indices, false)?;
            (&l / t.grad_accum as f64).f_backward()?;
            step_tally.add(&m);
            tokens += n as u64;
        }
        let step_loss = step_tally.loss / step_tally.weight;
        let update = rt.apply_update(&mut optimizer, step_loss)?;
        losses.push(step_loss);
        if step_loss.is_finite() {
            window.add(&step_tally);
        }
        let mut extra = Vec::new();
        if rt.logs_now() {
            window.reduce(rt.collective())?;
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
