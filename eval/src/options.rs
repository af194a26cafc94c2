//! What an evaluation is asked to do, as the library owns it: the command line parses its
//! flags into these structs, the pipeline its `[stages.*]` keys. [`EvalOptions::validate`]
//! names a bad option by its field (`reward`), and each caller words it as a flag or a key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tiller_model::DType;

use crate::error::{EvalError, Result};
pub use crate::judge_endpoint::Rubric;
pub use crate::sample::Sample;
pub use crate::suites::HarmBenchBehaviors;

/// Which reports an evaluation writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    #[default]
    Both,
    Safety,
    Bias,
}

impl Which {
    pub fn safety(self) -> bool {
        match self {
            Which::Both | Which::Safety => true,
            Which::Bias => false,
        }
    }
    pub fn bias(self) -> bool {
        match self {
            Which::Both | Which::Bias => true,
            Which::Safety => false,
        }
    }
}

/// One evaluation of one checkpoint (or of answers given in a file).
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub which: Which,
    /// HF-format model directory (not needed when `safety.completions` is all there is).
    pub model: Option<PathBuf>,
    /// Output directory for report.html and report.json.
    pub out: PathBuf,
    /// A previous run's output directory (with report.json), or a checkpoint evaluated on
    /// the same inputs.
    pub baseline: Option<PathBuf>,
    /// Only the first N rows of each file.
    pub limit: Option<usize>,
    /// Prompts answered at once.
    pub batch_size: usize,
    /// Sequences scored at once (CrowS-Pairs, BBQ).
    pub score_batch_size: usize,
    /// cpu, cuda or cuda:N.
    pub device: String,
    pub dtype: DType,
    /// A reward model: its win rate of the model against the baseline on benign prompts.
    pub reward: Option<PathBuf>,
    pub safety: SafetyOptions,
    pub bias: BiasOptions,
}

#[derive(Debug, Clone, Default)]
pub struct SafetyOptions {
    /// Harmful prompt suites, each a named suite in the report; none: the project's
    /// probe set. Rows with their own label (XSTest) keep it.
    pub harmful: Vec<PathBuf>,
    /// Safe-but-sensitive prompt suites (over-refusal); none: the project's probe set.
    pub benign: Vec<PathBuf>,
    /// Which HarmBench behaviours a HarmBench file contributes.
    pub harmbench: HarmBenchBehaviors,
    /// A seeded subsample of each prompt file (after `limit`); None: every prompt.
    pub sample: Option<Sample>,
    /// Answers produced elsewhere; no model answers.
    pub completions: Option<PathBuf>,
    pub max_new_tokens: usize,
    /// A judge checkpoint instead of string matching.
    pub judge: Option<PathBuf>,
    /// A judge behind an OpenAI-compatible endpoint instead of string matching.
    pub judge_endpoint: Option<JudgeEndpointOptions>,
}

/// A judge behind an OpenAI-compatible endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeEndpointOptions {
    /// The API base (`http://127.0.0.1:8000/v1`).
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub rubric: Rubric,
}

#[derive(Debug, Clone, Default)]
pub struct BiasOptions {
    /// CrowS-Pairs CSV; None: the project's probe set.
    pub crows_pairs: Option<PathBuf>,
    /// BBQ JSONL file or directory; None: the project's probe set.
    pub bbq: Option<PathBuf>,
}

/// Defaults shared by the command line and the pipeline.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 128;
pub const DEFAULT_BATCH_SIZE: usize = 8;
pub const DEFAULT_SCORE_BATCH_SIZE: usize = 64;

impl EvalOptions {
    /// Checks the options against each other (files are checked when read).
    pub fn validate(&self) -> Result<()> {
        if self.reward.is_some() && (self.baseline.is_none() || !self.which.safety()) {
            return Err(EvalError::option(
                "reward",
                "a reward-model win rate compares the model's answers with the baseline's: it needs `baseline` and the safety evaluation",
            ));
        }
        if self.safety.completions.is_some()
            && (!self.safety.harmful.is_empty() || !self.safety.benign.is_empty())
        {
            return Err(EvalError::option(
                "completions",
                "replaces `harmful` and `benign` (its rows carry their own labels)",
            ));
        }
        if self.safety.sample.is_some() && self.safety.completions.is_some() {
            return Err(EvalError::option(
                "sample",
                "draws from prompt files (`harmful`, `benign`), not from `completions`",
            ));
        }
        if self.safety.judge.is_some() && self.safety.judge_endpoint.is_some() {
            return Err(EvalError::option(
                "judge",
                "a judge checkpoint and a judge endpoint exclude each other (`judge_url`)",
            ));
        }
        let answers = self.which.safety() && self.safety.completions.is_none();
        for (option, value, used) in [
            ("batch_size", self.batch_size, true),
            ("score_batch_size", self.score_batch_size, self.which.bias()),
            ("max_new_tokens", self.safety.max_new_tokens, answers),
            (
                "sample",
                self.safety.sample.map_or(1, |s| s.n),
                self.which.safety(),
            ),
        ] {
            if used && value == 0 {
                return Err(EvalError::option(option, "must be at least 1"));
            }
        }
        Ok(())
    }
}
