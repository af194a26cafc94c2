//! One scorecard across checkpoints (`tiller eval compare`, and an eval stage's `compare`
//! key): every report a column, every suite's headline figure a row — refusal rate per
//! harmful suite, compliance rate per benign suite, CrowS-Pairs' pct_stereotype, BBQ's
//! accuracy in ambiguous and disambiguated contexts, the reward-model win rate — each with
//! its 95% interval and, from the second column on, its change against the first column
//! with the exact McNemar test on the items both reports scored (paired by prompt).
//! `scorecard.json` holds every number; `scorecard.html` draws one dot-and-interval chart
//! per row first, then the table.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::inputs::Label;
use crate::refusal::Verdict;
use crate::report::Report;
use crate::stats::{mcnemar_exact, Interval, Proportion, TestResult};

/// Bumped when scorecard.json changes shape.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    pub format_version: u32,
    pub columns: Vec<Column>,
    pub rows: Vec<ScoreRow>,
}

/// One report (checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// The report directory as given.
    pub name: String,
    pub model: String,
    pub date: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
    /// CrowS-Pairs: 50% is unbiased.
    Half,
}

/// One figure across the columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRow {
    /// `harmful: harmbench_behaviors_text_test`, `CrowS-Pairs`, ...
    pub suite: String,
    /// `refusal rate`, `compliance rate`, `pct_stereotype`, ...
    pub figure: String,
    pub better: Better,
    /// One per column; None where the report has no such figure.
    pub cells: Vec<Option<Cell>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub value: Option<f64>,
    pub interval: Option<Interval>,
    pub n: usize,
    /// Against the first column (None in the first column, or where nothing pairs).
    pub change: Option<Change>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Items both reports scored.
    pub paired: usize,
    /// This column minus the first, on the paired items.
    pub delta: Option<f64>,
    pub test: TestResult,
}

/// Binary outcomes by item key (prompt text, sentence pair, BBQ example).
type Outcomes = Vec<(String, bool)>;

/// A proportion figure: the cell of each column, paired against the first column.
fn binary_row(
    suite: String,
    figure: &str,
    better: Better,
    columns: Vec<Option<Outcomes>>,
) -> ScoreRow {
    let first: Option<HashMap<&str, bool>> = columns
        .first()
        .and_then(|c| c.as_ref())
        .map(|o| o.iter().map(|(k, v)| (k.as_str(), *v)).collect());
    let cells = columns
        .iter()
        .enumerate()
        .map(|(i, outcomes)| {
            let outcomes = outcomes.as_ref()?;
            let k = outcomes.iter().filter(|(_, v)| *v).count();
            let p = Proportion::new(k, outcomes.len());
            let change = first.as_ref().filter(|_| i > 0).map(|first| {
                let (mut b, mut c, mut paired, mut before, mut now) = (0, 0, 0, 0, 0);
                for (key, v) in outcomes {
                    let Some(&was) = first.get(key.as_str()) else {
                        continue;
                    };
                    paired += 1;
                    before += usize::from(was);
                    now += usize::from(*v);
                    match (was, *v) {
                        (false, true) => b += 1,
                        (true, false) => c += 1,
                        _ => {}
                    }
                }
                let delta = (paired > 0).then(|| (now as f64 - before as f64) / paired as f64);
                Change {
                    paired,
                    delta,
                    test: mcnemar_exact(b, c),
                }
            });
            Some(Cell {
                value: p.rate,
                interval: p.interval,
                n: p.n,
                change,
            })
        })
        .collect();
    ScoreRow {
        suite,
        figure: figure.to_owned(),
        better,
        cells,
    }
}

/// Suite names in order of first appearance across the reports.
fn suites(reports: &[&Report], label: Label) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in reports {
        for item in r.safety.iter().flat_map(|s| &s.items) {
            if item.label == label && !out.contains(&item.suite) {
                out.push(item.suite.clone());
            }
        }
    }
    out
}

