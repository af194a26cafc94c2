//! Stage kinds as typed configs, what each reads, and how each runs: one match arm per
//! kind. A stage's section is its trainer's own TOML (the same types `tiller sft`,
//! `tiller reward train` and `tiller dpo` read), with `out` set by the pipeline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tiller_policy::dpo::{self, DpoConfig};
use tiller_policy::kto::{self, KtoConfig};
use tiller_policy::rl::config::{ReferenceConfig, RewardConfig, RolloutConfig};
use tiller_policy::rl::grpo::{self, GrpoConfig};
use tiller_policy::rl::ppo::{self, PpoConfig};
use tiller_policy::rl::rloo::{self, RlooConfig};
use tiller_policy::rl::run::{RlProgress, RlSummary};
use tiller_policy::sft::{self, SftConfig};
use tiller_reward::train as reward;
use tiller_reward::RewardTrainConfig;

use crate::cli::rl_shared;
use crate::pipeline::annotations::ExportStage;
use crate::pipeline::config::StageKind;
use crate::pipeline::eval_stage::EvalStage;
use crate::pipeline::manifest::AnnotationSummary;
use crate::pipeline::progress::StepBar;

/// A stage's config, typed by kind.
#[derive(Debug, Clone)]
pub enum StageConfig {
    Sft(SftConfig),
    Reward(RewardTrainConfig),
    Dpo(DpoConfig),
    Kto(KtoConfig),
    Ppo(PpoConfig),
    Grpo(GrpoConfig),
    Rloo(RlooConfig),
    Eval(EvalStage),
    AnnotateExport(ExportStage),
}

/// What a finished stage reports.
#[derive(Debug, Default)]
pub struct StageOutcome {
    pub metrics: BTreeMap<String, f64>,
    pub annotations: Option<AnnotationSummary>,
}

/// What the runner passes into a stage.
pub struct StageRun<'a> {
    pub name: &'a str,
    /// Continue from the newest checkpoint in the stage directory.
    pub resume: bool,
    /// Test hook: end the process right after this step (see `runner::KILL_ENV`).
    pub kill_at: Option<u64>,
    /// Ranks to run a training stage as (`nproc_per_node`; see `pipeline::launched`).
    pub nproc_per_node: usize,
}

impl StageRun<'_> {
    fn after_step(&self, step: u64) {
        if self.kill_at == Some(step) {
            eprintln!(
                "{}: killed after step {step} ({})",
                self.name,
                super::runner::KILL_ENV
            );
            std::process::exit(137);
        }
    }
}

