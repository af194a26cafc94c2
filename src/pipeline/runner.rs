//! Runs a pipeline like a build system. A stage's key is a sha256 over its resolved
//! config, its parents' keys and output hashes, the hashes of the base models and data
//! files it reads, and the tiller version. A stage whose manifest carries the same key is
//! skipped; any other stage runs — and since a parent's key is part of each child's key,
//! everything downstream of a change runs again. A stage that was interrupted resumes
//! from its last checkpoint when its key is unchanged (`.stage-key` records the key of
//! the attempt in progress); otherwise its directory is cleared and it starts over.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;
use tiller_model::train::{latest_checkpoint, list_checkpoints};

use crate::pipeline::config::{references, resolve, PipelineConfig, StageKind};
use crate::pipeline::hashing::{count_rows, file_sha256, output_sha256, text_sha256};
use crate::pipeline::manifest::{
    git_revision, manifest_path, tiller_version, BaseModel, Dataset, Manifest, Parent,
    MANIFEST_FILE, MANIFEST_VERSION,
};
use crate::pipeline::stages::{StageConfig, StageRun};
use tiller_eval::report::card::utc_now;

/// Test hook: `TILLER_PIPELINE_KILL_AT=STAGE:STEP` ends the process (exit status 137, no
/// cleanup, as a kill would) right after STAGE reports step STEP.
pub const KILL_ENV: &str = "TILLER_PIPELINE_KILL_AT";
/// The key of the attempt in progress, inside the stage directory.
const IN_PROGRESS_FILE: &str = ".stage-key";

/// A stage with references resolved and its config typed.
struct Planned {
    name: String,
    kind: StageKind,
    dir: PathBuf,
    parents: Vec<String>,
    nproc_per_node: usize,
    config: StageConfig,
}

/// What happened to each stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageStatus {
    Skipped,
    Ran,
    Resumed,
}

#[derive(Debug)]
pub struct RunSummary {
    pub stages: Vec<(String, StageStatus, Manifest)>,
}

/// Resolves and types every stage before running any, so a typo in the last stage fails
/// in a second rather than after an hour of training.
fn plan(config: &PipelineConfig) -> Result<Vec<Planned>> {
    let mut planned: Vec<Planned> = Vec::new();
    for spec in &config.stages {
        let at = format!(
            "{}:{} (stage {:?})",
            config.path.display(),
            spec.line,
            spec.name
        );
        let outputs: BTreeMap<&str, PathBuf> = planned
            .iter()
            .map(|p| (p.name.as_str(), p.config.output()))
            .collect();
        let table = resolve(&spec.table, &|name| outputs[name].clone());
        let dir = config.stage_dir(&spec.name);
        let typed = StageConfig::parse(spec.kind, table, &dir, &at)?;
        planned.push(Planned {
            name: spec.name.clone(),
            kind: spec.kind,
            dir,
            parents: references(&spec.table),
            nproc_per_node: spec.nproc_per_node,
            config: typed,
        });
    }
    Ok(planned)
}

/// Runs `config`'s stages in order; `kill_at` is the test hook (see [`KILL_ENV`]).
pub fn run(config: &PipelineConfig) -> Result<RunSummary> {
    let kill_at = kill_hook()?;
    let planned = plan(config)?;
    std::fs::create_dir_all(&config.out)
        .with_context(|| format!("cannot create {}", config.out.display()))?;
    let mut done: BTreeMap<String, Manifest> = BTreeMap::new();
    let mut summary = RunSummary { stages: Vec::new() };
    let n = planned.len();
    for (i, stage) in planned.iter().enumerate() {
        println!(
            "==> stage {}/{n}: {} ({})",
            i + 1,
            stage.name,
            stage.kind.name()
        );
        let kill = kill_at
            .as_ref()
            .filter(|(name, _)| *name == stage.name)
            .map(|(_, step)| *step);
        let (status, manifest) = run_stage(stage, &done, kill)?;
        done.insert(stage.name.clone(), manifest.clone());
        summary.stages.push((stage.name.clone(), status, manifest));
    }
    Ok(summary)
}

fn kill_hook() -> Result<Option<(String, u64)>> {
    let Ok(value) = std::env::var(KILL_ENV) else {
        return Ok(None);
    };
    let parsed = value
        .rsplit_once(':')
        .and_then(|(stage, step)| Some((stage.to_owned(), step.parse().ok()?)));
    parsed
        .map(Some)
        .with_context(|| format!("{KILL_ENV}={value}: expected STAGE:STEP"))
}

/// Inputs of a stage, hashed: parents (by their manifests), base models, data files.
struct Inputs {
    parents: Vec<Parent>,
    base_models: Vec<BaseModel>,
    datasets: Vec<Dataset>,
}

fn hash_inputs(stage: &Planned, done: &BTreeMap<String, Manifest>) -> Result<Inputs> {
    let mut parents = Vec::new();
    for name in &stage.parents {
        let m = &done[name];
        parents.push(Parent {
            stage: name.clone(),
            kind: m.kind,
            path: m.output.clone(),
            manifest: m.output_dir().join(MANIFEST_FILE).display().to_string(),
            key: m.key.clone(),
            output_sha256: m.output_sha256.clone(),
        });
    }
    let is_parent = |p: &Path| parents.iter().any(|x| Path::new(&x.path) == p);
    let mut base_models = Vec::new();
    for (role, dir) in stage.config.models() {
        if is_parent(&dir) {
            continue;
        }
        if !dir.exists() {
            anyhow::bail!(
                "stage {}: `{role}` {} does not exist",
                stage.name,
                dir.display()
            );
        }
        let own = dir.join(MANIFEST_FILE);
        base_models.push(BaseModel {
            path: dir.display().to_string(),
            sha256: output_sha256(&dir)?,
            manifest: own.exists().then(|| own.display().to_string()),
        });
    }
    let mut datasets = Vec::new();
    for (role, path) in stage.config.data()? {
        if !path.is_file() {
            anyhow::bail!(
                "stage {}: `{role}` {} is not a file",
                stage.name,
                path.display()
            );
        }
        datasets.push(Dataset {
            role,
            path: path.display().to_string(),
            sha256: file_sha256(&path)?,
            rows: count_rows(&path)?,
        });
    }
    Ok(Inputs {
        parents,
        base_models,
        datasets,
    })
}

