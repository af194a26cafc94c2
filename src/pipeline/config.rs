//! `pipeline.toml`: a run directory and an ordered list of stages. Each `[[stages]]` table
//! names the stage and its kind; every other key is that kind's own config (the trainer's
//! TOML, without `out`: a stage writes into `<out>/<name>`). A string `"stages.NAME"`
//! anywhere in a stage stands for the output of the earlier stage NAME.
//! `nproc_per_node = N` on a training stage runs it as N data-parallel ranks, exactly as
//! the trainer's `--nproc-per-node N` does.
//!
//! ```toml
//! out = "runs/loop"
//!
//! [[stages]]
//! name = "sft"
//! kind = "sft"
//! model = "models/smollm2-135m-instruct"
//! [stages.data]
//! train = "data/sft/train.jsonl"
//!
//! [[stages]]
//! name = "dpo"
//! kind = "dpo"
//! model = "stages.sft"
//! [stages.data]
//! train = "data/preferences/train.jsonl"
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The prefix of a reference to an earlier stage's output.
pub const STAGE_REF: &str = "stages.";

/// What a stage does. Closed: every kind has one arm in `stages::run_stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageKind {
    Sft,
    Reward,
    Dpo,
    Kto,
    Ppo,
    Grpo,
    Rloo,
    Eval,
    AnnotateExport,
}

impl StageKind {
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Sft => "sft",
            StageKind::Reward => "reward",
            StageKind::Dpo => "dpo",
            StageKind::Kto => "kto",
            StageKind::Ppo => "ppo",
            StageKind::Grpo => "grpo",
            StageKind::Rloo => "rloo",
            StageKind::Eval => "eval",
            StageKind::AnnotateExport => "annotate-export",
        }
    }

    /// Whether a stage of this kind can run as several ranks (`nproc_per_node`): the
    /// trainers can.
    pub fn data_parallel(self) -> bool {
        match self {
            StageKind::Sft
            | StageKind::Reward
            | StageKind::Dpo
            | StageKind::Kto
            | StageKind::Ppo
            | StageKind::Grpo
            | StageKind::Rloo => true,
            StageKind::Eval | StageKind::AnnotateExport => false,
        }
    }
}

/// One `[[stages]]` table as written: its name, kind, the line of its header, and the
/// kind's own keys (references not yet resolved).
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub name: String,
    pub kind: StageKind,
    /// 1-based line of the stage's `[[stages]]` header, for error messages.
    pub line: usize,
    /// Ranks to run the stage as (`nproc_per_node`, 1 when absent).
    pub nproc_per_node: usize,
    pub table: toml::Table,
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    /// The run directory: each stage writes into `<out>/<name>`.
    pub out: PathBuf,
    pub stages: Vec<StageSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    out: PathBuf,
    #[serde(default)]
    stages: Vec<toml::Spanned<toml::Table>>,
}

impl PipelineConfig {
    /// Reads and checks a pipeline file: names unique and plain, kinds known, references
    /// only to earlier stages. Errors name the file, the stage's line and the key.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let raw: RawPipeline = toml::from_str(text)
            .with_context(|| format!("{}: invalid pipeline", path.display()))?;
        if raw.stages.is_empty() {
            bail!("{}: no [[stages]]", path.display());
        }
        let mut stages: Vec<StageSpec> = Vec::new();
        for spanned in raw.stages {
            let line = line_of(text, spanned.span().start);
            let at = format!("{}:{line}", path.display());
            let mut table = spanned.into_inner();
            let name = take_string(&mut table, "name", &at)?;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!("{at}: stage name {name:?} must be letters, digits, '-' or '_' (it names a directory)");
            }
            if stages.iter().any(|s| s.name == name) {
                bail!("{at}: a stage named {name:?} comes earlier; names must be unique");
            }
            let kind_text = take_string(&mut table, "kind", &at)?;
            let kind: StageKind = toml::Value::String(kind_text.clone())
                .try_into()
                .map_err(|_| {
                    anyhow::anyhow!(
                        "{at}: stage {name:?}: unknown kind {kind_text:?} (expected one of sft, reward, dpo, kto, ppo, grpo, rloo, eval, annotate-export)"
                    )
                })?;
            if table.contains_key("out") {
                bail!(
                    "{at}: stage {name:?}: `out` is set by the pipeline (<out>/{name}); remove it"
                );
            }
            let nproc_per_node = take_nproc(&mut table, &at, &name, kind)?;
            let earlier: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
            for reference in references(&table) {
                if !earlier.contains(&reference.as_str()) {
                    bail!(
                        "{at}: stage {name:?} refers to \"{STAGE_REF}{reference}\", which is not an earlier stage (earlier: {})",
                        if earlier.is_empty() { "none".to_owned() } else { earlier.join(", ") }
                    );
                }
            }
            stages.push(StageSpec {
                name,
                kind,
                line,
                nproc_per_node,
                table,
            });
        }
        Ok(PipelineConfig {
            path: path.to_owned(),
            out: raw.out,
            stages,
        })
    }

    /// `<out>/<name>`: the stage's directory.
    pub fn stage_dir(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }
}