impl StageConfig {
    /// Parses a resolved stage table; `out` is the stage's directory. `at` (file:line)
    /// prefixes errors.
    pub fn parse(kind: StageKind, mut table: toml::Table, out: &Path, at: &str) -> Result<Self> {
        table.insert("out".into(), toml::Value::String(out.display().to_string()));
        fn typed<T: serde::de::DeserializeOwned>(table: toml::Table, at: &str) -> Result<T> {
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| anyhow::anyhow!("{at}: {}", e.message()))
        }
        let check =
            |r: std::result::Result<(), String>| r.map_err(|m| anyhow::anyhow!("{at}: {m}"));
        Ok(match kind {
            StageKind::Sft => {
                let c: SftConfig = typed(table, at)?;
                check(c.validate())?;
                StageConfig::Sft(c)
            }
            StageKind::Reward => {
                let c: RewardTrainConfig = typed(table, at)?;
                check(c.validate())?;
                StageConfig::Reward(c)
            }
            StageKind::Dpo => {
                let c: DpoConfig = typed(table, at)?;
                check(c.validate())?;
                StageConfig::Dpo(c)
            }
            StageKind::Kto => {
                let c: KtoConfig = typed(table, at)?;
                check(c.validate())?;
                StageConfig::Kto(c)
            }
            StageKind::Ppo => {
                let c: PpoConfig = typed(table, at)?;
                check(c.validate())?;
                StageConfig::Ppo(c)
            }
            StageKind::Grpo => {
                let c: GrpoConfig = typed(table, at)?;
                check(c.validate())?;
                StageConfig::Grpo(c)
            }
            StageKind::Rloo => {
                let c: RlooConfig = typed(table, at)?;
                check(c.validate())?;
                StageConfig::Rloo(c)
            }
            StageKind::Eval => {
                let mut c: EvalStage = typed(table, at)?;
                c.at = at.to_owned();
                c.validate()?;
                StageConfig::Eval(c)
            }
            StageKind::AnnotateExport => StageConfig::AnnotateExport(typed(table, at)?),
        })
    }

    /// The output later stages refer to as `"stages.NAME"`.
    pub fn output(&self) -> PathBuf {
        match self {
            StageConfig::Sft(c) => c.out.clone(),
            StageConfig::Reward(c) => c.out.clone(),
            StageConfig::Dpo(c) => c.out.clone(),
            StageConfig::Kto(c) => c.out.clone(),
            StageConfig::Ppo(c) => c.out.clone(),
            StageConfig::Grpo(c) => c.out.clone(),
            StageConfig::Rloo(c) => c.out.clone(),
            StageConfig::Eval(c) => c.out.clone(),
            StageConfig::AnnotateExport(c) => c.pairs_path(),
        }
    }

    /// Model directories the stage reads, by role.
    pub fn models(&self) -> Vec<(&'static str, PathBuf)> {
        match self {
            StageConfig::Sft(c) => vec![("model", c.model.clone())],
            StageConfig::Reward(c) => vec![("model", c.model.clone())],
            StageConfig::Dpo(c) => {
                let mut m = vec![("model", c.model.clone())];
                m.extend(c.reference.model.clone().map(|r| ("reference.model", r)));
                m
            }
            StageConfig::Kto(c) => {
                let mut m = vec![("model", c.model.clone())];
                m.extend(c.reference.model.clone().map(|r| ("reference.model", r)));
                m
            }
            StageConfig::Ppo(c) => {
                let mut m = rl_models(&c.model, &c.reference, &c.reward);
                m.extend(c.critic.model.clone().map(|r| ("critic.model", r)));
                m
            }
            StageConfig::Grpo(c) => rl_models(&c.model, &c.reference, &c.reward),
            StageConfig::Rloo(c) => rl_models(&c.model, &c.reference, &c.reward),
            StageConfig::Eval(c) => c.models(),
            StageConfig::AnnotateExport(_) => Vec::new(),
        }
    }

    /// Data files the stage reads, by role (the annotation database is not one: its
    /// export is hashed instead, after the export).
    pub fn data(&self) -> Result<Vec<(String, PathBuf)>> {
        let pair = |train: &PathBuf, eval: &Option<PathBuf>| {
            let mut d = vec![("data.train".to_owned(), train.clone())];
            d.extend(eval.clone().map(|e| ("data.eval".to_owned(), e)));
            d
        };
        Ok(match self {
            StageConfig::Sft(c) => pair(&c.data.train, &c.data.eval),
            StageConfig::Reward(c) => pair(&c.data.train, &c.data.eval),
            StageConfig::Dpo(c) => pair(&c.data.train, &c.data.eval),
            StageConfig::Kto(c) => pair(&c.data.train, &c.data.eval),
            StageConfig::Ppo(c) => rl_data(&c.rollout),
            StageConfig::Grpo(c) => rl_data(&c.rollout),
            StageConfig::Rloo(c) => rl_data(&c.rollout),
            StageConfig::Eval(c) => c.data()?,
            StageConfig::AnnotateExport(_) => Vec::new(),
        })
    }

    pub fn seed(&self) -> Option<u64> {
        match self {
            StageConfig::Sft(c) => Some(c.seed),
            StageConfig::Reward(c) => Some(c.seed),
            StageConfig::Dpo(c) => Some(c.seed),
            StageConfig::Kto(c) => Some(c.seed),
            StageConfig::Ppo(c) => Some(c.seed),
            StageConfig::Grpo(c) => Some(c.seed),
            StageConfig::Rloo(c) => Some(c.seed),
            StageConfig::Eval(_) | StageConfig::AnnotateExport(_) => None,
        }
    }

    /// Whether an interrupted run can continue from a checkpoint in its directory.
    pub fn resumable(&self) -> bool {
        !matches!(self, StageConfig::Eval(_) | StageConfig::AnnotateExport(_))
    }

    /// The resolved config as JSON (for the key and the manifest).
    pub fn to_json(&self) -> Result<serde_json::Value> {
        Ok(match self {
            StageConfig::Sft(c) => serde_json::to_value(c)?,
            StageConfig::Reward(c) => serde_json::to_value(c)?,
            StageConfig::Dpo(c) => serde_json::to_value(c)?,
            StageConfig::Kto(c) => serde_json::to_value(c)?,
            StageConfig::Ppo(c) => serde_json::to_value(c)?,
            StageConfig::Grpo(c) => serde_json::to_value(c)?,
            StageConfig::Rloo(c) => serde_json::to_value(c)?,
            StageConfig::Eval(c) => serde_json::to_value(c)?,
            StageConfig::AnnotateExport(c) => serde_json::to_value(c)?,
        })
    }

    /// Runs the stage with progress bars; the trainers checkpoint and resume themselves.
    pub fn run(&self, run: &StageRun) -> Result<StageOutcome> {
        if run.nproc_per_node > 1 {
            return self.launch(run);
        }
        let mut metrics = BTreeMap::new();
        let mut put = |k: &str, v: Option<f64>| {
            if let Some(v) = v {
                metrics.insert(k.to_owned(), v);
            }
        };
        match self {
            StageConfig::Sft(c) => {
                let mut bar = StepBar::new(run.name);
                let s = sft::train(c, run.resume, &mut |p| {
                    let eval = p
                        .eval_loss
                        .map_or(String::new(), |e| format!(" eval {e:.3}"));
                    bar.update(p.step, p.total_steps, format!("loss {:.3}{eval}", p.loss));
                    run.after_step(p.step);
                })
                .with_context(|| format!("stage {} (sft)", run.name))?;
                bar.finish();
                put("steps", Some(s.steps as f64));
                put("eval_loss_before", s.eval_loss_before);
                put("eval_loss", s.eval_loss_after);
                put("train_tokens_per_second", Some(s.train_tokens_per_second));
            }
            StageConfig::Reward(c) => {
                let mut bar = StepBar::new(run.name);
                let s = reward::train(c, run.resume, &mut |p| {
                    let acc = p
                        .eval_accuracy
                        .map_or(String::new(), |a| format!(" eval acc {a:.3}"));
                    bar.update(p.step, p.total_steps, format!("loss {:.3}{acc}", p.loss));
                    run.after_step(p.step);
                })
                .with_context(|| format!("stage {} (reward)", run.name))?;
                bar.finish();
                put("steps", Some(s.steps as f64));
                put("eval_accuracy_before", s.eval_before.map(|m| m.accuracy));
                put("eval_accuracy", s.eval_after.map(|m| m.accuracy));
                put("eval_loss", s.eval_after.map(|m| m.loss));
                put("eval_margin", s.eval_after.map(|m| m.margin));
            }
            StageConfig::Dpo(c) => {
                let mut bar = StepBar::new(run.name);
                let s = dpo::train(c, run.resume, &mut |p| {
                    let acc = p
                        .eval_accuracy
                        .map_or(String::new(), |a| format!(" eval acc {a:.3}"));
                    bar.update(p.step, p.total_steps, format!("loss {:.3}{acc}", p.loss));
                    run.after_step(p.step);
                })
                .with_context(|| format!("stage {} (dpo)", run.name))?;
                bar.finish();
                put("steps", Some(s.steps as f64));
                put(
                    "eval_rewards/accuracies_before",
                    s.eval_before.map(|m| m.accuracy),
                );
                put("eval_rewards/accuracies", s.eval_after.map(|m| m.accuracy));
                put("eval_loss", s.eval_after.map(|m| m.loss));
                put(
                    "eval_rewards/margins",
                    s.eval_after.map(|m| m.rewards_chosen - m.rewards_rejected),
                );
            }
            StageConfig::Kto(c) => {
                let mut bar = StepBar::new(run.name);
                let s = kto::train(c, run.resume, &mut |p| {
                    let margin = p
                        .eval_margin
                        .map_or(String::new(), |m| format!(" eval margin {m:.3}"));
                    bar.update(p.step, p.total_steps, format!("loss {:.3}{margin}", p.loss));
                    run.after_step(p.step);
                })
                .with_context(|| format!("stage {} (kto)", run.name))?;
                bar.finish();
                put("steps", Some(s.steps as f64));
                put("eval_loss_before", s.eval_before.map(|m| m.loss));
                put("eval_loss", s.eval_after.map(|m| m.loss));
                put("eval_rewards/margins", s.eval_after.map(|m| m.margin()));
            }
            StageConfig::Ppo(c) => {
                let s = run_rl(run, "ppo", |on_step| ppo::train(c, run.resume, on_step))?;
                metrics = rl_metrics(&s);
            }
            StageConfig::Grpo(c) => {
                let s = run_rl(run, "grpo", |on_step| grpo::train(c, run.resume, on_step))?;
                metrics = rl_metrics(&s);
            }
            StageConfig::Rloo(c) => {
                let s = run_rl(run, "rloo", |on_step| rloo::train(c, run.resume, on_step))?;
                metrics = rl_metrics(&s);
            }
            StageConfig::Eval(c) => {
                metrics = c.run()?;
            }
            StageConfig::AnnotateExport(c) => {
                let summary = c
                    .run()
                    .with_context(|| format!("stage {} (annotate-export)", run.name))?;
                put("pairs", Some(summary.pairs as f64));
                put("votes", Some(summary.votes as f64));
                put("annotators", Some(summary.annotators as f64));
                return Ok(StageOutcome {
                    metrics,
                    annotations: Some(summary),
                });
            }
        }
        Ok(StageOutcome {
            metrics,
            annotations: None,
        })
    }
}

