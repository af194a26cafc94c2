//! What every online RL run (PPO, GRPO, RLOO) does around its update rule: the shared
//! [`Runtime`] (run directory, resume, optimizer moments, resumable prompt order, trainer
//! RNG, metrics, progress, checkpoints, data parallelism) plus the policy, the reward and
//! the rollouts: one per step, with a seed derived from `(seed, step)`, and the
//! completions logged to `samples.jsonl`.
//!
//! Resume restores the policy, the AdamW moments, the prompt position and the trainer RNG
//! (the per-step torch seed for LoRA dropout); generation seeds and minibatch orders are
//! functions of `(seed, step)`, so a resumed run samples and trains exactly as an
//! uninterrupted one.

use std::path::{Path, PathBuf};

use tiller_data::Tokenizer;
use tiller_model::sampling::SplitMix64;
pub use tiller_model::train::MetricWindow;
use tiller_model::train::{
    AdamW, OptimConfig, RunConfig, RunDir, Runtime, ScheduleConfig, TrainConfig, TrainOptions,
};
use tiller_reward::Reward;

use crate::error::Result;
use crate::rl::config::{RewardConfig, RolloutConfig};
use crate::rl::rollout::{
    apply_missing_eos_penalty, load_prompts, log_samples, rollout, truncate_samples_log, Rollout,
    RolloutPrompt, Sample,
};
use crate::trainee::{load_trainee, save_final, Trainee};

pub const SAMPLES_FILE: &str = "samples.jsonl";

/// The parts of an RL config every trainer shares.
pub struct RunSpec<'a> {
    /// The shared sections (model, out, device, dtype, seed, train, optim, schedule, lora).
    pub run: RunConfig<'a>,
    pub rollout: &'a RolloutConfig,
    pub reward: &'a RewardConfig,
    /// The resolved config, written as `<out>/<config_name>`.
    pub config_toml: String,
    pub config_name: &'a str,
    /// The trainer's name in logs and progress lines.
    pub label: &'a str,
}

impl RunSpec<'_> {
    pub fn train(&self) -> &TrainConfig {
        self.run.train
    }
    pub fn optim(&self) -> &OptimConfig {
        self.run.optim
    }
    pub fn schedule(&self) -> ScheduleConfig {
        self.run.schedule
    }
}

/// A run in progress.
pub struct Run {
    pub tokenizer: Tokenizer,
    pub prompts: Vec<RolloutPrompt>,
    pub(crate) trainee: Trainee,
    pub reward: Box<dyn Reward>,
    pub optimizer: AdamW,
    /// The shared runtime: train state, metrics window, checkpoints, collectives.
    pub rt: Runtime,
    pub samples_path: PathBuf,
}

impl Run {
    /// Sets up a fresh run, or resumes from the newest checkpoint in `spec.run.out`. The
    /// reward is `reward` when given, else the one `[reward]` configures.
    pub fn start(
        spec: &RunSpec,
        reward: Option<Box<dyn Reward>>,
        options: &TrainOptions,
    ) -> Result<Self> {
        let out = spec.run.out;
        let dir = RunDir::open(out, spec.config_name, &spec.config_toml, options)?;
        let tokenizer = Tokenizer::from_dir(spec.run.model)?;
        let prompts = load_prompts(spec.rollout, &tokenizer)?;
        let trainee = load_trainee(&spec.run, dir.resume_from.as_deref())?;
        let reward = match reward {
            Some(r) => r,
            None => spec
                .reward
                .build(spec.run.device.as_str(), spec.run.dtype)?,
        };
        let collective = options.collective.as_ref();
        if collective.world_size() > 1 {
            // Every rank starts from rank 0's weights.
            let params: Vec<tch::Tensor> = trainee.params().into_iter().map(|(_, p)| p).collect();
            tch::no_grad(|| collective.broadcast(&params))?;
        }
        let mut optimizer = AdamW::new(trainee.params(), spec.run.optim);
        let resumed = dir.resume_from.is_some();
        let rt = dir.start(spec.label, prompts.len(), &spec.run, &mut optimizer)?;
        let samples_path = out.join(SAMPLES_FILE);
        if rt.is_main() {
            if resumed {
                truncate_samples_log(&samples_path, rt.state.step)?;
            } else if samples_path.exists() {
                std::fs::remove_file(&samples_path)
                    .map_err(|e| crate::PolicyError::io(&samples_path, e))?;
            }
        }
        tracing::info!(
            "{} prompts, reward {} ({})",
            prompts.len(),
            reward.name(),
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
            rt,
            samples_path,
        })
    }

    /// The checkpoint this run resumed from.
    pub fn resumed_from(&self) -> Option<&Path> {
        self.rt.resumed_from.as_deref()
    }

    /// The next step's rollout: this rank's share of the next batch of prompts,
    /// `samples_per_prompt` samples each, seeded by `(seed, step)`, scored (with the
    /// missing-EOS penalty applied).
    pub fn rollout(&mut self, spec: &RunSpec, samples_per_prompt: usize) -> Result<Rollout> {
        let step = self.rt.state.step + 1;
        let (first_prompt, picked) = self.rt.next_share();
        let generation = spec.rollout.generation(
            &self.tokenizer,
            &self.trainee.lm.config,
            step_seed(spec.run.seed, step, 0),
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
            first_prompt * samples_per_prompt,
            self.reward.as_ref(),
        )?;
        if let Some(penalty) = spec.reward.missing_eos_penalty {
            apply_missing_eos_penalty(&mut out.samples, penalty);
        }
        Ok(out)
    }

    /// Seeds torch for the step's updates (LoRA dropout) from the trainer RNG.
    pub fn begin_updates(&mut self) {
        self.rt.seed_torch();
        self.trainee.set_training(true);
    }

    /// Ends a step whose metrics are in `self.rt.window`: the train state, the logged
    /// means (every `log_every` steps and at the last), and the step's completions with
    /// the per-sample `columns` in `samples.jsonl` every `samples_every` steps and at step
    /// 1. `tokens`: the completion tokens this rank generated.
    pub fn end_step(
        &mut self,
        spec: &RunSpec,
        tokens: u64,
        samples: &[Sample],
        columns: &[(&str, &[f64])],
    ) -> Result<()> {
        self.rt.end_step(&self.optimizer, tokens, &[])?;
        let step = self.rt.state.step;
        let samples_every = spec.rollout.samples_every.unwrap_or(spec.train().log_every);
        if self.rt.is_main() && samples_every > 0 && (step % samples_every == 0 || step == 1) {
            log_samples(&self.samples_path, step, &self.prompts, samples, columns)?;
        }
        Ok(())
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
        self.rt
            .save_checkpoint(&self.optimizer, |dir| -> Result<()> {
                self.trainee.save(dir, spec.run.model)?;
                extra(dir)
            })
    }

    /// Writes the final model into the run directory.
    pub fn finish(self, spec: &RunSpec) -> Result<()> {
        let trainee = self.trainee;
        self.rt.finish(|_| save_final(&spec.run, trainee))?;
        Ok(())
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
