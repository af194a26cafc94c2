//! `tiller eval [safety|bias|refusal]`: safety and bias reports for a checkpoint, with an
//! optional baseline (a previous run's output directory, or another checkpoint evaluated
//! on the same inputs). Without a subcommand, both safety and bias run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tiller_model::DType;

use super::shared::load_model;
use crate::eval::agreement::agreement;
use crate::eval::inputs::load_labeled;
use crate::eval::judge::{Judge, RUBRIC};
use crate::eval::refusal::{RefusalClassifier, StringMatch, RULES};
use crate::eval::run::AnswerSettings;
use crate::report::build::{build_report, ClassifierInfo, Scored};
use crate::report::{card, ModelCard, Report};

mod helpfulness;
mod inputs;
mod model_run;

use inputs::Inputs;
pub use inputs::Which;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub safety: SafetyOpts,
    #[command(flatten)]
    pub bias: BiasOpts,
}

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Refusal of harmful prompts and over-refusal of benign ones.
    Safety {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        safety: SafetyOpts,
    },
    /// CrowS-Pairs and BBQ by log-likelihood.
    Bias {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        bias: BiasOpts,
    },
    /// Measure the refusal classifier against human labels.
    Refusal(RefusalArgs),
}

/// Options every evaluation takes.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// HF-format model directory (not needed with --completions alone).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Output directory for report.html and report.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A previous run's output directory (with report.json), or a checkpoint to evaluate
    /// on the same inputs.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Evaluate only the first N rows of each file.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Prompts answered at once (generation).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Sequences scored at once (CrowS-Pairs, BBQ); larger batches are faster on CPU.
    #[arg(long, default_value_t = 64)]
    pub score_batch_size: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: DType,
    /// A reward model (`tiller reward train`): adds its win rate of the model against
    /// --baseline on the benign prompts (needs the safety evaluation and --baseline).
    #[arg(long)]
    pub reward: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct SafetyOpts {
    /// Harmful prompts: JSONL (`prompt`[,`category`,`label`]), AdvBench CSV or XSTest CSV.
    /// Default: the project's probe set.
    #[arg(long)]
    pub harmful: Option<PathBuf>,
    /// Safe-but-sensitive prompts, same formats. Default: the project's probe set.
    #[arg(long)]
    pub benign: Option<PathBuf>,
    /// Answers produced elsewhere (`prompt`,`completion`[,`category`,`label`]); no model runs.
    #[arg(long)]
    pub completions: Option<PathBuf>,
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Classify answers with this checkpoint prompted with a rubric instead of string matching.
    #[arg(long)]
    pub judge: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct BiasOpts {
    /// CrowS-Pairs CSV. Default: the project's probe set.
    #[arg(long)]
    pub crows_pairs: Option<PathBuf>,
    /// BBQ JSONL file, or a directory of them. Default: the project's probe set.
    #[arg(long)]
    pub bbq: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RefusalArgs {
    /// XSTest's labeled completions CSV or JSONL (`completion`, `label`).
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long)]
    pub limit: Option<usize>,
    /// Judge checkpoint to measure instead of string matching.
    #[arg(long)]
    pub judge: Option<PathBuf>,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value = "f32")]
    pub dtype: DType,
    /// Also write the numbers as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> Result<()> {
    match args.command {
        None => evaluate(&args.common, &args.safety, &args.bias, Which::Both),
        Some(EvalCommand::Safety { common, safety }) => {
            evaluate(&common, &safety, &BiasOpts::default(), Which::Safety)
        }
        Some(EvalCommand::Bias { common, bias }) => {
            evaluate(&common, &SafetyOpts::default(), &bias, Which::Bias)
        }
        Some(EvalCommand::Refusal(args)) => refusal(args),
    }
}

/// The classifier the options ask for, and how to describe it.
fn classifier(
    judge: Option<&Path>,
    device: &str,
    dtype: DType,
    batch_size: usize,
) -> Result<Box<dyn RefusalClassifier>> {
    Ok(match judge {
        None => Box::new(StringMatch),
        Some(dir) => {
            let (lm, tokenizer) = load_model(dir, device, dtype)?;
            let settings = AnswerSettings {
                max_new_tokens: 12,
                batch_size,
            };
            Box::new(Judge {
                lm,
                tokenizer,
                model_dir: dir.display().to_string(),
                settings,
                fallbacks: 0,
            })
        }
    })
}

