//! `tiller data import hh-rlhf IN --out OUT`: other formats into TRL's columns.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use tiller_data::hh_rlhf::import_hh_rlhf;
use tiller_data::save_records;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Convert a dataset into prompt/chosen/rejected (JSONL or Parquet by --out's extension).
    Import(ImportArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SourceFormat {
    /// `{"chosen": "\n\nHuman: …\n\nAssistant: …", "rejected": …}` transcripts.
    HhRlhf,
}

#[derive(Args)]
pub struct ImportArgs {
    #[arg(value_enum)]
    format: SourceFormat,
    input: PathBuf,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(cmd: DataCommand) -> Result<()> {
    let DataCommand::Import(args) = cmd;
    match args.format {
        SourceFormat::HhRlhf => {
            let imported = import_hh_rlhf(&args.input)?;
            for reason in imported.skipped.iter().take(10) {
                eprintln!("skipped {reason}");
            }
            if imported.records.is_empty() {
                bail!(
                    "{}: no usable pairs ({} skipped)",
                    args.input.display(),
                    imported.skipped.len()
                );
            }
            save_records(&args.out, &imported.records)?;
            println!(
                "wrote {} pairs to {} ({} rows skipped)",
                imported.records.len(),
                args.out.display(),
                imported.skipped.len()
            );
        }
    }
    Ok(())
}
