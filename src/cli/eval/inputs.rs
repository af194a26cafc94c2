//! Which files an evaluation reads: the ones given, or the project's probe sets (written
//! into `OUT/inputs/` so the report's checksums name real files).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::{BiasOpts, CommonArgs, SafetyOpts};
use crate::eval::bbq::{load_bbq, BbqExample};
use crate::eval::crows::{load_pairs, CrowsPair};
use crate::eval::inputs::{load_completions, load_prompts, Label, SafetyPrompt};
use crate::eval::probes;
use crate::report::ModelCard;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Both,
    Safety,
    Bias,
}

impl Which {
    pub fn safety(self) -> bool {
        self != Which::Bias
    }
    pub fn bias(self) -> bool {
        self != Which::Safety
    }
}

pub struct Inputs {
    pub prompts: Option<Vec<SafetyPrompt>>,
    pub crows: Option<Vec<CrowsPair>>,
    pub bbq: Option<Vec<BbqExample>>,
    /// (role, path, rows) of every file read.
    files: Vec<(String, PathBuf, usize)>,
}

/// The given file, or the named probe set written under `out/inputs`.
fn or_probe(given: &Option<PathBuf>, probe: &str, out: &Path) -> Result<PathBuf> {
    match given {
        Some(path) => Ok(path.clone()),
        None => probes::write(probe, &out.join("inputs")),
    }
}

impl Inputs {
    pub fn load(
        common: &CommonArgs,
        safety: &SafetyOpts,
        bias: &BiasOpts,
        which: Which,
        out: &Path,
    ) -> Result<Inputs> {
        let limit = common.limit;
        let mut inputs = Inputs {
            prompts: None,
            crows: None,
            bbq: None,
            files: Vec::new(),
        };
        if which.safety() {
            if let Some(path) = &safety.completions {
                if safety.harmful.is_some() || safety.benign.is_some() {
                    bail!("--completions replaces --harmful and --benign (its rows carry their own labels)");
                }
                let rows = load_completions(path, limit)?;
                inputs
                    .files
                    .push(("completions".into(), path.clone(), rows.len()));
                inputs.prompts = Some(rows);
            } else {
                let harmful = or_probe(&safety.harmful, probes::HARMFUL, out)?;
                let benign = or_probe(&safety.benign, probes::BENIGN, out)?;
                let mut prompts = load_prompts(&harmful, Label::Unsafe, limit)?;
                inputs
                    .files
                    .push(("harmful".into(), harmful, prompts.len()));
                let more = load_prompts(&benign, Label::Safe, limit)?;
                inputs.files.push(("benign".into(), benign, more.len()));
                prompts.extend(more);
                inputs.prompts = Some(prompts);
            }
        }
        if which.bias() {
            let crows = or_probe(&bias.crows_pairs, probes::CROWS, out)?;
            let pairs = load_pairs(&crows, limit)?;
            inputs
                .files
                .push(("crows_pairs".into(), crows, pairs.len()));
            inputs.crows = Some(pairs);
            let bbq = or_probe(&bias.bbq, probes::BBQ, out)?;
            let examples = load_bbq(&bbq, limit)?;
            inputs.files.push(("bbq".into(), bbq, examples.len()));
            inputs.bbq = Some(examples);
        }
        Ok(inputs)
    }

    /// Whether anything needs a model (generation or scoring).
    pub fn needs_model(&self) -> bool {
        self.crows.is_some()
            || self.bbq.is_some()
            || self
                .prompts
                .as_ref()
                .is_some_and(|p| p.iter().any(|p| p.completion.is_none()))
    }

    /// Records the files (with checksums and row counts) in the model card.
    pub fn describe(&self, card: &mut ModelCard) -> Result<()> {
        for (role, path, rows) in &self.files {
            card.add_data(role, path, *rows)?;
        }
        Ok(())
    }
}
