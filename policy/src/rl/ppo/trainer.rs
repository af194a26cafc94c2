//! The PPO loop, written out. Per step: draw `train.batch_size` prompts, sample one
//! completion each with the KV-cache generator, score them with the `Reward`, compute the
//! reference log-probs and the critic's values, shape per-token rewards (KL penalty with
//! the score on the last token), GAE and whitening, then the PPO epochs; update the KL
//! coefficient, log, and checkpoint on schedule.
//!
//! A checkpoint holds the actor (HF directory or PEFT adapter), `critic/` (a reward-model
//! directory), both optimizers, the KL controller and the critic's step count
//! (`ppo_state.json`), and the train state (RNG, prompt position, step). Every random
//! choice — generation seeds, minibatch order, LoRA dropout — is drawn from the RNG saved
//! there, so a resumed run equals an uninterrupted one.

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tiller_data::Tokenizer;
use tiller_model::parse_device;
use tiller_model::sampling::SplitMix64;
use tiller_model::train::{
    checkpoint_dir, prune_checkpoints, resume_checkpoint, start_or_resume, write_atomically, AdamW,
    MetricsWriter, OPTIMIZER_FILE,
};
use tiller_reward::Reward;

use crate::error::{PolicyError, Result};
use crate::rl::critic::Critic;
use crate::rl::kl_control::KlController;
use crate::rl::ppo::config::PpoConfig;
use crate::rl::ppo::experience::{self, ExperienceStats, Models};
use crate::rl::ppo::update::{optimize, Optimizers, UpdateStats};
use crate::rl::reference::Reference;
use crate::rl::rollout::{
    apply_missing_eos_penalty, load_prompts, log_samples, rollout, truncate_samples_log,
};
use crate::trainee::{load_trainee, save_final};

const PPO_STATE_FILE: &str = "ppo_state.json";
const PPO_STATE_VERSION: u32 = 1;
/// The critic inside a checkpoint and inside the finished run directory.
pub const CRITIC_DIR: &str = "critic";
const CRITIC_OPTIMIZER_FILE: &str = "critic_optimizer.safetensors";

/// What a checkpoint adds to the shared train state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PpoState {
    format_version: u32,
    kl: KlController,
    critic_optimizer_steps: u64,
    /// Rollouts trained on so far (TRL's `episode`).
    episodes: u64,
}

#[derive(Debug, Clone)]
pub struct PpoProgress {
    pub step: u64,
    pub total_steps: u64,
    /// Mean score of the step's completions.
    pub score: f64,
    /// Mean summed KL to the reference of the step's completions.
    pub kl: f64,
}

#[derive(Debug, Clone)]
pub struct PpoSummary {
    pub out: PathBuf,
    pub steps: u64,
    /// Per step of this run, in order: the mean score and the mean summed KL.
    pub scores: Vec<f64>,
    pub kls: Vec<f64>,
    pub skipped_updates: u64,
    /// Generated tokens per second of generation, over the run.
    pub rollout_tokens_per_second: f64,
}

/// Runs PPO with the reward `config.reward` describes.
pub fn train(
    config: &PpoConfig,
    resume: bool,
    on_step: &mut dyn FnMut(&PpoProgress),
) -> Result<PpoSummary> {
    let reward = config.reward.build(&config.device, config.dtype)?;
    train_with_reward(config, reward.as_ref(), resume, on_step)
}

