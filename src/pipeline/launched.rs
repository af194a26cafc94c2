//! A training stage with `nproc_per_node = N > 1`: its resolved config is written to
//! `<stage>/launch.toml` and the stage runs as `tiller <trainer> --config launch.toml`
//! on N ranks through the same launcher `--nproc-per-node` uses (`cli::launch`), so a
//! stage trains exactly as that command would. The trainer's summary stays in the rank
//! processes; the manifest's metrics are read back from the run's `metrics.jsonl`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::pipeline::stages::{StageConfig, StageOutcome, StageRun};

/// The file a launched stage's ranks read their config from, in the stage directory.
pub const LAUNCH_CONFIG: &str = "launch.toml";

impl StageConfig {
    /// The trainer's subcommand words and its resolved config as TOML; None for a stage
    /// that is not a trainer.
    fn trainer_command(&self) -> Result<Option<(&'static [&'static str], String)>> {
        Ok(Some(match self {
            StageConfig::Sft(c) => (&["sft"], c.to_toml()?),
            StageConfig::Reward(c) => (&["reward", "train"], c.to_toml()?),
            StageConfig::Dpo(c) => (&["dpo"], c.to_toml()?),
            StageConfig::Kto(c) => (&["kto"], c.to_toml()?),
            StageConfig::Ppo(c) => (&["ppo"], c.to_toml()?),
            StageConfig::Grpo(c) => (&["grpo"], c.to_toml()?),
            StageConfig::Rloo(c) => (&["rloo"], c.to_toml()?),
            StageConfig::Eval(_) | StageConfig::AnnotateExport(_) => return Ok(None),
        }))
    }

    /// Runs the stage as `run.nproc_per_node` ranks and waits for them.
    pub(super) fn launch(&self, run: &StageRun) -> Result<StageOutcome> {
        let Some((words, toml)) = self.trainer_command()? else {
            bail!(
                "stage {}: only training stages run with nproc_per_node > 1",
                run.name
            );
        };
        let dir = self.output();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let config = dir.join(LAUNCH_CONFIG);
        std::fs::write(&config, toml)
            .with_context(|| format!("cannot write {}", config.display()))?;
        let mut args: Vec<OsString> = words.iter().map(OsString::from).collect();
        args.extend([OsString::from("--config"), config.into_os_string()]);
        if run.resume {
            args.push("--resume".into());
        }
        println!("    {} ranks (nproc_per_node)", run.nproc_per_node);
        crate::cli::launch::launch_with(run.nproc_per_node, args)
            .with_context(|| format!("stage {} ({})", run.name, words.join(" ")))?;
        Ok(StageOutcome {
            metrics: logged_metrics(&dir)?,
            annotations: None,
        })
    }
}

/// A launched run's manifest metrics from its `metrics.jsonl`: `steps` (the last step
/// logged) and the last value of each of `loss` and `eval_loss` that it logged.
fn logged_metrics(dir: &Path) -> Result<BTreeMap<String, f64>> {
    let path = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut metrics = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a JSON object", path.display(), n + 1))?;
        for key in ["step", "loss", "eval_loss"] {
            if let Some(x) = v.get(key).and_then(serde_json::Value::as_f64) {
                let name = if key == "step" { "steps" } else { key };
                metrics.insert(name.to_owned(), x);
            }
        }
    }
    Ok(metrics)
}