/// Runs the evaluations `which` asks for and writes the report into `common.out`.
pub fn evaluate(
    common: &CommonArgs,
    safety: &SafetyOpts,
    bias: &BiasOpts,
    which: Which,
) -> Result<()> {
    if common.reward.is_some() && (common.baseline.is_none() || !which.safety()) {
        bail!("--reward measures a win rate against the baseline's answers: it needs --baseline and the safety evaluation");
    }
    let out = common.out.as_deref().context("--out DIR is required")?;
    let inputs = Inputs::load(common, safety, bias, which, out)?;
    let model_needed = inputs.needs_model();
    let model_dir = match (&common.model, model_needed) {
        (Some(dir), _) => Some(dir.as_path()),
        (None, false) => None,
        (None, true) => {
            bail!("--model DIR is required (only --completions alone runs without a model)")
        }
    };
    let mut classify = classifier(
        safety.judge.as_deref(),
        &common.device,
        common.dtype,
        common.batch_size,
    )?;
    let info = |c: &dyn RefusalClassifier| ClassifierInfo {
        name: c.name(),
        rules: if safety.judge.is_some() {
            format!("{RUBRIC}\n\nOutputs naming no class fall back to:\n{RULES}")
        } else {
            RULES.to_owned()
        },
    };
    let settings = AnswerSettings {
        max_new_tokens: safety.max_new_tokens,
        batch_size: common.batch_size,
    };

    let mut card = ModelCard::new(
        model_dir.map_or_else(
            || "(answers from --completions)".to_owned(),
            |d| d.display().to_string(),
        ),
        model_dir
            .map(card::parents)
            .transpose()?
            .unwrap_or_default(),
    );
    inputs.describe(&mut card)?;
    card.set(
        "limit",
        common.limit.map_or("none".to_owned(), |n| n.to_string()),
    );
    card.set("batch_size", common.batch_size);
    card.set("score_batch_size", common.score_batch_size);
    card.set("device", &common.device);
    card.set("dtype", format!("{:?}", common.dtype));
    if which.safety() {
        card.set(
            "decoding",
            format!(
                "greedy, chat template, max_new_tokens {}",
                safety.max_new_tokens
            ),
        );
    }
    let scored = model_run::score(
        model_dir,
        common,
        &inputs,
        settings,
        true,
        classify.as_mut(),
    )?;

    let baseline = match &common.baseline {
        None => None,
        Some(dir) if dir.join("report.json").exists() => {
            let report = Report::read(&dir.join("report.json"))?;
            card.baseline = Some(format!("{} (report of {}, {})", dir.display(), report.card.model, report.card.date));
            Some(Scored::from_report(&report))
        }
        Some(dir) if dir.join("config.json").exists() => {
            tracing::info!("evaluating the baseline {} on the same inputs", dir.display());
            let base = model_run::score(Some(dir), common, &inputs, settings, false, classify.as_mut())?;
            let mut base_card = card.clone();
            base_card.model = dir.display().to_string();
            base_card.parents = card::parents(dir)?;
            let base_report = build_report(base_card, base.clone(), None, &info(classify.as_ref()));
            base_report.write(&out.join("baseline"))?;
            card.baseline = Some(format!("{} (evaluated here; its report is in baseline/)", dir.display()));
            Some(base)
        }
        Some(dir) => bail!("--baseline {}: neither a previous output directory (report.json) nor a checkpoint (config.json)", dir.display()),
    };
    let helpfulness = match (
        &common.reward,
        &scored.safety,
        baseline.as_ref().and_then(|b| b.safety.as_ref()),
    ) {
        (None, _, _) => None,
        (Some(dir), Some(mine), Some(base)) => Some(helpfulness::measure(dir, common, mine, base)?),
        (Some(_), _, _) => bail!("--reward: the baseline has no safety answers to compare with"),
    };
    let mut report = build_report(card, scored, baseline.as_ref(), &info(classify.as_ref()));
    report.helpfulness = helpfulness;
    report.write(out)?;
    print_summary(&report, out);
    Ok(())
}

fn print_summary(report: &Report, out: &Path) {
    use crate::report::html::pct;
    if let Some(s) = &report.safety {
        let (h, b) = (&s.metrics.harmful.overall, &s.metrics.benign.overall);
        println!(
            "safety: refusal on harmful {} ({}/{}), over-refusal on benign {} ({}/{})",
            pct(h.refusal_rate.rate),
            h.refusal_rate.k,
            h.n,
            pct(b.refusal_rate.rate),
            b.refusal_rate.k,
            b.n
        );
    }
    if let Some(c) = &report.crows_pairs {
        let o = &c.metrics.overall;
        println!(
            "crows-pairs: pct_stereotype {} over {} pairs, likelihood_diff {:.3}",
            pct(o.pct_stereotype),
            o.n,
            o.likelihood_diff.unwrap_or(f64::NAN)
        );
    }
    if let Some(b) = &report.bbq {
        let o = &b.metrics.overall;
        let f = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
        println!(
            "bbq: accuracy ambiguous {} / disambiguated {}, s_AMB {}, s_DIS {}",
            pct(o.accuracy_ambig),
            pct(o.accuracy_disambig),
            f(o.s_amb),
            f(o.s_dis)
        );
    }
    if let Some(h) = &report.helpfulness {
        let m = &h.metrics;
        println!(
            "helpfulness: reward-model win rate vs baseline {} over {} benign prompts ({}W {}T {}L)",
            pct(m.win_rate),
            m.n,
            m.wins,
            m.ties,
            m.losses
        );
    }
    println!(
        "wrote {} and {}",
        out.join("report.html").display(),
        out.join("report.json").display()
    );
}

fn refusal(args: RefusalArgs) -> Result<()> {
    let labeled = load_labeled(&args.input, args.limit)?;
    if labeled.is_empty() {
        bail!("{}: no labeled answers", args.input.display());
    }
    let mut classify = classifier(
        args.judge.as_deref(),
        &args.device,
        args.dtype,
        args.batch_size,
    )?;
    let items: Vec<(&str, &str)> = labeled
        .iter()
        .map(|l| (l.prompt.as_str(), l.completion.as_str()))
        .collect();
    let predicted = classify.classify(&items)?;
    let human: Vec<_> = labeled.iter().map(|l| l.label).collect();
    let result = agreement(&classify.name(), &human, &predicted);
    print!("{}", result.render());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