/// Runs PPO against any `reward`; with `resume`, continues from the newest checkpoint in
/// `config.out`. `on_step` sees every step (for a progress bar).
pub fn train_with_reward(
    config: &PpoConfig,
    reward: &dyn Reward,
    resume: bool,
    on_step: &mut dyn FnMut(&PpoProgress),
) -> Result<PpoSummary> {
    let out = &config.out;
    std::fs::create_dir_all(out).map_err(|e| PolicyError::io(out, e))?;
    let resume_dir = resume_checkpoint(out, resume)?;
    let config_path = out.join("ppo_config.toml");
    std::fs::write(&config_path, config.to_toml()?)
        .map_err(|e| PolicyError::io(&config_path, e))?;

    let tokenizer = Tokenizer::from_dir(&config.model)?;
    let prompts = load_prompts(&config.rollout, &tokenizer)?;
    let trainee = load_trainee(&config.trainee_spec(), resume_dir.as_deref())?;
    let reference = Reference::load(&config.reference, &config.model, &trainee)?;
    let device = parse_device(&config.device)?;
    let critic_dir = match &resume_dir {
        Some(dir) => dir.join(CRITIC_DIR),
        None => config.critic.model.clone().unwrap_or(config.model.clone()),
    };
    let critic = Critic::load(&critic_dir, device, config.dtype.kind(), config.seed as i64)?;
    let mut actor_opt = AdamW::new(trainee.params(), &config.optim);
    let critic_optim = config.critic_optim();
    let mut critic_opt = AdamW::new(critic.params(), &critic_optim);
    tracing::info!(
        "PPO: actor {} parameters ({}), critic {} parameters from {}, reward {}",
        actor_opt.numel(),
        if trainee.lora.is_some() {
            "LoRA adapters"
        } else {
            "full"
        },
        critic_opt.numel(),
        critic_dir.display(),
        reward.name()
    );

    let t = &config.train;
    let (mut sampler, mut state) = start_or_resume(
        prompts.len(),
        t,
        config.seed,
        config.schedule,
        &mut actor_opt,
        resume_dir.as_deref(),
    )?;
    let total_steps = state.total_steps;
    let mut ppo_state = PpoState {
        format_version: PPO_STATE_VERSION,
        kl: KlController::new(config.ppo.kl),
        critic_optimizer_steps: 0,
        episodes: 0,
    };
    let samples_path = out.join("samples.jsonl");
    if let Some(dir) = &resume_dir {
        let path = dir.join(PPO_STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::io(&path, e))?;
        ppo_state = serde_json::from_str(&text)
            .map_err(|e| PolicyError::Invalid(format!("{}: {e}", path.display())))?;
        if ppo_state.format_version != PPO_STATE_VERSION {
            return Err(PolicyError::Invalid(format!(
                "{}: format_version {} is not supported (expected {PPO_STATE_VERSION})",
                path.display(),
                ppo_state.format_version
            )));
        }
        critic_opt.load(
            &dir.join(CRITIC_OPTIMIZER_FILE),
            ppo_state.critic_optimizer_steps,
        )?;
        truncate_samples_log(&samples_path, state.step)?;
    } else if samples_path.exists() {
        std::fs::remove_file(&samples_path).map_err(|e| PolicyError::io(&samples_path, e))?;
    }
    let mut rng = SplitMix64(state.rng);
    let mut metrics = MetricsWriter::open(
        &out.join("metrics.jsonl"),
        resume_dir.as_ref().map(|_| state.step),
    )?;
    let models = Models {
        actor: &trainee,
        reference: &reference,
        critic: &critic,
        temperature: config.rollout.temperature,
        pad_id: tokenizer.pad_id,
    };
    let chunk = config
        .ppo
        .micro_batch_size
        .or(config.rollout.generation_batch_size)
        .unwrap_or(0);

    let run_started = Instant::now();
    let (mut episodes_this_run, mut generated, mut generation_seconds) = (0u64, 0usize, 0.0);
    let mut summary = PpoSummary {
        out: out.clone(),
        steps: 0,
        scores: Vec::new(),
        kls: Vec::new(),
        skipped_updates: 0,
        rollout_tokens_per_second: 0.0,
    };
    let mut window = Window::default();
    while state.step < total_steps {
        let step = state.step + 1;
        tch::manual_seed((rng.next_u64() >> 1) as i64);
        let generation = config
            .rollout
            .generation(&tokenizer, &trainee.lm.config, rng.next_u64());
        let picked = sampler.next_batch();
        trainee.set_training(false);
        let mut r = rollout(
            &trainee.lm,
            &tokenizer,
            &prompts,
            &picked,
            1,
            &generation,
            config.rollout.generation_batch_size.unwrap_or(0),
            reward,
        )?;
        if let Some(penalty) = config.reward.missing_eos_penalty {
            apply_missing_eos_penalty(&mut r.samples, penalty);
        }
        let passes_started = Instant::now();
        let exp = experience::build(&models, r.samples, &config.ppo, ppo_state.kl.value, chunk)?;
        let scoring_seconds = r.scoring_seconds + passes_started.elapsed().as_secs_f64();

        let training_started = Instant::now();
        let mut opt = Optimizers {
            actor: &mut actor_opt,
            critic: &mut critic_opt,
            actor_lr: config.schedule.lr(config.optim.lr, state.step, total_steps),
            critic_lr: config.schedule.lr(critic_optim.lr, state.step, total_steps),
            max_grad_norm: config.optim.max_grad_norm,
            on_non_finite: t.on_non_finite,
        };
        let (actor_lr, critic_lr) = (opt.actor_lr, opt.critic_lr);
        let update = optimize(&models, &exp, &config.ppo, &mut opt, &mut rng, step)?;
        let training_seconds = training_started.elapsed().as_secs_f64();
        let kl_coef = ppo_state.kl.value;
        ppo_state.kl.update(exp.stats.kl, exp.samples.len());

        let n = exp.samples.len() as u64;
        ppo_state.episodes += n;
        ppo_state.critic_optimizer_steps = critic_opt.steps();
        episodes_this_run += n;
        generated += r.generated_tokens;
        generation_seconds += r.generation_seconds;
        state.step = step;
        state.optimizer_steps = actor_opt.steps();
        state.data = sampler.position();
        state.rng = rng.0;
        state.num_tokens += r.generated_tokens as u64;
        summary.scores.push(exp.stats.scores);
        summary.kls.push(exp.stats.kl);
        summary.skipped_updates += update.skipped as u64;
        window.add(
            &exp.stats,
            &update,
            [
                r.generation_seconds,
                scoring_seconds,
                training_seconds,
                r.generated_tokens as f64,
            ],
        );

        if step % t.log_every == 0 || step == total_steps {
            let mut values = window.named();
            values.extend([
                ("objective/kl_coef".to_owned(), kl_coef),
                ("lr".to_owned(), actor_lr),
                ("critic_lr".to_owned(), critic_lr),
                ("episode".to_owned(), ppo_state.episodes as f64),
                (
                    "eps".to_owned(),
                    episodes_this_run as f64 / run_started.elapsed().as_secs_f64().max(1e-9),
                ),
                ("epoch".to_owned(), state.data.epoch_fraction()),
            ]);
            let refs: Vec<(&str, f64)> = values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            metrics.write(step, &refs)?;
            window = Window::default();
        }
        let every = config.ppo.log_samples_every;
        if every > 0 && (step % every == 0 || step == 1) {
            log_samples(
                &samples_path,
                step,
                &prompts,
                &exp.samples,
                &[("kl", &exp.sequence_kl), ("value", &exp.first_values)],
            )?;
        }
        if t.save_every > 0 && step % t.save_every == 0 {
            let text = serde_json::to_string_pretty(&ppo_state)
                .map_err(|e| PolicyError::Invalid(e.to_string()))?;
            write_atomically(&checkpoint_dir(out, step), |dir| -> Result<()> {
                trainee.save(dir, &config.model)?;
                actor_opt.save(&dir.join(OPTIMIZER_FILE))?;
                critic.save(&dir.join(CRITIC_DIR), &config.model)?;
                critic_opt.save(&dir.join(CRITIC_OPTIMIZER_FILE))?;
                let path = dir.join(PPO_STATE_FILE);
                std::fs::write(&path, &text).map_err(|e| PolicyError::io(&path, e))?;
                Ok(state.write(dir)?)
            })?;
            prune_checkpoints(out, t.keep_checkpoints)?;
        }
        on_step(&PpoProgress {
            step,
            total_steps,
            score: exp.stats.scores,
            kl: exp.stats.kl,
        });
    }

    summary.steps = state.step;
    summary.rollout_tokens_per_second = generated as f64 / f64::max(generation_seconds, 1e-9);
    drop(models);
    drop(reference);
    critic.save(&out.join(CRITIC_DIR), &config.model)?;
    save_final(&config.trainee_spec(), trainee)?;
    Ok(summary)
}

