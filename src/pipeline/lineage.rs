//! `tiller lineage DIR`: the tree of manifests from a checkpoint back to its base models,
//! with the data, human annotations and headline metrics of every step; with
//! `--check-consent`, which checkpoints stand on votes whose annotators have since
//! withdrawn consent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tiller_annotate::WithdrawnMatch;

use crate::pipeline::manifest::{AnnotationSummary, Manifest, MANIFEST_FILE};

/// A checkpoint (or report) in the lineage whose training votes include withdrawn ones.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentFinding {
    /// The manifest's `output`.
    pub output: String,
    /// Withdrawn annotators, with the listed votes of theirs, by pseudonym.
    pub withdrawn: Vec<WithdrawnMatch>,
}

/// The manifest file of `dir`, or an error saying only `tiller run` outputs have one.
fn manifest_path(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(MANIFEST_FILE);
    if !path.is_file() {
        bail!(
            "{}: no {MANIFEST_FILE} (only outputs of `tiller run` have a lineage)",
            dir.display()
        );
    }
    Ok(path)
}

/// Every checkpoint in the lineage of `dir` (itself included) trained, directly or
/// through a parent, on votes whose annotators have withdrawn consent since. Each
/// annotation database is asked about the vote ids and pseudonyms its export manifest
/// lists (`provenance`, manifest format 2).
pub fn check_consent(dir: &Path) -> Result<Vec<ConsentFinding>> {
    let mut findings = Vec::new();
    let mut done = HashMap::new();
    consent_node(&manifest_path(dir)?, &mut done, &mut findings)?;
    Ok(findings)
}

/// The withdrawn annotators in the subtree of `path`; records a finding when any.
fn consent_node(
    path: &Path,
    done: &mut HashMap<PathBuf, Vec<WithdrawnMatch>>,
    findings: &mut Vec<ConsentFinding>,
) -> Result<Vec<WithdrawnMatch>> {
    if let Some(known) = done.get(path) {
        return Ok(known.clone());
    }
    // Mark first: a manifest that (wrongly) lists itself as an ancestor ends here.
    done.insert(path.to_path_buf(), Vec::new());
    let m = Manifest::read(path)?;
    let mut found: BTreeMap<String, WithdrawnMatch> = BTreeMap::new();
    let mut merge = |matches: Vec<WithdrawnMatch>| {
        for w in matches {
            let entry = found
                .entry(w.pseudonym.clone())
                .or_insert_with(|| WithdrawnMatch {
                    vote_ids: Vec::new(),
                    ..w.clone()
                });
            entry.vote_ids.extend(w.vote_ids);
            entry.vote_ids.sort_unstable();
            entry.vote_ids.dedup();
        }
    };
    for a in &m.annotations {
        merge(withdrawn_in(a)?);
    }
    let children = m.parents.iter().map(|p| PathBuf::from(&p.manifest)).chain(
        m.base_models
            .iter()
            .filter_map(|b| b.manifest.as_ref().map(PathBuf::from)),
    );
    for child in children.filter(|c| c.is_file()) {
        merge(consent_node(&child, done, findings)?);
    }
    let withdrawn: Vec<WithdrawnMatch> = found.into_values().collect();
    if !withdrawn.is_empty() {
        findings.push(ConsentFinding {
            output: m.output.clone(),
            withdrawn: withdrawn.clone(),
        });
    }
    done.insert(path.to_path_buf(), withdrawn.clone());
    Ok(withdrawn)
}

/// Asks the annotation database of one summary about the votes its export listed.
fn withdrawn_in(a: &AnnotationSummary) -> Result<Vec<WithdrawnMatch>> {
    let path = Path::new(&a.export_manifest);
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the annotation export manifest {}",
            path.display()
        )
    })?;
    let manifest: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let Some(provenance) = manifest.get("provenance") else {
        bail!(
            "{}: field `provenance` missing (an export before manifest format 2 lists no votes); \
             re-run its annotate-export stage to check consent",
            path.display()
        );
    };
    let provenance: tiller_annotate::export::Provenance =
        serde_json::from_value(provenance.clone())
            .with_context(|| format!("{}: field `provenance`", path.display()))?;
    let pseudonyms: Vec<String> = provenance
        .annotators
        .into_iter()
        .map(|a| a.pseudonym)
        .collect();
    tiller_annotate::check_consent(Path::new(&a.database), &provenance.vote_ids, &pseudonyms)
        .with_context(|| format!("checking consent in {}", a.database))
}

