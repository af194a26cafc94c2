//! `tiller eval compare`: one scorecard across report directories and checkpoints, the
//! checkpoints evaluated here with the same options.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use tiller_eval::Which;

use super::{as_flags, options, BiasOpts, CommonArgs, RunArgs, SafetyOpts};
use crate::progress::Bars;

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Report directories (report.json from `tiller eval`) and checkpoints (config.json +
    /// model.safetensors), in any mix; each checkpoint is evaluated into OUT/<its name>/
    /// with the options below. The first is the reference.
    #[arg(required = true, num_args = 2..)]
    pub reports: Vec<PathBuf>,
    /// Output directory for scorecard.html and scorecard.json (and the checkpoints' reports).
    #[arg(long)]
    pub out: PathBuf,
    /// What the checkpoints are evaluated on: both, safety or bias.
    #[arg(long, value_enum, default_value = "both")]
    pub which: WhichArg,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub safety: SafetyOpts,
    #[command(flatten)]
    pub bias: BiasOpts,
}

/// `--which`'s choices (the library's [`Which`]).
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default)]
pub enum WhichArg {
    #[default]
    Both,
    Safety,
    Bias,
}

pub fn run(args: CompareArgs) -> Result<()> {
    let common = CommonArgs {
        model: None,
        out: Some(args.out.clone()),
        baseline: None,
        reward: None,
        run: args.run,
    };
    let which = match args.which {
        WhichArg::Both => Which::Both,
        WhichArg::Safety => Which::Safety,
        WhichArg::Bias => Which::Bias,
    };
    let template = options(common, args.safety, args.bias, which)?;
    let card = tiller_eval::compare::compare(
        &args.reports,
        &template,
        &args.out,
        &mut Bars::default(),
        &mut || Box::new(Bars::default()),
    )
    .map_err(as_flags)?;
    println!(
        "scorecard: {} checkpoints, {} figures; wrote {} and {}",
        card.columns.len(),
        card.rows.len(),
        args.out.join("scorecard.html").display(),
        args.out.join("scorecard.json").display()
    );
    Ok(())
}
