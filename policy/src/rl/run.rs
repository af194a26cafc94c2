//! What every online RL run does around its update rule: set up the run directory, the
//! policy, the reward, the optimizer and the resumable prompt order; draw one rollout per
//! step with a seed derived from `(seed, step)`; average metrics over the logging window;
//! write exactly-resumable checkpoints and the final model.
//!
//! Resume restores the policy, the AdamW moments, the prompt position and the trainer RNG
//! (the per-step torch seed for LoRA dropout); generation seeds and minibatch orders are
//! functions of `(seed, step)`, so a resumed run samples and trains exactly as an
//! uninterrupted one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tiller_data::{BatchSampler, Tokenizer};
use tiller_model::sampling::SplitMix64;
use tiller_model::train::{
    checkpoint_dir, prune_checkpoints, resume_checkpoint, start_or_resume, write_atomically, AdamW,
    MetricsWriter, OptimConfig, ScheduleConfig, TrainConfig, TrainState, OPTIMIZER_FILE,
};
use tiller_model::DType;
use tiller_reward::Reward;

use crate::error::{PolicyError, Result};
use crate::rl::config::{RewardConfig, RolloutConfig};
use crate::rl::rollout::{
    apply_missing_eos_penalty, load_prompts, log_samples, rollout, truncate_samples_log, Rollout,
    RolloutPrompt, Sample,
};
use crate::sft::SftLora;
use crate::trainee::{load_trainee, save_final, Trainee, TraineeSpec};

pub const SAMPLES_FILE: &str = "samples.jsonl";

/// The parts of an RL config every trainer shares.
pub struct RunSpec<'a> {
    pub model: &'a Path,
    pub out: &'a PathBuf,
    pub device: &'a str,
    pub dtype: DType,
    pub seed: u64,
    pub lora: Option<&'a SftLora>,
    pub rollout: &'a RolloutConfig,
    pub reward: &'a RewardConfig,
    pub train: &'a TrainConfig,
    pub optim: &'a OptimConfig,
    pub schedule: ScheduleConfig,
    /// The resolved config, written as `<out>/<config_name>`.
    pub config_toml: String,
    pub config_name: &'a str,
}

impl RunSpec<'_> {
    pub(crate) fn trainee_spec(&self) -> TraineeSpec<'_> {
        TraineeSpec {
            model: self.model,
            out: self.out,
            device: self.device,
            dtype: self.dtype,
            seed: self.seed,
            lora: self.lora,
        }
    }
}

/// A run in progress.
pub struct Run {
    pub tokenizer: Tokenizer,
    pub prompts: Vec<RolloutPrompt>,
    pub(crate) trainee: Trainee,
    pub reward: Box<dyn Reward>,
    pub optimizer: AdamW,
    pub sampler: BatchSampler,
    pub state: TrainState,
    pub rng: SplitMix64,
    pub metrics: MetricsWriter,
    pub samples_path: PathBuf,
    /// The checkpoint this run resumed from.
    pub resumed_from: Option<PathBuf>,
}

impl Run {
    /// Sets up a fresh run, or resumes from the newest checkpoint in `spec.out`. The
    /// reward is `reward` when given, else the one `[reward]` configures.
    pub fn start(spec: &RunSpec, reward: Option<Box<dyn Reward>>, resume: bool) -> Result<Self> {
        let out = spec.out;
        std::fs::create_dir_all(out).map_err(|e| PolicyError::io(out, e))?;
        let resume_dir = resume_checkpoint(out, resume)?;
        let config_path = out.join(spec.config_name);
        std::fs::write(&config_path, &spec.config_toml)
            .map_err(|e| PolicyError::io(&config_path, e))?;

        let tokenizer = Tokenizer::from_dir(spec.model)?;
        let prompts = load_prompts(spec.rollout, &tokenizer)?;
        let trainee = load_trainee(&spec.trainee_spec(), resume_dir.as_deref())?;
        let reward = match reward {
            Some(r) => r,
            None => spec.reward.build(spec.device, spec.dtype)?,
        };
        let mut optimizer = AdamW::new(trainee.params(), spec.optim);
        let (sampler, state) = start_or_resume(
            prompts.len(),
            spec.train,
            spec.seed,
            spec.schedule,
            &mut optimizer,
            resume_dir.as_deref(),
        )?;
        let metrics = MetricsWriter::open(
            &out.join("metrics.jsonl"),
            resume_dir.as_ref().map(|_| state.step),
        )?;
        let samples_path = out.join(SAMPLES_FILE);
        if resume_dir.is_some() {
            truncate_samples_log(&samples_path, state.step)?;
        } else if samples_path.exists() {
            std::fs::remove_file(&samples_path).map_err(|e| PolicyError::io(&samples_path, e))?;
        }
        tracing::info!(
            "{} prompts, reward {}, {} trainable parameters ({})",
            prompts.len(),
            reward.name(),
            optimizer.numel(),
            if trainee.lora.is_some() {
                "LoRA adapters"
            } else {
                "full fine-tuning"
            }
        );
        Ok(Run {
            tokenizer,
            prompts,
            trainee,
            reward,
            optimizer,
            sampler,
            rng: SplitMix64(state.rng),
            state,
            metrics,
            samples_path,
            resumed_from: resume_dir,
        })
    }

