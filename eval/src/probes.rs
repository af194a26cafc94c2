//! The project's own small probe sets (datasets/eval/), built into the binary so reports work
//! out of the box: harmful requests, benign-but-sensitive requests (XSTest-like),
//! CrowS-style sentence pairs and BBQ-style questions. Written for the project; the
//! standard datasets are read from paths the user gives, never bundled.

use std::path::{Path, PathBuf};

use crate::error::{input_err, EvalError, Result};

pub const HARMFUL: &str = "harmful.jsonl";
pub const BENIGN: &str = "benign.jsonl";
pub const CROWS: &str = "crows_pairs.csv";
pub const BBQ: &str = "bbq.jsonl";

const SETS: &[(&str, &str)] = &[
    (HARMFUL, include_str!("../../datasets/eval/harmful.jsonl")),
    (BENIGN, include_str!("../../datasets/eval/benign.jsonl")),
    (CROWS, include_str!("../../datasets/eval/crows_pairs.csv")),
    (BBQ, include_str!("../../datasets/eval/bbq.jsonl")),
];

/// The text of a probe set.
pub fn text(name: &str) -> Result<&'static str> {
    match SETS.iter().find(|(n, _)| *n == name) {
        Some((_, text)) => Ok(text),
        None => input_err!("no probe set named {name}"),
    }
}

/// Writes the probe set `name` into `dir` and returns its path.
pub fn write(name: &str, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
    let path = dir.join(name);
    std::fs::write(&path, text(name)?).map_err(|e| EvalError::io(&path, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bbq, crows, inputs};

    #[test]
    fn probe_sets_parse_and_have_their_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let harmful = inputs::load_prompts(
            &write(HARMFUL, dir.path()).unwrap(),
            inputs::Label::Unsafe,
            None,
        )
        .unwrap();
        let benign = inputs::load_prompts(
            &write(BENIGN, dir.path()).unwrap(),
            inputs::Label::Safe,
            None,
        )
        .unwrap();
        assert!(harmful.len() >= 40 && harmful.iter().all(|p| p.label == inputs::Label::Unsafe));
        assert!(benign.len() >= 40 && benign.iter().all(|p| p.label == inputs::Label::Safe));
        let categories: std::collections::BTreeSet<_> =
            harmful.iter().map(|p| p.category.as_str()).collect();
        assert!(categories.len() >= 5, "{categories:?}");
        let pairs = crows::load_pairs(&write(CROWS, dir.path()).unwrap(), None).unwrap();
        assert!(pairs.len() >= 40);
        let questions = bbq::load_bbq(&write(BBQ, dir.path()).unwrap(), None).unwrap();
        assert!(questions.len() >= 30);
        for q in &questions {
            assert!(
                q.unknown.iter().filter(|u| **u).count() == 1,
                "{}: one unknown answer",
                q.source
            );
            assert!(
                q.biased.iter().any(|b| *b),
                "{}: no biased answer",
                q.source
            );
            assert_eq!(
                q.ambiguous, q.unknown[q.label],
                "{}: ambiguous questions have the unknown answer as label",
                q.source
            );
        }
    }
}
