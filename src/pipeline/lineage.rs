//! `tiller lineage DIR`: the tree of manifests from a checkpoint back to its base models,
//! with the data, human annotations and headline metrics of every step.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::pipeline::manifest::{Manifest, MANIFEST_FILE};

/// The lineage of the checkpoint (or report directory) `dir`, as indented text.
pub fn render(dir: &Path) -> Result<String> {
    let path = dir.join(MANIFEST_FILE);
    if !path.is_file() {
        bail!(
            "{}: no {MANIFEST_FILE} (only outputs of `tiller run` have a lineage)",
            dir.display()
        );
    }
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
