//! The PPO loop, written out on the shared RL run ([`Run`]). Per step: draw
//! `train.batch_size` prompts, sample one completion each with the KV-cache generator,
//! score them with the `Reward`, compute the reference log-probs and the critic's values,
//! shape per-token rewards (KL penalty with the score on the last token), GAE and
//! whitening, then the PPO epochs; update the KL coefficient, log, and checkpoint.
//!
//! A checkpoint holds what every RL run saves (actor, its optimizer, train state with RNG
//! and prompt position) plus `critic/` (a reward-model directory), the critic's optimizer
//! and `ppo_state.json` (the KL controller and the critic's step count). Generation seeds
//! and minibatch orders are functions of `(seed, step)`, so a resumed run equals an
//! uninterrupted one.
//!
//! Data parallel: each rank generates for its share of the step's prompts and scores them
//! with its own reward model; whitening, the step's statistics and so the adaptive KL
//! controller use sums over every rank, the minibatches are drawn over the whole step's
//! rows, and the gradients of actor and critic are averaged, so N ranks equal one process.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tiller_model::train::{AdamW, TrainOptions};
use tiller_reward::Reward;

use crate::error::{PolicyError, Result};
use crate::rl::critic::Critic;
use crate::rl::kl_control::KlController;
use crate::rl::ppo::config::PpoConfig;
use crate::rl::ppo::experience::{self, Models};
use crate::rl::ppo::update::{optimize, Optimizers};
use crate::rl::reference::Reference;
use crate::rl::run::{RlProgress, RlSummary, Run};
use crate::rl::update::{align_old_logprobs, rollout_metrics};

const PPO_STATE_FILE: &str = "ppo_state.json";
const PPO_STATE_VERSION: u32 = 1;
/// The critic inside a checkpoint and inside the finished run directory.
pub const CRITIC_DIR: &str = "critic";
const CRITIC_OPTIMIZER_FILE: &str = "critic_optimizer.safetensors";

/// What a PPO checkpoint adds to the shared train state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PpoState {
    format_version: u32,
    kl: KlController,
    critic_optimizer_steps: u64,
}

impl PpoState {
    fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(PPO_STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::io(&path, e))?;
        let state: PpoState = serde_json::from_str(&text)
            .map_err(|e| PolicyError::Invalid(format!("{}: {e}", path.display())))?;
        if state.format_version != PPO_STATE_VERSION {
            return Err(PolicyError::Invalid(format!(
                "{}: format_version {} is not supported (expected {PPO_STATE_VERSION})",
                path.display(),
                state.format_version
            )));
        }
        Ok(state)
    }
}

