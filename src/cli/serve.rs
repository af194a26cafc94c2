//! `tiller serve`: models behind OpenAI's HTTP API (see the `tiller-serve` crate).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use tiller_model::{parse_device, DType};
use tiller_serve::{ModelSpec, ServeConfig};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A model directory, served under its directory name; or NAME=DIR (repeatable).
    #[arg(long = "model", required = true)]
    pub models: Vec<String>,
    /// A LoRA adapter directory served as NAME over the first --model: NAME=DIR (repeatable).
    #[arg(long = "adapter")]
    pub adapters: Vec<String>,
    /// Address to listen on (loopback by default; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub bind: String,
    /// Require `Authorization: Bearer KEY` on /v1 requests.
    #[arg(long)]
    pub api_key: Option<String>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: DType,
    /// Sequences decoded together in one model's running batch.
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Sequences that may wait to join the batch; beyond that requests get 429.
    #[arg(long, default_value_t = 256)]
    pub max_queue: usize,
}

/// `NAME=DIR` or `DIR` (named after its last component).
fn named(spec: &str, flag: &str) -> Result<(String, PathBuf)> {
    if let Some((name, dir)) = spec.split_once('=') {
        if name.is_empty() || dir.is_empty() {
            bail!("{flag} {spec}: expected NAME=DIR");
        }
        return Ok((name.to_owned(), PathBuf::from(dir)));
    }
    let dir = PathBuf::from(spec);
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| {
            format!("{flag} {spec}: cannot name the model after this path; use NAME=DIR")
        })?
        .to_owned();
    Ok((name, dir))
}

pub fn run(args: ServeArgs) -> Result<()> {
    let mut models = vec![];
    for spec in &args.models {
        let (name, dir) = named(spec, "--model")?;
        models.push(ModelSpec {
            name,
            dir,
            adapter: None,
        });
    }
    for spec in &args.adapters {
        if !spec.contains('=') {
            bail!("--adapter {spec}: expected NAME=DIR");
        }
        let (name, adapter) = named(spec, "--adapter")?;
        models.push(ModelSpec {
            name,
            dir: models[0].dir.clone(),
            adapter: Some(adapter),
        });
    }
    if args.max_batch == 0 {
        bail!("--max-batch must be at least 1");
    }
    let config = ServeConfig {
        models,
        device: parse_device(&args.device)?,
        dtype: args.dtype,
        bind: args.bind,
        api_key: args.api_key,
        max_batch: args.max_batch,
        max_queue: args.max_queue,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(tiller_serve::serve(config, |addr| {
        // One line on stdout that scripts and tests wait for.
        println!("listening on http://{addr}");
        tracing::info!("serving on http://{addr}");
    }))?;
    Ok(())
}