/// The findings of [`check_consent`] as text, one checkpoint per line.
pub fn render_consent(dir: &Path, findings: &[ConsentFinding]) -> String {
    let mut out = String::new();
    if findings.is_empty() {
        let _ = writeln!(
            out,
            "{}: no annotator in its lineage has withdrawn consent",
            dir.display()
        );
        return out;
    }
    let _ = writeln!(
        out,
        "{}: votes of annotators who withdrew consent are in the lineage of {} checkpoint(s):",
        dir.display(),
        findings.len()
    );
    for f in findings {
        let who: Vec<String> = f
            .withdrawn
            .iter()
            .map(|w| {
                format!(
                    "{} (withdrawn {}, {} listed votes)",
                    w.pseudonym,
                    w.withdrawn_at,
                    w.vote_ids.len()
                )
            })
            .collect();
        let _ = writeln!(out, "  {}: {}", f.output, who.join(", "));
    }
    out
}

/// The lineage of the checkpoint (or report directory) `dir`, as indented text.
pub fn render(dir: &Path) -> Result<String> {
    let path = manifest_path(dir)?;
    let mut out = String::new();
    let mut seen = BTreeSet::new();
    node(&path, "", &mut out, &mut seen)?;
    Ok(out)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// One manifest: its header line, details, then its inputs as children.
fn node(path: &Path, indent: &str, out: &mut String, seen: &mut BTreeSet<PathBuf>) -> Result<()> {
    let m = Manifest::read(path)?;
    let _ = writeln!(
        out,
        "{} [{} stage {:?}] key {}, finished {}",
        m.output,
        m.kind.name(),
        m.stage,
        short(&m.key),
        m.finished_at
    );
    let revision = m
        .git_revision
        .as_deref()
        .map_or(String::new(), |r| format!(" ({})", short(r)));
    let mut details = vec![format!(
        "tiller {}{revision}, seed {}",
        m.tiller_version,
        m.seed.map_or("-".into(), |s| s.to_string())
    )];
    for d in &m.datasets {
        let rows = d.rows.map_or(String::new(), |r| format!("{r} rows, "));
        details.push(format!(
            "{} {} ({rows}sha256 {})",
            d.role,
            d.path,
            short(&d.sha256)
        ));
    }
    for a in &m.annotations {
        details.push(format!(
            "human votes from {}: campaigns [{}], {} annotators, {} votes, {} pairs ({} with consent), {} .. {}",
            a.database,
            a.campaigns.join(", "),
            a.annotators,
            a.votes,
            a.pairs,
            a.consented_rows,
            a.first_vote.as_deref().unwrap_or("-"),
            a.last_vote.as_deref().unwrap_or("-")
        ));
    }
    if !m.metrics.is_empty() {
        let shown: Vec<String> = m
            .metrics
            .iter()
            .filter(|(k, _)| !k.starts_with("baseline/"))
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect();
        details.push(format!("metrics: {}", shown.join(", ")));
    }
    let children = m.parents.len() + m.base_models.len();
    let bar = if children > 0 { "│ " } else { "  " };
    for d in details {
        let _ = writeln!(out, "{indent}{bar}  {d}");
    }
    if !seen.insert(path.to_path_buf()) {
        let _ = writeln!(out, "{indent}  (shown above)");
        return Ok(());
    }
    let mut left = children;
    for p in &m.parents {
        left -= 1;
        let (branch, next) = branch(indent, left == 0);
        out.push_str(&branch);
        let manifest = Path::new(&p.manifest);
        if manifest.is_file() {
            node(manifest, &next, out, seen)?;
        } else {
            let _ = writeln!(
                out,
                "{} [{} stage {:?}] (manifest missing)",
                p.path,
                p.kind.name(),
                p.stage
            );
        }
    }
    for b in &m.base_models {
        left -= 1;
        let (branch, next) = branch(indent, left == 0);
        out.push_str(&branch);
        match &b.manifest {
            Some(own) if Path::new(own).is_file() => node(Path::new(own), &next, out, seen)?,
            _ => {
                let _ = writeln!(out, "{} [base model] sha256 {}", b.path, short(&b.sha256));
            }
        }
    }
    Ok(())
}

/// The branch drawn before a child and the indent of the child's own lines.
fn branch(indent: &str, last: bool) -> (String, String) {
    if last {
        (format!("{indent}└─ "), format!("{indent}   "))
    } else {
        (format!("{indent}├─ "), format!("{indent}│  "))
    }
}