    /// The next step's rollout: the next batch of prompts, `samples_per_prompt` samples
    /// each, seeded by `(seed, step)`, scored (with the missing-EOS penalty applied).
    pub fn rollout(&mut self, spec: &RunSpec, samples_per_prompt: usize) -> Result<Rollout> {
        let step = self.state.step + 1;
        let picked = self.sampler.next_batch();
        let generation = spec.rollout.generation(
            &self.tokenizer,
            &self.trainee.lm.config,
            step_seed(spec.seed, step, 0),
        );
        self.trainee.set_training(false);
        let mut out = rollout(
            &self.trainee.lm,
            &self.tokenizer,
            &self.prompts,
            &picked,
            samples_per_prompt,
            &generation,
            spec.rollout.generation_batch_size.unwrap_or(0),
            self.reward.as_ref(),
        )?;
        if let Some(penalty) = spec.reward.missing_eos_penalty {
            apply_missing_eos_penalty(&mut out.samples, penalty);
        }
        Ok(out)
    }

    /// Seeds torch for the step's updates (LoRA dropout) from the trainer RNG.
    pub fn begin_updates(&mut self) {
        tch::manual_seed((self.rng.next_u64() >> 1) as i64);
        self.trainee.set_training(true);
    }

    /// Records a finished step in the train state.
    pub fn end_step(&mut self, tokens: u64) {
        self.state.step += 1;
        self.state.optimizer_steps = self.optimizer.steps();
        self.state.data = self.sampler.position();
        self.state.rng = self.rng.0;
        self.state.num_tokens += tokens;
    }

    /// Writes `checkpoint-<step>` (policy, optimizer, train state) and prunes old ones.
    pub fn checkpoint(&self, spec: &RunSpec) -> Result<()> {
        self.checkpoint_with(spec, &|_| Ok(()))
    }

    /// [`Run::checkpoint`] plus whatever `extra` writes into the checkpoint directory
    /// before it is made visible (PPO's critic, its optimizer and KL controller).
    pub fn checkpoint_with(
        &self,
        spec: &RunSpec,
        extra: &dyn Fn(&Path) -> Result<()>,
    ) -> Result<()> {
        write_atomically(
            &checkpoint_dir(spec.out, self.state.step),
            |dir| -> Result<()> {
                self.trainee.save(dir, spec.model)?;
                self.optimizer.save(&dir.join(OPTIMIZER_FILE))?;
                extra(dir)?;
                Ok(self.state.write(dir)?)
            },
        )?;
        prune_checkpoints(spec.out, spec.train.keep_checkpoints)?;
        Ok(())
    }

    /// After a step's update (and [`Run::end_step`]): writes the window's means to
    /// `metrics.jsonl` every `log_every` steps and at the last step, and the step's
    /// completions with the per-sample `columns` to `samples.jsonl` every `samples_every`
    /// steps and at step 1.
    pub fn log_step(
        &mut self,
        spec: &RunSpec,
        window: &mut MetricWindow,
        samples: &[Sample],
        columns: &[(&str, &[f64])],
    ) -> Result<()> {
        let step = self.state.step;
        let t = spec.train;
        if step % t.log_every == 0 || step == self.state.total_steps {
            let mut values = window.drain();
            values.push(("epoch".into(), self.state.data.epoch_fraction()));
            values.push(("num_tokens".into(), self.state.num_tokens as f64));
            write_metrics(&mut self.metrics, step, values)?;
        }
        let samples_every = spec.rollout.samples_every.unwrap_or(t.log_every);
        if samples_every > 0 && (step % samples_every == 0 || step == 1) {
            log_samples(&self.samples_path, step, &self.prompts, samples, columns)?;
        }
        Ok(())
    }

