//! `tiller eval refusal`: the refusal classifier (string rules, a judge checkpoint, a
//! trained classifier or an endpoint) measured against human labels.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tiller_eval::{measure_refusal, ClassifierSetup, RefusalOptions};
use tiller_model::DType;

use super::{as_flags, JudgeEndpointArgs};
use crate::progress::Bars;

#[derive(Args, Debug)]
pub struct RefusalArgs {
    /// XSTest's labeled completions CSV or JSONL (`completion`, `label`).
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long)]
    pub limit: Option<usize>,
    /// Judge checkpoint to measure instead of string matching, or a trained refusal
    /// classifier (`head = "refusal_classes"`) deciding full vs partial refusal.
    #[arg(long)]
    pub judge: Option<PathBuf>,
    #[command(flatten)]
    pub endpoint: JudgeEndpointArgs,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value = "f32")]
    pub dtype: DType,
    /// Also write the numbers as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: RefusalArgs) -> Result<()> {
    let endpoint = args.endpoint.options()?;
    let options = RefusalOptions {
        input: &args.input,
        limit: args.limit,
        classifier: ClassifierSetup {
            judge: args.judge.as_deref(),
            endpoint: endpoint.as_ref(),
            device: &args.device,
            dtype: args.dtype,
            batch_size: args.batch_size,
        },
    };
    let result = measure_refusal(&options, Box::new(Bars::default())).map_err(as_flags)?;
    print!("{}", result.render());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
