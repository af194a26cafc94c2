//! The training runtime: what every trainer — SFT, reward, DPO, KTO, PPO, GRPO, RLOO —
//! does around its own batch, loss and step, written once.
//!
//! [`RunDir::open`] creates the run directory, finds the checkpoint to resume from and
//! writes the resolved config; the trainer then loads its model (from that checkpoint)
//! and [`RunDir::start`] restores or creates the optimizer moments, data order, RNG and
//! metrics file. Per step the trainer calls [`Runtime::begin_step`] (the learning rate)
//! and [`Runtime::seed_torch`] (under [`with_torch_seed`]'s lock), draws
//! [`Runtime::next_batch`], runs its loss, then [`Runtime::apply_update`] (gradient all-reduce, clipping, NaN guard, AdamW)
//! and [`Runtime::end_step`] (train state, TRL-named metrics every `log_every` steps, a
//! progress line when stderr is not a terminal, checkpoints every `save_every` steps).
//!
//! Data parallelism plugs in here and nowhere else, through [`Collective`]:
//! 1. each rank reads its own slice of one global batch of `batch_size × world_size`
//!    examples drawn from the same seeded order, so with `grad_accum` micro-batches an
//!    optimizer step sees `batch_size × grad_accum × world_size` examples whatever the
//!    world size (logged at start);
//! 2. gradients are averaged once per optimizer step, after the last micro-batch and
//!    before clipping;
//! 3. logged metrics are reduced as sums and counts before they are written;
//! 4. only the main rank writes metrics, checkpoints and the final model; every rank
//!    resumes from the same checkpoint;
//! 5. with `optim.shard_optimizer`, [`RunDir::start`] shards the optimizer (ZeRO-1,
//!    `crate::train::zero`): the same calls then reduce-scatter, step a share and
//!    all-gather, and a checkpoint's optimizer state is gathered for the main rank.
//!
//! With [`crate::dist::Single`] every collective is a no-op and a run is exactly what it was before.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tiller_data::BatchSampler;

use crate::checkpoint::{save_safetensors, with_torch_seed};
use crate::dist::Collective;
use crate::error::{ModelError, Result};
use crate::sampling::SplitMix64;
use crate::train::guard::check_finite;
use crate::train::metrics::{MetricWindow, MetricsWriter};
use crate::train::optim::AdamW;
use crate::train::options::TrainOptions;
use crate::train::progress::progress_line;
use crate::train::run_config::RunConfig;
use crate::train::state::{
    checkpoint_dir, prune_checkpoints, resume_checkpoint, start_or_resume, TrainState,
    OPTIMIZER_FILE,
};
use crate::train::zero::describe_state;
use crate::train::TrainConfig;

/// A run directory ready for a run: created, its resolved config written, and the
/// checkpoint to resume from (if any) found.
pub struct RunDir {
    pub out: PathBuf,
    /// The checkpoint the run resumes from; the trainer loads its model from here.
    pub resume_from: Option<PathBuf>,
    collective: Arc<dyn Collective>,
}

impl RunDir {
    /// Creates `out`, finds the newest checkpoint when resuming (an error when there is
    /// none) and writes `config_toml` as `<out>/<config_name>` (main rank only).
    pub fn open(
        out: &Path,
        config_name: &str,
        config_toml: &str,
        options: &TrainOptions,
    ) -> Result<Self> {
        let collective = options.collective.clone();
        if collective.is_main() {
            std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
            let path = out.join(config_name);
            std::fs::write(&path, config_toml).map_err(|e| ModelError::io(&path, e))?;
        }
        // Every rank waits for the directory, then resumes from the same checkpoint.
        collective.barrier()?;
        Ok(RunDir {
            out: out.to_owned(),
            resume_from: resume_checkpoint(out, options.resume)?,
            collective,
        })
    }

