//! `tiller generate`: completions for a JSONL file of prompts, or for one `--prompt`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::{json, Map, Value};
use tiller_model::{GenerationConfig, Sampling};

use super::shared::{generate_all, ModelArgs};
use tiller_data::{read_rows, write_rows, Row};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL rows with `prompt` (a string) or `messages` (a chat).
    #[arg(long, requires = "output", conflicts_with = "prompt")]
    pub input: Option<PathBuf>,
    /// Where to write the rows with `completion` and `completion_tokens` added.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// One prompt; its answer is printed.
    #[arg(long)]
    pub prompt: Option<String>,
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// 0 means greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Send the prompt text as is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Extra text that ends a completion (repeatable).
    #[arg(long = "stop")]
    pub stop_strings: Vec<String>,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let rows = match (&args.input, &args.prompt) {
        (Some(path), None) => read_rows(path)?,
        (None, Some(prompt)) => vec![Row {
            location: "--prompt".into(),
            fields: Map::from_iter([("prompt".to_owned(), json!(prompt))]),
        }],
        _ => bail!("give either --input FILE --output FILE or --prompt TEXT"),
    };
    if let Some(p) = args.top_p.filter(|p| !(0.0..=1.0).contains(p) || *p == 0.0) {
        bail!("--top-p must be in (0, 1], got {p}");
    }
    let (lm, tokenizer) = args.model.load()?;
    let prompts = rows
        .iter()
        .map(|r| r.prompt_ids(&tokenizer, args.raw))
        .collect::<tiller_data::Result<Vec<_>>>()?;
    let mut stop_token_ids = lm.config.eos_token_ids();
    stop_token_ids.push(tokenizer.eos_id);
    let config = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        sampling: Sampling::from_options(args.temperature, args.top_k, args.top_p),
        seed: args.seed,
        stop_token_ids,
        stop_strings: args.stop_strings.clone(),
    };

    let results = generate_all(
        &lm,
        &tokenizer,
        &prompts,
        &config,
        args.batch_size,
        "generating",
    )?;

    if args.prompt.is_some() {
        if let Some(g) = results.first() {
            println!("{}", g.text);
        }
        return Ok(());
    }
    let out: Vec<Map<String, Value>> = rows
        .into_iter()
        .zip(results)
        .map(|(row, g)| {
            let mut fields = row.fields;
            fields.insert("completion".into(), json!(g.text));
            fields.insert("completion_tokens".into(), json!(g.tokens.len()));
            fields.insert("finish_reason".into(), json!(g.finish));
            fields
        })
        .collect();
    if let Some(path) = &args.output {
        write_rows(path, &out)?;
        println!("wrote {} rows to {}", out.len(), path.display());
    }
    Ok(())
}
