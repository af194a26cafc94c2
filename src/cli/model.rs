//! `tiller model import SRC --out DIR`: a GGUF file or an HF directory in, an HF-format
//! directory out (which transformers can load too). `tiller model export DIR --gguf OUT`:
//! the way back, a checkpoint (LoRA adapters merged) as a GGUF file for llama.cpp/Ollama.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tch::Device;
use tiller_model::gguf::{ExportType, GgmlType};
use tiller_model::{gguf, CausalLm, DType};

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Import a .gguf file or an HF model directory into an HF-format directory.
    Import(ImportArgs),
    /// Export a checkpoint (HF directory or LoRA adapter, merged) as a .gguf file for
    /// llama.cpp, Ollama and LM Studio.
    Export(ExportArgs),
}

#[derive(Args)]
pub struct ExportArgs {
    /// An HF model directory, or a LoRA adapter directory (merged into its base).
    dir: PathBuf,
    /// The .gguf file to write.
    #[arg(long)]
    gguf: PathBuf,
    /// Weight type of the matrices: f32, f16, q8_0 or q4_k (norms stay f32; a matrix
    /// whose rows are not whole blocks of the type falls back to q8_0, then f16).
    #[arg(long = "type", default_value = "f16")]
    ty: ExportType,
}

#[derive(Args)]
pub struct ImportArgs {
    /// A .gguf file or an HF model directory.
    src: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Precision of the written weights (HF directories only; GGUF imports are f32).
    #[arg(long, default_value = "f32")]
    dtype: DType,
}

pub fn run(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Import(args) => import(args),
        ModelCommand::Export(args) => export(args),
    }
}

fn import(args: ImportArgs) -> Result<()> {
    let started = std::time::Instant::now();
    if args.src.is_dir() {
        let lm = CausalLm::load(&args.src, Device::Cpu, args.dtype.kind())
            .with_context(|| format!("cannot load {}", args.src.display()))?;
        lm.save(&args.out, Some(&args.src))?;
    } else if args.src.extension().is_some_and(|e| e == "gguf") {
        gguf::import_gguf(&args.src, &args.out)?;
        // Reload what was written: a checkpoint that does not load is not a result.
        CausalLm::load(&args.out, Device::Cpu, tch::Kind::Float).with_context(|| {
            format!(
                "the imported checkpoint in {} does not load",
                args.out.display()
            )
        })?;
        tiller_data::Tokenizer::from_dir(&args.out)?;
    } else {
        bail!("{}: not a directory or a .gguf file", args.src.display());
    }
    println!(
        "imported {} into {} in {:.1}s",
        args.src.display(),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn export(args: ExportArgs) -> Result<()> {
    let started = std::time::Instant::now();
    if args.gguf.extension().is_none_or(|e| e != "gguf") {
        bail!(
            "--gguf {}: the output must end in .gguf",
            args.gguf.display()
        );
    }
    let summary = gguf::export_gguf(&args.dir, &args.gguf, args.ty)
        .with_context(|| format!("cannot export {}", args.dir.display()))?;
    for (ty, block) in [(GgmlType::Q8_0, 256), (GgmlType::F16, 32)] {
        let names: Vec<&str> = summary
            .fallbacks
            .iter()
            .filter(|(_, written)| *written == ty)
            .map(|(name, _)| name.as_str())
            .collect();
        if !names.is_empty() {
            tracing::warn!(
                "rows not a multiple of {block}, written as {ty:?}: {}",
                names.join(", ")
            );
        }
    }
    println!(
        "exported {} to {} ({} tensors) in {:.1}s",
        args.dir.display(),
        args.gguf.display(),
        summary.tensors,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