    /// The runtime over `num_examples` examples (or prompts): a fresh data order and
    /// state, or the checkpoint's — whose AdamW moments are loaded into `optimizer`.
    pub fn start(
        self,
        label: &str,
        num_examples: usize,
        run: &RunConfig,
        optimizer: &mut AdamW,
    ) -> Result<Runtime> {
        let world = self.collective.world_size();
        // ZeRO-1 before the checkpoint's state is loaded: each rank keeps its share of it.
        optimizer.shard(self.collective.clone());
        // One global order; rank r reads the r-th slice of each global batch.
        let mut global = run.train.clone();
        global.batch_size = run.train.batch_size * world;
        let (sampler, state) = start_or_resume(
            num_examples,
            &global,
            run.seed,
            run.schedule,
            optimizer,
            self.resume_from.as_deref(),
        )?;
        let main = self.collective.is_main();
        let metrics = if main {
            Some(MetricsWriter::open(
                &self.out.join("metrics.jsonl"),
                self.resume_from.as_ref().map(|_| state.step),
            )?)
        } else {
            None
        };
        if main {
            tracing::info!(
                "{label}: {} steps of {} examples (batch_size {} × grad_accum {} × {world} process{}), {} trainable parameters",
                state.total_steps,
                run.train.batch_size * run.train.grad_accum * world,
                run.train.batch_size,
                run.train.grad_accum,
                if world == 1 { "" } else { "es" },
                optimizer.numel(),
            );
            tracing::info!(
                "{label}: {}",
                describe_state(optimizer.state_bytes(), optimizer.shards(), world)
            );
        }
        Ok(Runtime {
            out: self.out,
            resumed_from: self.resume_from,
            collective: self.collective,
            label: label.to_owned(),
            train: run.train.clone(),
            lr: run.optim.lr,
            schedule: run.schedule,
            sampler,
            rng: SplitMix64(state.rng),
            first_step: state.step,
            state,
            metrics,
            window: MetricWindow::default(),
            window_tokens: 0.0,
            window_seconds: 0.0,
            step_lr: 0.0,
            step_started: Instant::now(),
            run_started: Instant::now(),
            totals: RunTotals::default(),
        })
    }
}

/// Counts over the steps this process ran (a resumed run counts its own).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunTotals {
    /// Real tokens trained on, over all ranks.
    pub tokens: u64,
    /// Seconds inside steps (excluding evaluation and checkpoints).
    pub seconds: f64,
    /// Updates skipped because the loss or gradient was not finite.
    pub skipped: u64,
}

impl RunTotals {
    pub fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.seconds.max(1e-9)
    }
}

/// What one optimizer update did.
#[derive(Debug, Clone, Copy)]
pub struct Update {
    /// The gradient norm before clipping (TRL's `grad_norm`).
    pub grad_norm: f64,
    /// False when the update was skipped (non-finite loss or gradient).
    pub applied: bool,
}

/// A run in progress; see the module docs for the order of calls.
pub struct Runtime {
    pub out: PathBuf,
    pub resumed_from: Option<PathBuf>,
    collective: Arc<dyn Collective>,
    label: String,
    train: TrainConfig,
    lr: f64,
    schedule: crate::train::ScheduleConfig,
    sampler: BatchSampler,
    rng: SplitMix64,
    first_step: u64,
    pub state: TrainState,
    metrics: Option<MetricsWriter>,
    /// The logging window: the trainer adds its step's metrics here.
    pub window: MetricWindow,
    window_tokens: f64,
    window_seconds: f64,
    step_lr: f64,
    step_started: Instant,
    run_started: Instant,
    totals: RunTotals,
}

impl Runtime {
    pub fn collective(&self) -> &dyn Collective {
        self.collective.as_ref()
    }
    pub fn is_main(&self) -> bool {
        self.collective.is_main()
    }
    pub fn total_steps(&self) -> u64 {
        self.state.total_steps
    }
    /// Whether every step has run.
    pub fn done(&self) -> bool {
        self.state.step >= self.state.total_steps
    }
    pub fn totals(&self) -> RunTotals {
        self.totals
    }

