//! `tiller eval [safety|bias|refusal|compare]`: safety and bias reports for a checkpoint,
//! with an optional baseline (a previous run's output directory, or another checkpoint
//! evaluated on the same inputs); a scorecard across report directories and checkpoints.
//! Without a subcommand, both safety and bias run. `refusal` and `compare` have their own
//! files; the options they share with the reports are here.

mod compare;
mod refusal;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tiller_eval::options::{
    HarmBenchBehaviors, JudgeEndpointOptions, Rubric, Sample, DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS, DEFAULT_SCORE_BATCH_SIZE,
};
use tiller_eval::{evaluate, BiasOptions, EvalError, EvalOptions, Report, SafetyOptions, Which};
use tiller_model::DType;

use crate::progress::Bars;

pub use compare::{CompareArgs, WhichArg};
pub use refusal::RefusalArgs;

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
    /// One scorecard across checkpoints: report directories and checkpoints (evaluated
    /// here) as columns, every suite's headline figure as a row, changes tested against
    /// the first column.
    Compare(CompareArgs),
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
    /// A reward model (`tiller reward train`): adds its win rate of the model against
    /// --baseline on the benign prompts (needs the safety evaluation and --baseline).
    #[arg(long)]
    pub reward: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// How a model runs: how much of each file, batch sizes, device and dtype.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Evaluate only the first N rows of each file.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Prompts answered at once (generation).
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Sequences scored at once (CrowS-Pairs, BBQ); larger batches are faster on CPU.
    #[arg(long, default_value_t = DEFAULT_SCORE_BATCH_SIZE)]
    pub score_batch_size: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: DType,
}

#[derive(Args, Debug, Clone, Default)]
pub struct SafetyOpts {
    /// Harmful prompts, repeatable (each file a suite in the report): the public suites'
    /// own files (HarmBench, CatQA, CoCoNot, XSTest, AdvBench, StrongREJECT,
    /// SimpleSafetyTests, JailbreakBench, do-not-answer) or JSONL (`prompt`[,`category`,
    /// `label`]). Default: the project's probe set.
    #[arg(long)]
    pub harmful: Vec<PathBuf>,
    /// Safe-but-sensitive prompts (over-refusal), repeatable, same formats. Default: the
    /// project's probe set.
    #[arg(long)]
    pub benign: Vec<PathBuf>,
    /// HarmBench behaviours to read: standard, contextual (context prepended) or all;
    /// copyright ones are always skipped.
    #[arg(long, value_enum, default_value = "standard")]
    pub harmbench: HarmBench,
    /// Answer a seeded subsample of N prompts of each harmful/benign file (the N with the
    /// smallest SHA-256 of "SEED:prompt", in file order); smaller files are kept whole.
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// The subsample's seed.
    #[arg(long, value_name = "SEED", default_value_t = 0, requires = "sample")]
    pub sample_seed: u64,
    /// Answers produced elsewhere (`prompt`,`completion`[,`category`,`label`]); no model runs.
    #[arg(long)]
    pub completions: Option<PathBuf>,
    #[arg(long, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// Classify answers with this checkpoint prompted with a rubric instead of string matching;
    /// a trained refusal classifier (`head = "refusal_classes"`) decides full vs partial refusal.
    #[arg(long)]
    pub judge: Option<PathBuf>,
    #[command(flatten)]
    pub endpoint: JudgeEndpointArgs,
}

/// A judge behind an OpenAI-compatible endpoint (`tiller serve`, vLLM, llama.cpp, ...).
#[derive(Args, Debug, Clone, Default)]
pub struct JudgeEndpointArgs {
    /// The endpoint's API base, e.g. http://127.0.0.1:8000/v1 (replaces string matching).
    #[arg(long, conflicts_with = "judge")]
    pub judge_url: Option<String>,
    /// The model name sent to the endpoint.
    #[arg(long, requires = "judge_url", default_value = "default")]
    pub judge_model: String,
    /// Name of an environment variable holding the API key (sent as a Bearer token).
    #[arg(long, requires = "judge_url")]
    pub judge_key_env: Option<String>,
    /// refusal (XSTest's three classes) or harmbench (HarmBench's yes/no classifier prompt).
    #[arg(long, value_enum, default_value = "refusal")]
    pub judge_rubric: JudgeRubric,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, Default)]
