//! `tiller generate`: completions for a JSONL file of prompts, or for one `--prompt`.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use serde_json::{json, Map, Value};
use tiller_model::{GenerationConfig, Sampling, SamplingOption};

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
    /// Nucleus sampling: keep the most likely tokens up to this mass, in (0, 1].
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Sample among the k most likely tokens; 0 means off.
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
    /// Also write each completion's per-token log-probabilities (`completion_logprobs`, with
    /// `completion_token_ids`); with --prompt, print them as JSON lines after the text.
    #[arg(long)]
    pub logprobs: bool,
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
    let sampling = Sampling::try_from_options(args.temperature, args.top_k, args.top_p).map_err(
        |(option, message)| {
            let flag = match option {
                SamplingOption::Temperature => "--temperature",
                SamplingOption::TopP => "--top-p",
            };
            anyhow!("{flag} {message}")
        },
    )?;
    let (lm, tokenizer) = args.model.load()?;
    let prompts = rows
        .iter()
        .map(|r| r.prompt_ids(&tokenizer, args.raw))
        .collect::<tiller_data::Result<Vec<_>>>()?;
    let mut stop_token_ids = lm.config.eos_token_ids();
    stop_token_ids.push(tokenizer.eos_id);
    let config = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        sampling,
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
            if args.logprobs {
                for (token, logprob) in g.tokens.iter().zip(&g.logprobs) {
                    let piece = tokenizer.decode(&[*token], false)?;
                    println!(
                        "{}",
                        json!({"token_id": token, "token": piece, "logprob": logprob})
                    );
                }
            }
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
            if args.logprobs {
                fields.insert("completion_token_ids".into(), json!(g.tokens));
                fields.insert("completion_logprobs".into(), json!(g.logprobs));
            }
            fields
        })
        .collect();
    if let Some(path) = &args.output {
        write_rows(path, &out)?;
        println!("wrote {} rows to {}", out.len(), path.display());
    }
    Ok(())
}
