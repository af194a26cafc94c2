//! `tiller lineage DIR`: where a checkpoint came from, back to the base model; with
//! `--check-consent`, whether any of its human votes have been withdrawn since.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct LineageArgs {
    /// A checkpoint or report directory written by `tiller run` (it has a manifest.json).
    pub dir: PathBuf,
    /// Check the annotation databases in the lineage for withdrawn consent; exits
    /// non-zero naming the checkpoints and annotators affected.
    #[arg(long)]
    pub check_consent: bool,
}

pub fn run(args: LineageArgs) -> Result<()> {
    if !args.check_consent {
        print!("{}", crate::pipeline::lineage::render(&args.dir)?);
        return Ok(());
    }
    let findings = crate::pipeline::lineage::check_consent(&args.dir)?;
    print!(
        "{}",
        crate::pipeline::lineage::render_consent(&args.dir, &findings)
    );
    if !findings.is_empty() {
        bail!(
            "consent withdrawn: {} checkpoint(s) in the lineage of {} trained on withdrawn votes",
            findings.len(),
            args.dir.display()
        );
    }
    Ok(())
}