pub enum JudgeRubric {
    #[default]
    Refusal,
    Harmbench,
}

impl JudgeEndpointArgs {
    /// The library's endpoint options, the key read from its environment variable.
    fn options(&self) -> Result<Option<JudgeEndpointOptions>> {
        let Some(url) = &self.judge_url else {
            return Ok(None);
        };
        let api_key = match &self.judge_key_env {
            None => None,
            Some(var) => Some(std::env::var(var).with_context(|| {
                format!("--judge-key-env {var}: the environment variable is not set")
            })?),
        };
        Ok(Some(JudgeEndpointOptions {
            url: url.clone(),
            model: self.judge_model.clone(),
            api_key,
            rubric: match self.judge_rubric {
                JudgeRubric::Refusal => Rubric::Refusal,
                JudgeRubric::Harmbench => Rubric::HarmBench,
            },
        }))
    }
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

pub fn run(args: EvalArgs) -> Result<()> {
    let (common, safety, bias, which) = match args.command {
        None => (args.common, args.safety, args.bias, Which::Both),
        Some(EvalCommand::Safety { common, safety }) => {
            (common, safety, BiasOpts::default(), Which::Safety)
        }
        Some(EvalCommand::Bias { common, bias }) => {
            (common, SafetyOpts::default(), bias, Which::Bias)
        }
        Some(EvalCommand::Refusal(args)) => return refusal::run(args),
        Some(EvalCommand::Compare(args)) => return compare::run(args),
    };
    let options = options(common, safety, bias, which)?;
    let report =
        evaluate(&options, &mut Bars::default(), Box::new(Bars::default())).map_err(as_flags)?;
    print_summary(&report, &options.out);
    Ok(())
}

/// `--harmbench`'s choices (the library's [`HarmBenchBehaviors`]).
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default)]
pub enum HarmBench {
    #[default]
    Standard,
    Contextual,
    All,
}

/// The library's options from the flags.
fn options(
    common: CommonArgs,
    safety: SafetyOpts,
    bias: BiasOpts,
    which: Which,
) -> Result<EvalOptions> {
    let out = common.out.context("--out DIR is required")?;
    let run = common.run;
    Ok(EvalOptions {
        which,
        model: common.model,
        out,
        baseline: common.baseline,
        limit: run.limit,
        batch_size: run.batch_size,
        score_batch_size: run.score_batch_size,
        device: run.device,
        dtype: run.dtype,
        reward: common.reward,
        safety: SafetyOptions {
            harmful: safety.harmful,
            benign: safety.benign,
            harmbench: match safety.harmbench {
                HarmBench::Standard => HarmBenchBehaviors::Standard,
                HarmBench::Contextual => HarmBenchBehaviors::Contextual,
                HarmBench::All => HarmBenchBehaviors::All,
            },
            sample: safety.sample.map(|n| Sample {
                n,
                seed: safety.sample_seed,
            }),
            completions: safety.completions,
            max_new_tokens: safety.max_new_tokens,
            judge_endpoint: safety.endpoint.options()?,
            judge: safety.judge,
        },
        bias: BiasOptions {
            crows_pairs: bias.crows_pairs,
            bbq: bias.bbq,
        },
    })
}

/// An option error worded as the flag the user typed (`reward` → `--reward`).
fn as_flags(err: EvalError) -> anyhow::Error {
    match err {
        EvalError::Option { option, message } => {
            let flag = |name: &str| format!("--{}", name.replace('_', "-"));
            // Messages quote other options in backticks; they become flags too.
            let mut words = message.split('`');
            let mut text = words.next().unwrap_or_default().to_owned();
            for (i, w) in words.enumerate() {
                text.push_str(&if i % 2 == 0 { flag(w) } else { w.to_owned() });
            }
            anyhow::anyhow!("{}: {text}", flag(option))
        }
        other => other.into(),
    }
}

fn print_summary(report: &Report, out: &Path) {
    use tiller_eval::report::html::pct;
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