fn take_string(table: &mut toml::Table, key: &str, at: &str) -> Result<String> {
    match table.remove(key) {
        Some(toml::Value::String(s)) => Ok(s),
        Some(other) => bail!("{at}: `{key}` must be a string, got {}", other.type_str()),
        None => bail!("{at}: a stage needs `{key}`"),
    }
}

/// The stage's `nproc_per_node` (1 when absent): a positive integer, above 1 only on a
/// kind that runs data parallel.
fn take_nproc(table: &mut toml::Table, at: &str, name: &str, kind: StageKind) -> Result<usize> {
    let n = match table.remove("nproc_per_node") {
        None => return Ok(1),
        Some(toml::Value::Integer(n)) if n >= 1 => n as usize,
        Some(other) => {
            bail!("{at}: stage {name:?}: `nproc_per_node` must be a positive integer, got {other}")
        }
    };
    if n > 1 && !kind.data_parallel() {
        bail!(
            "{at}: stage {name:?}: `nproc_per_node = {n}`, but a {} stage does not run data parallel (only sft, reward, dpo, kto, ppo, grpo and rloo stages do)",
            kind.name()
        );
    }
    Ok(n)
}

/// 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Names of the stages referred to anywhere in `table` (`"stages.NAME"` strings), in order
/// of first appearance.
pub fn references(table: &toml::Table) -> Vec<String> {
    fn walk(value: &toml::Value, out: &mut Vec<String>) {
        match value {
            toml::Value::String(s) => {
                if let Some(name) = s.strip_prefix(STAGE_REF) {
                    if !out.iter().any(|n| n == name) {
                        out.push(name.to_owned());
                    }
                }
            }
            toml::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            toml::Value::Table(t) => t.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    table.values().for_each(|v| walk(v, &mut out));
    out
}

/// Replaces every `"stages.NAME"` string by `output(NAME)`.
pub fn resolve(table: &toml::Table, output: &dyn Fn(&str) -> PathBuf) -> toml::Table {
    fn walk(value: &toml::Value, output: &dyn Fn(&str) -> PathBuf) -> toml::Value {
        match value {
            toml::Value::String(s) => match s.strip_prefix(STAGE_REF) {
                Some(name) => toml::Value::String(output(name).display().to_string()),
                None => value.clone(),
            },
            toml::Value::Array(items) => {
                toml::Value::Array(items.iter().map(|v| walk(v, output)).collect())
            }
            toml::Value::Table(t) => toml::Value::Table(resolve(t, output)),
            _ => value.clone(),
        }
    }
    table
        .iter()
        .map(|(k, v)| (k.clone(), walk(v, output)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"out = "runs/x"

[[stages]]
name = "sft"
kind = "sft"
model = "base"
[stages.data]
train = "a.jsonl"

[[stages]]
name = "dpo"
kind = "dpo"
model = "stages.sft"
[stages.data]
train = "b.jsonl"
"#;

    #[test]
    fn parses_stages_in_order_with_lines_and_references() {
        let config = PipelineConfig::parse(GOOD, Path::new("p.toml")).unwrap();
        let names: Vec<_> = config.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["sft", "dpo"]);
        assert_eq!(config.stages[1].kind, StageKind::Dpo);
        assert_eq!(config.stages[1].line, 10);
        assert_eq!(references(&config.stages[1].table), ["sft"]);
        let resolved = resolve(&config.stages[1].table, &|n| {
            PathBuf::from("runs/x").join(n)
        });
        assert_eq!(resolved["model"].as_str(), Some("runs/x/sft"));
        assert_eq!(resolved["data"]["train"].as_str(), Some("b.jsonl"));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let later = GOOD.replace("model = \"base\"", "model = \"stages.dpo\"");
        let err = PipelineConfig::parse(&later, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p.toml:3") && err.contains("stages.dpo"),
            "{err}"
        );
        let kind = GOOD.replace("kind = \"dpo\"", "kind = \"dpx\"");
        let err = PipelineConfig::parse(&kind, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.toml:10") && err.contains("dpx"), "{err}");
        let dup = GOOD.replace("name = \"dpo\"", "name = \"sft\"");
        assert!(PipelineConfig::parse(&dup, Path::new("p.toml"))
            .unwrap_err()
            .to_string()
            .contains("unique"));
        let out = GOOD.replace("model = \"base\"", "model = \"base\"\nout = \"x\"");
        assert!(PipelineConfig::parse(&out, Path::new("p.toml"))
            .unwrap_err()
            .to_string()
            .contains("`out` is set by the pipeline"));
    }
}