    /// Every rank's `local` values summed, element by element (`local` itself in a world
    /// of one): e.g. the examples of each micro-batch over all ranks, so a trainer can
    /// weight its share of a global batch as one process would.
    pub fn global_sums(&self, local: &[f64]) -> Result<Vec<f64>> {
        let mut values = local.to_vec();
        if self.collective.world_size() > 1 {
            self.collective.all_reduce_sum_f64(&mut values)?;
        }
        Ok(values)
    }

    /// Starts step `state.step + 1` (its clock) and returns its learning rate.
    pub fn begin_step(&mut self) -> f64 {
        self.step_started = Instant::now();
        self.step_lr = self
            .schedule
            .lr(self.lr, self.state.step, self.state.total_steps);
        self.step_lr
    }

    /// Reseeds torch's global generator (dropout's draws) from the trainer RNG, once per
    /// step and under the lock every seeded draw takes; the RNG is part of the train
    /// state, so a resumed run draws the same masks.
    pub fn seed_torch(&mut self) {
        let seed = (self.rng.next_u64() >> 1) as i64;
        with_torch_seed(seed, || ());
    }

    /// This rank's examples of the next global batch (`batch_size` of them; fewer, or
    /// none, at the end of an epoch in a world of several).
    pub fn next_batch(&mut self) -> Vec<usize> {
        self.next_share().1
    }

    /// [`Runtime::next_batch`] with where this rank's slice starts in the global batch
    /// (0 in a world of one), for a trainer whose per-example seeds follow that position.
    pub fn next_share(&mut self) -> (usize, Vec<usize>) {
        let global = self.sampler.next_batch();
        let (rank, world) = (self.collective.rank(), self.collective.world_size());
        if world == 1 {
            return (0, global);
        }
        let (start, share) = rank_share(&global, rank, world);
        (start, share.to_vec())
    }

    /// One optimizer update from the gradients accumulated since the last: averaged
    /// across ranks, clipped to `optim.max_grad_norm`, then applied at the step's learning
    /// rate — unless `loss` (this rank's) or the gradient norm is not finite, which stops
    /// the run or skips the update as `train.on_non_finite` says.
    pub fn apply_update(&mut self, optimizer: &mut AdamW, loss: f64) -> Result<Update> {
        optimizer.all_reduce_grads(self.collective.as_ref())?;
        let grad_norm = optimizer.clip_grad_norm(optimizer.config().max_grad_norm)?;
        // Every rank takes the same decision: on the mean loss.
        let mut mean_loss = [loss];
        self.collective.all_reduce_sum_f64(&mut mean_loss)?;
        let loss = mean_loss[0] / self.collective.world_size() as f64;
        let applied = check_finite(
            self.state.step + 1,
            loss,
            grad_norm,
            self.train.on_non_finite,
        )?;
        if applied {
            optimizer.step(self.step_lr)?;
        } else {
            optimizer.zero_grad();
            self.totals.skipped += 1;
        }
        Ok(Update { grad_norm, applied })
    }

