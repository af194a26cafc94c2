//! The `eval` stage: `tiller eval` (safety and bias) of one checkpoint, optionally beside
//! a baseline evaluated on the same inputs. Its keys are the command's flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tiller_model::DType;

use crate::cli::eval::{evaluate, BiasOpts, CommonArgs, SafetyOpts, Which};
use crate::report::Report;

/// Which reports an eval stage writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalWhich {
    #[default]
    Both,
    Safety,
    Bias,
}

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
    pub which: EvalWhich,
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
    /// Inputs; absent: the project's probe sets.
    #[serde(default)]
    pub harmful: Option<PathBuf>,
    #[serde(default)]
    pub benign: Option<PathBuf>,
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
}

fn default_max_new_tokens() -> usize {
    128
}
fn default_batch_size() -> usize {
    8
}
fn default_score_batch_size() -> usize {
    64
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
    pub fn data(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        let given = [
            ("harmful", &self.harmful),
            ("benign", &self.benign),
            ("crows_pairs", &self.crows_pairs),
            ("bbq", &self.bbq),
        ];
        for (role, path) in given {
            let Some(path) = path else { continue };
            if path.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                    .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                    .unwrap_or_default();
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
        out
    }

    /// Runs the evaluation into `out`; returns the headline numbers.
    pub fn run(&self) -> Result<BTreeMap<String, f64>> {
        let common = CommonArgs {
            model: Some(self.model.clone()),
            out: Some(self.out.clone()),
            baseline: self.baseline.clone(),
            limit: self.limit,
            batch_size: self.batch_size,
            score_batch_size: self.score_batch_size,
            device: self.device.clone(),
            dtype: self.dtype,
            reward: self.reward.clone(),
        };
        let safety = SafetyOpts {
            harmful: self.harmful.clone(),
            benign: self.benign.clone(),
            completions: None,
            max_new_tokens: self.max_new_tokens,
            judge: self.judge.clone(),
        };
        let bias = BiasOpts {
            crows_pairs: self.crows_pairs.clone(),
            bbq: self.bbq.clone(),
        };
        let which = match self.which {
            EvalWhich::Both => Which::Both,
            EvalWhich::Safety => Which::Safety,
            EvalWhich::Bias => Which::Bias,
        };
        evaluate(&common, &safety, &bias, which)?;
        Ok(headline(&Report::read(&self.out.join("report.json"))?))
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