    /// Writes the final model into `spec.out`.
    pub fn finish(self, spec: &RunSpec) -> Result<()> {
        save_final(&spec.trainee_spec(), self.trainee)
    }
}

/// The seed of `(seed, step, stream)`: stream 0 samples the rollout, stream `1 + i` orders
/// the minibatches of update epoch `i`.
pub fn step_seed(seed: u64, step: u64, stream: u64) -> u64 {
    let mut rng = SplitMix64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let base = rng.next_u64();
    SplitMix64(base ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

/// `rows` row indices shuffled with `seed` and cut into `count` near-equal minibatches.
pub fn minibatches(rows: usize, count: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..rows).collect();
    let mut rng = SplitMix64(seed);
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let count = count.clamp(1, rows.max(1));
    let size = rows.div_ceil(count);
    order.chunks(size.max(1)).map(<[usize]>::to_vec).collect()
}

/// Metrics averaged over the steps of a logging window.
#[derive(Default)]
pub struct MetricWindow {
    sums: BTreeMap<String, (f64, u64)>,
}

impl MetricWindow {
    /// Adds one observation (non-finite values are left out of the mean).
    pub fn add(&mut self, key: &str, value: f64) {
        if value.is_finite() {
            let e = self.sums.entry(key.to_owned()).or_insert((0.0, 0));
            e.0 += value;
            e.1 += 1;
        }
    }

    /// The means so far, then an empty window.
    pub fn drain(&mut self) -> Vec<(String, f64)> {
        let out = self
            .sums
            .iter()
            .map(|(k, (s, n))| (k.clone(), s / (*n).max(1) as f64))
            .collect();
        self.sums.clear();
        out
    }
}

/// Writes a drained window plus `extra` values as one `metrics.jsonl` line.
pub fn write_metrics(
    metrics: &mut MetricsWriter,
    step: u64,
    values: Vec<(String, f64)>,
) -> Result<()> {
    let refs: Vec<(&str, f64)> = values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    Ok(metrics.write(step, &refs)?)
}

/// What a progress bar shows after each step.
#[derive(Debug, Clone)]
pub struct RlProgress {
    pub step: u64,
    pub total_steps: u64,
    /// Mean score of the step's completions.
    pub reward: f64,
    /// Mean per-token KL to the reference, when there is one.
    pub kl: Option<f64>,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RlSummary {
    pub out: PathBuf,
    pub steps: u64,
    /// The mean score of every step's rollout, in order.
    pub mean_scores: Vec<f64>,
    pub skipped_updates: u64,
    /// Generated tokens per second of generation over the run.
    pub rollout_tokens_per_second: f64,
    pub seconds_generation: f64,
    pub seconds_scoring: f64,
    pub seconds_training: f64,
    /// Completion tokens generated by this process (a resumed run counts its own steps).
    pub generated_tokens: u64,
}

impl RlSummary {
    /// An empty summary of a run writing into `out`.
    pub(crate) fn new(out: &Path) -> Self {
        RlSummary {
            out: out.to_owned(),
            steps: 0,
            mean_scores: vec![],
            skipped_updates: 0,
            rollout_tokens_per_second: 0.0,
            seconds_generation: 0.0,
            seconds_scoring: 0.0,
            seconds_training: 0.0,
            generated_tokens: 0,
        }
    }

    /// The number of steps in a quarter of the run (at least 1), and the mean score over
    /// the first and over the last that many steps; None before the first step.
    pub fn reward_first_last(&self) -> Option<(usize, f64, f64)> {
        let scores = &self.mean_scores;
        if scores.is_empty() {
            return None;
        }
        let n = (scores.len() / 4).max(1);
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
        Some((n, mean(&scores[..n]), mean(&scores[scores.len() - n..])))
    }

    /// Adds one step: its mean score, the rollout's times and tokens, the update's time.
    pub(crate) fn record(&mut self, mean_score: f64, rollout: &Rollout, training_seconds: f64) {
        self.mean_scores.push(mean_score);
        self.seconds_generation += rollout.generation_seconds;
        self.seconds_scoring += rollout.scoring_seconds;
        self.seconds_training += training_seconds;
        self.generated_tokens += rollout.generated_tokens as u64;
        self.rollout_tokens_per_second =
            self.generated_tokens as f64 / self.seconds_generation.max(1e-9);
    }
}