/// The models an online-RL stage reads: the policy, a separate reference, a reward model.
fn rl_models(
    model: &Path,
    reference: &ReferenceConfig,
    reward: &RewardConfig,
) -> Vec<(&'static str, PathBuf)> {
    let mut m = vec![("model", model.to_path_buf())];
    m.extend(reference.model.clone().map(|r| ("reference.model", r)));
    m.extend(reward.model.clone().map(|r| ("reward.model", r)));
    m
}

fn rl_data(rollout: &RolloutConfig) -> Vec<(String, PathBuf)> {
    vec![("rollout.prompts".to_owned(), rollout.prompts.clone())]
}

/// Runs an online-RL trainer with a step bar showing the rollouts' mean reward and KL.
fn run_rl(
    run: &StageRun,
    kind: &str,
    train: impl FnOnce(&mut dyn FnMut(&RlProgress)) -> tiller_policy::Result<RlSummary>,
) -> Result<RlSummary> {
    let mut bar = StepBar::new(run.name);
    let summary = train(&mut |p: &RlProgress| {
        bar.update(p.step, p.total_steps, rl_shared::progress_message(p));
        run.after_step(p.step);
    })
    .with_context(|| format!("stage {} ({kind})", run.name))?;
    bar.finish();
    Ok(summary)
}

/// An RL stage's manifest metrics: the mean reward over the first and last quarter of steps.
fn rl_metrics(summary: &RlSummary) -> BTreeMap<String, f64> {
    let mut metrics = BTreeMap::from([
        ("steps".to_owned(), summary.steps as f64),
        (
            "rollout_tokens_per_second".to_owned(),
            summary.rollout_tokens_per_second,
        ),
    ]);
    if let Some((_, first, last)) = summary.reward_first_last() {
        metrics.insert("reward_first".into(), first);
        metrics.insert("reward_last".into(), last);
    }
    metrics
}
