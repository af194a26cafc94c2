//! `tiller eval compare DIR...`: one scorecard over report directories and checkpoints in
//! any mix. A report directory (report.json from `tiller eval`) is read as it is; a
//! checkpoint (config.json and its weights) is evaluated first, every one with the same
//! options, into `OUT/<its directory name>/`, so all columns answer the same prompts and
//! pair item by item. Every directory is classified before anything runs: one that is
//! neither is an error naming it, not a failure an hour into the first evaluation.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{EvalError, Result};
use crate::evaluate::evaluate;
use crate::options::EvalOptions;
use crate::progress::Progress;
use crate::report::Report;
use crate::run::is_checkpoint;
use crate::scorecard::{scorecard, Scorecard};

/// One column's directory, by what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Holds report.json: read as it is.
    Report(PathBuf),
    /// Holds config.json and weights: evaluated into `OUT/<name>/`.
    Checkpoint { dir: PathBuf, name: String },
}

/// Classifies every directory; checkpoints get names unique within the scorecard (their
/// directory name, `-2`, `-3`, ... after a repeat). A directory with both a report and
/// weights counts as a report: its numbers are already there.
pub fn sources(dirs: &[PathBuf]) -> Result<Vec<Source>> {
    if dirs.len() < 2 {
        return Err(EvalError::option(
            "reports",
            "a scorecard compares two or more report directories or checkpoints",
        ));
    }
    let mut taken: Vec<String> = Vec::new();
    dirs.iter()
        .map(|dir| {
            if dir.join("report.json").is_file() {
                return Ok(Source::Report(dir.clone()));
            }
            if !is_checkpoint(dir) {
                return Err(EvalError::Input(format!(
                    "{}: neither a report directory (report.json from `tiller eval`) nor a checkpoint (config.json and model.safetensors)",
                    dir.display()
                )));
            }
            let stem = dir
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| !n.is_empty() && *n != "." && *n != "..")
                .unwrap_or("checkpoint")
                .to_owned();
            let mut name = stem.clone();
            let mut i = 1;
            while taken.contains(&name) {
                i += 1;
                name = format!("{stem}-{i}");
            }
            taken.push(name.clone());
            Ok(Source::Checkpoint {
                dir: dir.clone(),
                name,
            })
        })
        .collect()
}

/// Evaluates the checkpoints among `dirs` with `template` (its `model` and `out` replaced
/// per checkpoint), then builds the scorecard of all of them in the order given and writes
/// it into `out`. `judge_progress` gives each evaluation its judge's progress.
pub fn compare(
    dirs: &[PathBuf],
    template: &EvalOptions,
    out: &Path,
    progress: &mut dyn Progress,
    judge_progress: &mut dyn FnMut() -> Box<dyn Progress>,
) -> Result<Scorecard> {
    let sources = sources(dirs)?;
    let checkpoints = sources
        .iter()
        .filter(|s| matches!(s, Source::Checkpoint { .. }))
        .count();
    if checkpoints > 0 {
        if template.safety.completions.is_some() {
            return Err(EvalError::option(
                "completions",
                "answers from a file are no checkpoint's: compare evaluates each checkpoint itself (give report directories instead)",
            ));
        }
        // Checked once before the first evaluation, as each evaluation would.
        let mut first = template.clone();
        first.model = Some(PathBuf::from("checkpoint"));
        first.validate()?;
    }
    let mut reports = Vec::with_capacity(sources.len());
    let mut done = 0;
    for source in &sources {
        match source {
            Source::Report(dir) => {
                reports.push((
                    dir.display().to_string(),
                    Report::read(&dir.join("report.json"))?,
                ));
            }
            Source::Checkpoint { dir, name } => {
                done += 1;
                let options = EvalOptions {
                    model: Some(dir.clone()),
                    out: out.join(name),
                    ..template.clone()
                };
                tracing::info!(
                    "checkpoint {done}/{checkpoints}: evaluating {} into {}",
                    dir.display(),
                    options.out.display()
                );
                let started = Instant::now();
                let report =
                    evaluate(&options, progress, judge_progress()).map_err(|e| match e {
                        // Kept as it is, so the caller still words it as its flag or key.
                        EvalError::Option { .. } => e,
                        other => other.running(format!("evaluating {}", dir.display())),
                    })?;
                tracing::info!(
                    "checkpoint {done}/{checkpoints}: {} evaluated in {:.0}s",
                    dir.display(),
                    started.elapsed().as_secs_f64()
                );
                reports.push((dir.display().to_string(), report));
            }
        }
    }
    let card = scorecard(&reports);
    card.write(out)?;
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(root: &Path, name: &str, files: &[&str]) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in files {
            std::fs::write(dir.join(f), "{}").unwrap();
        }
        dir
    }

    #[test]
    fn directories_are_classified_and_checkpoints_named_uniquely() {
        let tmp = tempfile::tempdir().unwrap();
        let report = dir_with(tmp.path(), "round1", &["report.json"]);
        let a = dir_with(tmp.path(), "a/model", &["config.json", "model.safetensors"]);
        let b = dir_with(
            tmp.path(),
            "b/model",
            &["config.json", "model.safetensors.index.json"],
        );
        let got = sources(&[report.clone(), a.clone(), b.clone()]).unwrap();
        assert_eq!(
            got,
            vec![
                Source::Report(report.clone()),
                Source::Checkpoint {
                    dir: a.clone(),
                    name: "model".into()
                },
                Source::Checkpoint {
                    dir: b,
                    name: "model-2".into()
                },
            ]
        );
        // config.json without weights is no checkpoint; the error names the directory.
        let half = dir_with(tmp.path(), "half", &["config.json"]);
        let err = sources(&[a.clone(), half.clone()]).unwrap_err().to_string();
        assert!(
            err.contains(&half.display().to_string()) && err.contains("neither"),
            "{err}"
        );
        let err = sources(&[a]).unwrap_err();
        assert!(
            matches!(
                err,
                EvalError::Option {
                    option: "reports",
                    ..
                }
            ),
            "{err}"
        );
    }
}