/// The critic, its optimizer and the PPO state into checkpoint directory `dir`.
fn save_ppo_parts(
    dir: &Path,
    critic: &Critic,
    critic_opt: &AdamW,
    state: &PpoState,
    tokenizer_dir: &Path,
) -> Result<()> {
    let critic_dir = dir.join(CRITIC_DIR);
    critic.save(&critic_dir, tokenizer_dir)?;
    // The checkpoint writer syncs the files at its top level; the critic's are one down.
    for entry in std::fs::read_dir(&critic_dir).map_err(|e| PolicyError::io(&critic_dir, e))? {
        let path = entry.map_err(|e| PolicyError::io(&critic_dir, e))?.path();
        let file = std::fs::File::open(&path).map_err(|e| PolicyError::io(&path, e))?;
        file.sync_all().map_err(|e| PolicyError::io(&path, e))?;
    }
    critic_opt.save(&dir.join(CRITIC_OPTIMIZER_FILE))?;
    let path = dir.join(PPO_STATE_FILE);
    let text =
        serde_json::to_string_pretty(state).map_err(|e| PolicyError::Invalid(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| PolicyError::io(&path, e))
}

/// Runs PPO as `config` says (the reward `[reward]` describes); with `resume`, continues
/// from the newest checkpoint in `config.out`. `on_step` sees every step.
pub fn train(
    config: &PpoConfig,
    resume: bool,
    on_step: &mut dyn FnMut(&RlProgress),
) -> Result<RlSummary> {
    train_with(config, None, resume, on_step)
}

/// [`train`] with `reward` (any [`Reward`], e.g. a closure) instead of `[reward]`'s.
pub fn train_with(
    config: &PpoConfig,
    reward: Option<Box<dyn Reward>>,
    resume: bool,
    on_step: &mut dyn FnMut(&RlProgress),
) -> Result<RlSummary> {
    train_in(config, reward, &TrainOptions::resume(resume), on_step)
}

/// [`train_with`] as one process of a data-parallel job (`options.collective`).
pub fn train_in(
    config: &PpoConfig,
    reward: Option<Box<dyn Reward>>,
    options: &TrainOptions,
    on_step: &mut dyn FnMut(&RlProgress),
) -> Result<RlSummary> {
    config.validate().map_err(PolicyError::Invalid)?;
    let spec = config.spec()?;
    let mut run = Run::start(&spec, reward, options)?;
    let reference = Reference::load(&config.reference, &config.model, &run.trainee)?;
    let critic_dir = match run.resumed_from() {
        Some(dir) => dir.join(CRITIC_DIR),
        None => config.critic.model.clone().unwrap_or(config.model.clone()),
    };
    let device = config.device.device();
    let critic = Critic::load(&critic_dir, device, config.dtype.kind(), config.seed as i64)?;
    if options.collective.world_size() > 1 {
        // Every rank's critic starts from rank 0's (as the actor does, in `Run::start`).
        let params: Vec<tch::Tensor> = critic.params().into_iter().map(|(_, p)| p).collect();
        tch::no_grad(|| options.collective.broadcast(&params))?;
    }
    let critic_optim = config.critic_optim();
    let mut critic_opt = AdamW::new(critic.params(), &critic_optim);
    let mut ppo_state = PpoState {
        format_version: PPO_STATE_VERSION,
        kl: KlController::new(config.ppo.kl),
        critic_optimizer_steps: 0,
    };
    if let Some(dir) = run.resumed_from() {
        ppo_state = PpoState::read(dir)?;
        let path = dir.join(CRITIC_OPTIMIZER_FILE);
        critic_opt.load(&path, ppo_state.critic_optimizer_steps)?;
    }
    tracing::info!(
        "critic: {} parameters from {}",
        critic_opt.numel(),
        critic_dir.display()
    );

    let mut summary = RlSummary::new(&config.out);
    while !run.rt.done() {
        let step = run.rt.state.step + 1;
        let total_steps = run.rt.total_steps();
        let actor_lr = run.rt.begin_step();
        let critic_lr = config
            .schedule
            .lr(critic_optim.lr, run.rt.state.step, total_steps);
        let mut rollout = run.rollout(&spec, 1)?;
        let mut samples = std::mem::take(&mut rollout.samples);

        let started = Instant::now();
        let (micro, temperature) = (config.ppo.micro_batch_size, config.rollout.temperature);
        align_old_logprobs(&run, &mut samples, micro, temperature)?;
        run.begin_updates();
        let kl_coef = ppo_state.kl.value;
        let models = Models {
            actor: &run.trainee,
            reference: &reference,
            critic: &critic,
            temperature: config.rollout.temperature,
            pad_id: run.tokenizer.pad_id,
        };
        let exp = experience::build(
            &models,
            samples,
            &config.ppo,
            kl_coef,
            config.ppo.micro_batch_size,
            options.collective.as_ref(),
        )?;
        let frozen_seconds = started.elapsed().as_secs_f64();
        let mut opt = Optimizers {
            actor: &mut run.optimizer,
            critic: &mut critic_opt,
            actor_lr,
            critic_lr,
            max_grad_norm: config.optim.max_grad_norm,
            on_non_finite: config.train.on_non_finite,
            collective: run.rt.collective(),
        };
        let update = optimize(&models, &exp, &config.ppo, &mut opt, config.seed, step)?;
        let training_seconds = started.elapsed().as_secs_f64();
        ppo_state.kl.update(exp.stats.kl, exp.stats.sequences);
        ppo_state.critic_optimizer_steps = critic_opt.steps();

        rollout.samples = exp.samples;
        rollout_metrics(
            &mut run.rt.window,
            &rollout,
            training_seconds,
            options.collective.as_ref(),
        )?;
        let s = &exp.stats;
        for (key, value) in [
            ("objective/kl", s.kl),
            ("objective/entropy", s.entropy),
            ("objective/non_score_reward", s.non_score_reward),
            ("objective/rlhf_reward", s.scores + s.non_score_reward),
            ("objective/scores", s.scores),
            ("objective/kl_coef", kl_coef),
            ("policy/approxkl_avg", update.approxkl),
            ("policy/clipfrac_avg", update.clipfrac),
            ("policy/entropy_avg", update.entropy),
            ("loss/policy_avg", update.policy_loss),
            ("loss/value_avg", update.value_loss),
            ("val/clipfrac_avg", update.value_clipfrac),
            ("val/ratio", update.ratio),
            ("val/num_eos_tokens", s.num_eos as f64),
            ("grad_norm", update.grad_norm),
            ("time/reference_and_values_s", frozen_seconds),
            ("critic_learning_rate", critic_lr),
        ] {
            run.rt.window.add(key, value);
        }
        summary.record(s.scores, &rollout, training_seconds);
        summary.skipped_updates += update.skipped as u64;
        run.end_step(
            &spec,
            rollout.generated_tokens as u64,
            &rollout.samples,
            &[("kl", &exp.sequence_kl), ("value", &exp.first_values)],
        )?;
        if run.rt.saves_now() {
            run.checkpoint_with(&spec, &|dir| {
                save_ppo_parts(dir, &critic, &critic_opt, &ppo_state, &config.model)
            })?;
        }
        on_step(&RlProgress {
            step,
            total_steps,
            reward: s.scores,
            kl: Some(s.kl),
        });
    }
    summary.steps = run.rt.state.step;
    drop(reference);
    if run.rt.is_main() {
        critic.save(&config.out.join(CRITIC_DIR), &config.model)?;
    }
    run.finish(&spec)?;
    Ok(summary)
}