/// Builds the scorecard of `reports` (name, report), the first one the reference.
pub fn scorecard(reports: &[(String, Report)]) -> Scorecard {
    let only: Vec<&Report> = reports.iter().map(|(_, r)| r).collect();
    let mut rows = Vec::new();
    let sides = [
        (Label::Unsafe, "harmful", "refusal rate", Better::Higher),
        (Label::Safe, "benign", "compliance rate", Better::Higher),
    ];
    for (label, side, figure, better) in sides {
        for suite in suites(&only, label) {
            let columns = only
                .iter()
                .map(|r| {
                    let s = r.safety.as_ref()?;
                    let outcomes: Outcomes = s
                        .items
                        .iter()
                        .filter(|i| i.label == label && i.suite == suite)
                        .map(|i| {
                            let yes = match label {
                                Label::Unsafe => i.verdict.is_refusal(),
                                Label::Safe => i.verdict == Verdict::FullCompliance,
                            };
                            (i.prompt.clone(), yes)
                        })
                        .collect();
                    (!outcomes.is_empty()).then_some(outcomes)
                })
                .collect();
            let name = if suite.is_empty() {
                format!("{side} prompts")
            } else {
                format!("{side}: {suite}")
            };
            rows.push(binary_row(name, figure, better, columns));
        }
    }
    let crows = only
        .iter()
        .map(|r| {
            r.crows_pairs.as_ref().map(|c| {
                c.items
                    .iter()
                    .map(|i| {
                        (
                            format!("{}\u{1f}{}", i.pair.sent_more, i.pair.sent_less),
                            i.stereotyped(),
                        )
                    })
                    .collect()
            })
        })
        .collect();
    rows.push(binary_row(
        "CrowS-Pairs".into(),
        "pct_stereotype",
        Better::Half,
        crows,
    ));
    for (ambiguous, figure) in [
        (true, "accuracy (ambiguous)"),
        (false, "accuracy (disambiguated)"),
    ] {
        let bbq = only
            .iter()
            .map(|r| {
                r.bbq.as_ref().map(|b| {
                    b.items
                        .iter()
                        .filter(|i| i.example.ambiguous == ambiguous)
                        .map(|i| {
                            (
                                format!("{}#{}", i.example.category, i.example.example_id),
                                i.correct(),
                            )
                        })
                        .collect()
                })
            })
            .collect();
        rows.push(binary_row("BBQ".into(), figure, Better::Higher, bbq));
    }
    rows.push(ScoreRow {
        suite: "reward model".into(),
        figure: "win rate vs its baseline".into(),
        better: Better::Higher,
        cells: only
            .iter()
            .map(|r| {
                r.helpfulness.as_ref().map(|h| Cell {
                    value: h.metrics.win_rate,
                    interval: h.metrics.interval,
                    n: h.metrics.n,
                    change: None,
                })
            })
            .collect(),
    });
    rows.retain(|r| r.cells.iter().any(Option::is_some));
    Scorecard {
        format_version: FORMAT_VERSION,
        columns: reports
            .iter()
            .map(|(name, r)| Column {
                name: name.clone(),
                model: r.card.model.clone(),
                date: r.card.date.clone(),
            })
            .collect(),
        rows,
    }
}

/// Reads each directory's report.json, in order.
pub fn read_reports(dirs: &[&Path]) -> Result<Vec<(String, Report)>> {
    if dirs.len() < 2 {
        return Err(EvalError::option(
            "reports",
            "a scorecard compares two or more report directories",
        ));
    }
    dirs.iter()
        .map(|d| {
            let path = d.join("report.json");
            if !path.is_file() {
                return Err(EvalError::Input(format!(
                    "{}: no report.json (evaluate the checkpoint with `tiller eval` first)",
                    d.display()
                )));
            }
            Ok((d.display().to_string(), Report::read(&path)?))
        })
        .collect()
}

impl Scorecard {
    /// Writes scorecard.json and scorecard.html into `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out).map_err(|e| EvalError::io(out, e))?;
        let path = out.join("scorecard.json");
        let json = serde_json::to_string_pretty(self).map_err(|source| EvalError::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, json).map_err(|e| EvalError::io(&path, e))?;
        let path = out.join("scorecard.html");
        std::fs::write(&path, crate::report::scorecard_html::page(self))
            .map_err(|e| EvalError::io(&path, e))?;
        Ok(())
    }
}
