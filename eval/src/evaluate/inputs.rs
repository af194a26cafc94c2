//! Which files an evaluation reads: the ones given, or the project's probe sets (written
//! into `OUT/inputs/` so the report's checksums name real files).

use std::path::{Path, PathBuf};

use crate::bbq::{load_bbq, BbqExample};
use crate::crows::{load_pairs, CrowsPair};
use crate::error::Result;
use crate::inputs::{load_completions, load_suite, Label, SafetyPrompt};
use crate::options::EvalOptions;
use crate::probes;
use crate::report::ModelCard;

pub struct Inputs {
    pub prompts: Option<Vec<SafetyPrompt>>,
    pub crows: Option<Vec<CrowsPair>>,
    pub bbq: Option<Vec<BbqExample>>,
    /// (role, path, rows) of every file read.
    files: Vec<(String, PathBuf, usize)>,
    /// What the loaders left out, and why.
    notes: Vec<String>,
}

/// The given file, or the named probe set written under `out/inputs`.
fn or_probe(given: &Option<PathBuf>, probe: &str, out: &Path) -> Result<PathBuf> {
    match given {
        Some(path) => Ok(path.clone()),
        None => probes::write(probe, &out.join("inputs")),
    }
}

impl Inputs {
    /// Reads the files `options` name (or writes and reads the probe sets); the options
    /// are already validated.
    pub fn load(options: &EvalOptions, out: &Path) -> Result<Inputs> {
        let (limit, which, safety, bias) =
            (options.limit, options.which, &options.safety, &options.bias);
        let mut inputs = Inputs {
            prompts: None,
            crows: None,
            bbq: None,
            files: Vec::new(),
            notes: Vec::new(),
        };
        if which.safety() {
            if let Some(path) = &safety.completions {
                let rows = load_completions(path, limit)?;
                inputs
                    .files
                    .push(("completions".into(), path.clone(), rows.len()));
                inputs.prompts = Some(rows);
            } else {
                let mut prompts = Vec::new();
                let sides = [
                    ("harmful", &safety.harmful, probes::HARMFUL, Label::Unsafe),
                    ("benign", &safety.benign, probes::BENIGN, Label::Safe),
                ];
                for (role, given, probe, label) in sides {
                    let files = match given.as_slice() {
                        [] => vec![probes::write(probe, &out.join("inputs"))?],
                        several => several.to_vec(),
                    };
                    for path in files {
                        let mut suite = load_suite(&path, label, limit, safety.harmbench)?;
                        if let Some(sample) = safety.sample {
                            suite.prompts = sample.apply(suite.prompts);
                        }
                        inputs.notes.extend(suite.notes);
                        let role = format!("{role} ({}: {})", suite.format.name(), suite.name);
                        inputs.files.push((role, path, suite.prompts.len()));
                        prompts.extend(suite.prompts);
                    }
                }
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
        if !self.notes.is_empty() {
            card.set("notes", self.notes.join("; "));
        }
        Ok(())
    }
}