/// The cache key: everything that decides the stage's output.
fn stage_key(stage: &Planned, config: &serde_json::Value, inputs: &Inputs) -> String {
    let parents: Vec<_> = inputs
        .parents
        .iter()
        .map(|p| json!([p.stage, p.key, p.output_sha256]))
        .collect();
    let models: Vec<_> = inputs
        .base_models
        .iter()
        .map(|m| json!([m.path, m.sha256]))
        .collect();
    let data: Vec<_> = inputs
        .datasets
        .iter()
        .map(|d| json!([d.role, d.path, d.sha256]))
        .collect();
    let material = json!({
        "kind": stage.kind,
        "config": config,
        "parents": parents,
        "base_models": models,
        "datasets": data,
        "tiller_version": tiller_version(),
    });
    text_sha256(&material.to_string())
}

fn run_stage(
    stage: &Planned,
    done: &BTreeMap<String, Manifest>,
    kill_at: Option<u64>,
) -> Result<(StageStatus, Manifest)> {
    let inputs = hash_inputs(stage, done)?;
    let config = stage.config.to_json()?;
    let mut key = stage_key(stage, &config, &inputs);
    let output = stage.config.output();
    let previous = Manifest::read(&manifest_path(&stage.dir)).ok();
    // An export always runs (it reads the database now); the content it exported is
    // part of its key, so unchanged votes leave everything downstream cached.
    let exports = stage.kind == StageKind::AnnotateExport;
    if let Some(m) = &previous {
        if !exports && m.key == key && output.exists() {
            println!("    up to date (key {}), skipped", &key[..12]);
            return Ok((StageStatus::Skipped, m.clone()));
        }
    }
    let in_progress = stage.dir.join(IN_PROGRESS_FILE);
    let same_attempt = std::fs::read_to_string(&in_progress).is_ok_and(|k| k.trim() == key);
    let resume =
        stage.config.resumable() && same_attempt && latest_checkpoint(&stage.dir)?.is_some();
    if resume {
        println!("    resuming the interrupted run from its last checkpoint");
    } else if stage.dir.exists() && !exports {
        if previous.is_some() || same_attempt {
            println!("    inputs changed (key {}): running again", &key[..12]);
        }
        std::fs::remove_dir_all(&stage.dir)
            .with_context(|| format!("cannot clear {}", stage.dir.display()))?;
    }
    std::fs::create_dir_all(&stage.dir)
        .with_context(|| format!("cannot create {}", stage.dir.display()))?;
    std::fs::write(&in_progress, &key)
        .with_context(|| format!("cannot write {}", in_progress.display()))?;

    let started_at = utc_now();
    let run = StageRun {
        name: &stage.name,
        resume,
        kill_at,
        nproc_per_node: stage.nproc_per_node,
    };
    let outcome = stage.config.run(&run)?;
    if let Some(page) = tiller_eval::report::curves::write_curves_if_logged(&stage.dir)? {
        println!("    curves: {}", page.display());
    }
    let mut annotations: Vec<_> = inputs
        .parents
        .iter()
        .flat_map(|p| done[&p.stage].annotations.iter().cloned())
        .collect();
    if let Some(own) = outcome.annotations {
        key = text_sha256(&format!("{key}{}", own.content_sha256));
        if previous.as_ref().is_some_and(|m| m.key == key) {
            println!("    no new votes since the last export");
        }
        annotations.push(own);
    }
    // Human data joins the lineage of everything downstream of it, once.
    let mut seen = std::collections::BTreeSet::new();
    annotations.retain(|a| seen.insert(a.content_sha256.clone()));
    let manifest = Manifest {
        format_version: MANIFEST_VERSION,
        stage: stage.name.clone(),
        kind: stage.kind,
        key,
        output: output.display().to_string(),
        output_sha256: output_sha256(&output)?,
        parents: inputs.parents,
        base_models: inputs.base_models,
        datasets: inputs.datasets,
        config,
        seed: stage.config.seed(),
        tiller_version: tiller_version().to_owned(),
        git_revision: git_revision().map(str::to_owned),
        started_at,
        finished_at: utc_now(),
        metrics: outcome.metrics,
        annotations,
    };
    manifest.write(&manifest_path(&stage.dir))?;
    // A finished stage's checkpoints only served to resume it; its final weights stay.
    // (Each holds the weights and the optimizer moments: ~1.6 GB for the default model.)
    for (_, checkpoint) in list_checkpoints(&stage.dir)? {
        std::fs::remove_dir_all(&checkpoint)
            .with_context(|| format!("cannot remove {}", checkpoint.display()))?;
    }
    std::fs::remove_file(&in_progress)
        .with_context(|| format!("cannot remove {}", in_progress.display()))?;
    let status = if resume {
        StageStatus::Resumed
    } else {
        StageStatus::Ran
    };
    Ok((status, manifest))
}
