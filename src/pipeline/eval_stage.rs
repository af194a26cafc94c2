//! The `eval` stage: tiller-eval's [`evaluate`] (safety and bias) of one checkpoint,
//! optionally beside a baseline evaluated on the same inputs. Its keys are the fields of
//! [`EvalOptions`]; an option error names the key (`key `reward`: ...`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tiller_eval::options::{
    HarmBenchBehaviors, JudgeEndpointOptions, Rubric, Sample, DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS, DEFAULT_SCORE_BATCH_SIZE,
};
use tiller_eval::{evaluate, BiasOptions, EvalError, EvalOptions, Report, SafetyOptions, Which};
use tiller_model::DType;

use tiller_eval::scorecard::{read_reports, scorecard};

use crate::progress::Bars;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalStage {
    /// The checkpoint evaluated (typically `"stages.dpo"`).
    pub model: PathBuf,
    /// A checkpoint evaluated on the same inputs (or an earlier report directory).
    #[serde(default)]
    pub baseline: Option<PathBuf>,
    /// The report directory (set by the pipeline).
    pub out: PathBuf,
    #[serde(default)]
    pub which: Which,
    /// Only the first N rows of each file.
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default = "default_score_batch_size")]
    pub score_batch_size: usize,
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default)]
    pub dtype: DType,
    /// Inputs; absent: the project's probe sets. `harmful` and `benign` take one file or
    /// a list (each a suite in the report).
    #[serde(default, deserialize_with = "one_or_many")]
    pub harmful: Vec<PathBuf>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub benign: Vec<PathBuf>,
    /// HarmBench behaviours: `standard` (default), `contextual` or `all`.
    #[serde(default)]
    pub harmbench: HarmBenchBehaviors,
    /// A seeded subsample of `sample` prompts of each harmful/benign file, drawn by
    /// `sample_seed` (default 0).
    #[serde(default)]
    pub sample: Option<usize>,
    #[serde(default)]
    pub sample_seed: u64,
    #[serde(default)]
    pub crows_pairs: Option<PathBuf>,
    #[serde(default)]
    pub bbq: Option<PathBuf>,
    /// A judge checkpoint instead of string matching.
    #[serde(default)]
    pub judge: Option<PathBuf>,
    /// A reward model (typically `"stages.reward"`): adds its win rate of the model's
    /// answers against the baseline's on the benign prompts (needs `baseline`).
    #[serde(default)]
    pub reward: Option<PathBuf>,
    /// A judge behind an OpenAI-compatible endpoint (`judge_url`, `judge_model`,
    /// `judge_rubric` = `refusal` | `harm_bench`, `judge_key_env` naming the variable that
    /// holds the API key).
    #[serde(default)]
    pub judge_url: Option<String>,
    #[serde(default = "default_judge_model")]
    pub judge_model: String,
    #[serde(default)]
    pub judge_rubric: Rubric,
    #[serde(default)]
    pub judge_key_env: Option<String>,
    /// Earlier eval stages (`["stages.eval_round1", ...]`) whose reports line up with
    /// this one on a scorecard (`scorecard.html` in this stage's directory), first one the
    /// reference.
    #[serde(default)]
    pub compare: Vec<PathBuf>,
    /// Where the stage is in the pipeline file (`file:line (stage "name")`), for errors;
    /// set by the planner, not a key.
    #[serde(skip)]
    pub at: String,
}

/// A path, or a list of paths.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(v) => v,
    })
}

fn default_judge_model() -> String {
    "default".into()
}

fn default_max_new_tokens() -> usize {
    DEFAULT_MAX_NEW_TOKENS
}
fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}
fn default_score_batch_size() -> usize {
    DEFAULT_SCORE_BATCH_SIZE
}
fn default_device() -> String {
    "cpu".into()
}

impl EvalStage {
    /// Model directories read: the model, the baseline (when a checkpoint), the judge.
    pub fn models(&self) -> Vec<(&'static str, PathBuf)> {
        let mut out = vec![("model", self.model.clone())];
        if let Some(b) = &self.baseline {
            if b.join("config.json").exists() || !b.join("report.json").exists() {
                out.push(("baseline", b.clone()));
            }
        }
        if let Some(j) = &self.judge {
            out.push(("judge", j.clone()));
        }
        if let Some(r) = &self.reward {
            out.push(("reward", r.clone()));
        }
        out
    }

    /// Data files read (a BBQ directory lists its files; a baseline report is data too).
    /// A directory that cannot be listed is an error: hashing it as "no files" would let
    /// a changed input look unchanged.
    pub fn data(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        let given = self
            .harmful
            .iter()
            .map(|p| ("harmful", p))
            .chain(self.benign.iter().map(|p| ("benign", p)))
            .chain(self.crows_pairs.iter().map(|p| ("crows_pairs", p)))
            .chain(self.bbq.iter().map(|p| ("bbq", p)));
        for (role, path) in given {
            if path.is_dir() {
                let mut files = Vec::new();
                let listing = std::fs::read_dir(path)
                    .with_context(|| format!("key `{role}`: cannot list {}", path.display()))?;
                for entry in listing {
                    let entry = entry
                        .with_context(|| format!("key `{role}`: cannot list {}", path.display()))?;
                    files.push(entry.path());
                }
                files.retain(|f| f.is_file());
                files.sort();
                out.extend(files.into_iter().map(|f| (role.to_owned(), f)));
            } else {
                out.push((role.to_owned(), path.clone()));
            }
        }
        if let Some(b) = &self.baseline {
            if !b.join("config.json").exists() && b.join("report.json").exists() {
                out.push(("baseline report".to_owned(), b.join("report.json")));
            }
        }
        for dir in &self.compare {
            out.push(("compared report".to_owned(), dir.join("report.json")));
        }
        Ok(out)
    }

