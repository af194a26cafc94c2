//! Writes a random-weight model of a fixed seed from an HF `config.json`, so that a
//! machine without network or checkpoints (scripts/gpu_check.sh on a GPU box) can build
//! the models it measures instead of carrying gigabytes of weights.
//!
//!   random_model --config config.json --seed 0 --out DIR [--dtype bf16] [--tokenizer DIR]
//!
//! Without `--tokenizer` the tiny byte-level test tokenizer is written (its vocabulary
//! must fit the config's). Prints the parameter count.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use tiller_model::testing::write_tiny_tokenizer;
use tiller_model::{CausalLm, DType, LlamaConfig};

#[derive(Parser)]
struct Args {
    /// An HF config.json (llama or qwen2).
    #[arg(long)]
    config: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: i64,
    #[arg(long)]
    out: PathBuf,
    /// f32 or bf16: the precision of the written weights.
    #[arg(long, default_value = "f32")]
    dtype: DType,
    /// Copy tokenizer.json and tokenizer_config.json from this directory.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let config = LlamaConfig::from_file(&args.config)?;
    let lm = CausalLm::random(&config, tch::Device::Cpu, args.dtype.kind(), args.seed);
    lm.save(&args.out, args.tokenizer.as_deref())
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    if args.tokenizer.is_none() {
        write_tiny_tokenizer(&args.out)?;
    }
    let params: i64 = lm.vs.variables().values().map(|t| t.numel() as i64).sum();
    println!("parameters {params}");
    Ok(())
}