/// Sums of the logged numbers since the last log line.
#[derive(Default)]
struct Window {
    steps: f64,
    exp: [f64; 6],
    update: [f64; 8],
    /// generation, scoring and training seconds; generated tokens.
    time: [f64; 4],
}

impl Window {
    fn add(&mut self, e: &ExperienceStats, u: &UpdateStats, time: [f64; 4]) {
        self.steps += 1.0;
        let exp = [
            e.kl,
            e.entropy,
            e.non_score_reward,
            e.scores,
            e.num_eos as f64,
            e.mean_length,
        ];
        let update = [
            u.approxkl,
            u.clipfrac,
            u.policy_loss,
            u.value_loss,
            u.value_clipfrac,
            u.entropy,
            u.ratio,
            u.grad_norm,
        ];
        for (s, v) in self.exp.iter_mut().zip(exp) {
            *s += v;
        }
        for (s, v) in self.update.iter_mut().zip(update) {
            *s += v;
        }
        for (s, v) in self.time.iter_mut().zip(time) {
            *s += v;
        }
    }

    /// Means per step under TRL's names, plus the time split and rollout throughput.
    fn named(&self) -> Vec<(String, f64)> {
        let n = self.steps.max(1.0);
        let [kl, entropy, non_score, scores, num_eos, length] = self.exp.map(|v| v / n);
        let [approxkl, clipfrac, pg, vf, vf_clipfrac, pentropy, ratio, grad_norm] =
            self.update.map(|v| v / n);
        let [generation, scoring, training, tokens] = self.time;
        [
            ("objective/kl", kl),
            ("objective/entropy", entropy),
            ("objective/non_score_reward", non_score),
            ("objective/rlhf_reward", scores + non_score),
            ("objective/scores", scores),
            ("policy/approxkl_avg", approxkl),
            ("policy/clipfrac_avg", clipfrac),
            ("loss/policy_avg", pg),
            ("loss/value_avg", vf),
            ("val/clipfrac_avg", vf_clipfrac),
            ("policy/entropy_avg", pentropy),
            ("val/ratio", ratio),
            ("val/num_eos_tokens", num_eos),
            ("completions/mean_length", length),
            ("grad_norm", grad_norm),
            ("time/generation", generation / n),
            ("time/scoring", scoring / n),
            ("time/training", training / n),
            ("rollout/tokens_per_second", tokens / generation.max(1e-9)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}