    /// Ends the step: records it in the train state (`tokens`: this rank's real tokens),
    /// and every `log_every` steps and at the last writes the window's means with
    /// `extra` (last values such as `grad_norm`), `learning_rate`, `epoch`, `num_tokens`
    /// and `train_tokens_per_second`. Returns the values logged, if any.
    pub fn end_step(
        &mut self,
        optimizer: &AdamW,
        tokens: u64,
        extra: &[(&str, f64)],
    ) -> Result<Option<Vec<(String, f64)>>> {
        let seconds = self.step_started.elapsed().as_secs_f64();
        let mut all_tokens = [tokens as f64];
        self.collective.all_reduce_sum_f64(&mut all_tokens)?;
        let tokens = all_tokens[0] as u64;
        self.state.step += 1;
        self.state.optimizer_steps = optimizer.steps();
        self.state.data = self.sampler.position();
        self.state.rng = self.rng.0;
        self.state.num_tokens += tokens;
        self.totals.tokens += tokens;
        self.totals.seconds += seconds;
        self.window_tokens += tokens as f64;
        self.window_seconds += seconds;
        let step = self.state.step;
        if !self.train.logs_at(step, self.state.total_steps) {
            return Ok(None);
        }
        self.window.reduce(self.collective.as_ref())?;
        let mut values = self.window.drain();
        values.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), *v)));
        values.extend([
            ("learning_rate".to_owned(), self.step_lr),
            ("epoch".to_owned(), self.state.data.epoch_fraction()),
            ("num_tokens".to_owned(), self.state.num_tokens as f64),
            (
                "train_tokens_per_second".to_owned(),
                self.window_tokens / self.window_seconds.max(1e-9),
            ),
        ]);
        (self.window_tokens, self.window_seconds) = (0.0, 0.0);
        self.write(step, &values)?;
        if self.is_main() {
            let per_step =
                self.run_started.elapsed().as_secs_f64() / (step - self.first_step).max(1) as f64;
            progress_line(&self.label, step, self.state.total_steps, per_step, &values);
        }
        Ok(Some(values))
    }

    /// Writes one `metrics.jsonl` line (main rank only).
    pub fn write(&mut self, step: u64, values: &[(String, f64)]) -> Result<()> {
        if let Some(metrics) = &mut self.metrics {
            let refs: Vec<(&str, f64)> = values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            metrics.write(step, &refs)?;
        }
        Ok(())
    }

    /// Whether the step in progress will log when it ends (for a trainer that reduces a
    /// window of its own before [`Runtime::end_step`]).
    pub fn logs_now(&self) -> bool {
        self.train
            .logs_at(self.state.step + 1, self.state.total_steps)
    }

    /// Whether to evaluate after the step just ended (the evaluations before the first
    /// and after the last step are the trainer's, see [`Runtime::evals_before`]).
    pub fn evals_now(&self) -> bool {
        self.train.evals_at(self.state.step, self.state.total_steps)
    }

    /// Whether to evaluate before the first step: on a fresh run only.
    pub fn evals_before(&self) -> bool {
        self.resumed_from.is_none()
    }

    /// Whether to write a checkpoint after the step just ended.
    pub fn saves_now(&self) -> bool {
        self.train.saves_at(self.state.step)
    }

    /// Writes `checkpoint-<step>` atomically on the main rank — the optimizer moments,
    /// the train state and whatever `fill` writes (weights, a trainer's own state) —
    /// keeps the newest `keep_checkpoints`, and waits for every rank.
    pub fn save_checkpoint<E: From<ModelError>>(
        &self,
        optimizer: &AdamW,
        fill: impl FnOnce(&Path) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        // Sharded, every rank takes part in gathering the state the main rank writes.
        let state = optimizer.state_tensors()?;
        if self.is_main() {
            crate::atomic::write_dir(&checkpoint_dir(&self.out, self.state.step), |dir| {
                fill(dir)?;
                save_safetensors(&state, &dir.join(OPTIMIZER_FILE))?;
                Ok::<(), E>(self.state.write(dir)?)
            })?;
            prune_checkpoints(&self.out, self.train.keep_checkpoints)?;
        }
        Ok(self.collective.barrier()?)
    }

    /// Writes the final model with `save` on the main rank, waits for every rank, and
    /// returns the run's totals.
    pub fn finish<E: From<ModelError>>(
        self,
        save: impl FnOnce(&Path) -> std::result::Result<(), E>,
    ) -> std::result::Result<RunTotals, E> {
        if self.is_main() {
            save(&self.out)?;
            tracing::info!("{}: wrote {}", self.label, self.out.display());
        }
        self.collective.barrier()?;
        Ok(self.totals)
    }
}

/// Rank `rank`'s slice of a global batch shared by `world` ranks, and where it starts:
/// consecutive near-equal slices in rank order (empty for the last ranks of a batch
/// shorter than the world). [`Runtime::next_share`] splits every batch this way.
pub fn rank_share(global: &[usize], rank: usize, world: usize) -> (usize, &[usize]) {
    let per = global.len().div_ceil(world.max(1)).max(1);
    let start = (rank * per).min(global.len());
    (start, &global[start..(start + per).min(global.len())])
}