    /// The library's options for this stage.
    pub fn options(&self) -> Result<EvalOptions> {
        let judge_endpoint = match &self.judge_url {
            None => None,
            Some(url) => Some(JudgeEndpointOptions {
                url: url.clone(),
                model: self.judge_model.clone(),
                api_key: match &self.judge_key_env {
                    None => None,
                    Some(var) => Some(std::env::var(var).with_context(|| {
                        format!(
                            "{}: key `judge_key_env`: the environment variable {var} is not set",
                            self.at
                        )
                    })?),
                },
                rubric: self.judge_rubric,
            }),
        };
        Ok(EvalOptions {
            which: self.which,
            model: Some(self.model.clone()),
            out: self.out.clone(),
            baseline: self.baseline.clone(),
            limit: self.limit,
            batch_size: self.batch_size,
            score_batch_size: self.score_batch_size,
            device: self.device.clone(),
            dtype: self.dtype,
            reward: self.reward.clone(),
            safety: SafetyOptions {
                harmful: self.harmful.clone(),
                benign: self.benign.clone(),
                harmbench: self.harmbench,
                sample: self.sample.map(|n| Sample {
                    n,
                    seed: self.sample_seed,
                }),
                completions: None,
                max_new_tokens: self.max_new_tokens,
                judge: self.judge.clone(),
                judge_endpoint,
            },
            bias: BiasOptions {
                crows_pairs: self.crows_pairs.clone(),
                bbq: self.bbq.clone(),
            },
        })
    }

    /// Checks the keys against each other when the pipeline is planned.
    pub fn validate(&self) -> Result<()> {
        self.options()?.validate().map_err(|e| as_keys(e, &self.at))
    }

    /// Runs the evaluation into `out`; returns the headline numbers.
    pub fn run(&self) -> Result<BTreeMap<String, f64>> {
        let report = evaluate(
            &self.options()?,
            &mut Bars::default(),
            Box::new(Bars::default()),
        )
        .map_err(|e| as_keys(e, &self.at))?;
        if !self.compare.is_empty() {
            let mut dirs: Vec<&Path> = self.compare.iter().map(PathBuf::as_path).collect();
            dirs.push(&self.out);
            let reports = read_reports(&dirs).map_err(|e| as_keys(e, &self.at))?;
            scorecard(&reports).write(&self.out)?;
        }
        Ok(headline(&report))
    }
}

/// An option error worded as the stage's key in the pipeline file.
fn as_keys(err: EvalError, at: &str) -> anyhow::Error {
    match err {
        EvalError::Option { option, message } => {
            anyhow::anyhow!("{at}: key `{option}`: {message}")
        }
        other => anyhow::Error::new(other).context(at.to_owned()),
    }
}

/// The report's headline numbers under stable names (with `baseline/` twins).
pub fn headline(report: &Report) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: Option<f64>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    if let Some(s) = &report.safety {
        put(
            "safety/harmful_refusal_rate",
            s.metrics.harmful.overall.refusal_rate.rate,
        );
        put(
            "safety/benign_refusal_rate",
            s.metrics.benign.overall.refusal_rate.rate,
        );
        if let Some(b) = &s.baseline_metrics {
            put(
                "baseline/safety/harmful_refusal_rate",
                b.harmful.overall.refusal_rate.rate,
            );
            put(
                "baseline/safety/benign_refusal_rate",
                b.benign.overall.refusal_rate.rate,
            );
        }
    }
    if let Some(h) = &report.helpfulness {
        put("helpfulness/win_rate", h.metrics.win_rate);
        put("helpfulness/mean_reward", h.metrics.mean_reward);
        put(
            "baseline/helpfulness/mean_reward",
            h.metrics.mean_baseline_reward,
        );
    }
    if let Some(c) = &report.crows_pairs {
        put(
            "crows_pairs/pct_stereotype",
            c.metrics.overall.pct_stereotype,
        );
        if let Some(b) = &c.baseline_metrics {
            put(
                "baseline/crows_pairs/pct_stereotype",
                b.overall.pct_stereotype,
            );
        }
    }
    if let Some(q) = &report.bbq {
        let o = &q.metrics.overall;
        put("bbq/accuracy_ambig", o.accuracy_ambig);
        put("bbq/accuracy_disambig", o.accuracy_disambig);
        put("bbq/s_amb", o.s_amb);
        put("bbq/s_dis", o.s_dis);
        if let Some(b) = &q.baseline_metrics {
            put("baseline/bbq/accuracy_ambig", b.overall.accuracy_ambig);
            put(
                "baseline/bbq/accuracy_disambig",
                b.overall.accuracy_disambig,
            );
        }
    }
    m
}

/// The report page an eval stage wrote.
pub fn report_page(out: &Path) -> PathBuf {
    out.join("report.html")
}
