//! `tiller run pipeline.toml`: the stages of a pipeline, in order, cached and resumable.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::pipeline::{self, PipelineConfig, StageKind, StageStatus, WaitingForVotes};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The pipeline file (see examples/pipeline.toml); unknown keys are errors.
    pub pipeline: PathBuf,
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let config = PipelineConfig::from_file(&args.pipeline)?;
    let started = std::time::Instant::now();
    let summary = match pipeline::run(&config) {
        Ok(summary) => summary,
        Err(err) => match err.downcast_ref::<WaitingForVotes>() {
            Some(waiting) => {
                println!("\n{waiting}.");
                println!(
                    "When the votes are in, run `tiller run {}` again: it continues from stage {}.",
                    args.pipeline.display(),
                    waiting.stage
                );
                return Ok(ExitCode::from(WaitingForVotes::EXIT_STATUS));
            }
            None => return Err(err),
        },
    };
    println!(
        "\npipeline {} done in {:.0}s:",
        args.pipeline.display(),
        started.elapsed().as_secs_f64()
    );
    for (name, status, manifest) in &summary.stages {
        let what = match status {
            StageStatus::Skipped => "cached",
            StageStatus::Ran => "ran",
            StageStatus::Resumed => "resumed",
        };
        println!("  {name:<16} {what:<8} {}", manifest.output);
    }
    for (_, _, manifest) in &summary.stages {
        if manifest.kind == StageKind::Eval {
            let page = pipeline::eval_stage::report_page(&manifest.output_dir());
            println!("report: {}", page.display());
        }
    }
    if let Some((_, _, last)) = summary.stages.last() {
        println!("lineage: tiller lineage {}", last.output_dir().display());
    }
    Ok(ExitCode::SUCCESS)
}
