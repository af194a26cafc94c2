//! `tiller curves DIR...`: a run's `metrics.jsonl` drawn as `curves.html` beside it.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct CurvesArgs {
    /// Run directories of any trainer (each has a metrics.jsonl).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
}

pub fn run(args: CurvesArgs) -> Result<()> {
    for dir in &args.dirs {
        let page = tiller_eval::report::curves::write_curves(dir)?;
        println!("wrote {}", page.display());
    }
    Ok(())
}
