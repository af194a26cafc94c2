//! `tiller lineage DIR`: where a checkpoint came from, back to the base model.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct LineageArgs {
    /// A checkpoint or report directory written by `tiller run` (it has a manifest.json).
    pub dir: PathBuf,
}

pub fn run(args: LineageArgs) -> Result<()> {
    print!("{}", crate::pipeline::lineage::render(&args.dir)?);
    Ok(())
}
