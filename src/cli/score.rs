//! `tiller score`: log-likelihood of `text` rows, or of `completion` given `prompt`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Map, Value};
use tiller_data::{read_rows, write_rows};
use tiller_eval::run::score_request;
use tiller_model::score;

use super::shared::ModelArgs;
use crate::progress;

#[derive(Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL rows with `text`, or with `prompt` and `completion`.
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long)]
    pub output: PathBuf,
    /// Put prompt/completion pairs in the chat template as a user/assistant turn.
    #[arg(long)]
    pub chat: bool,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
}

pub fn run(args: ScoreArgs) -> Result<()> {
    let rows = read_rows(&args.input)?;
    let (lm, tokenizer) = args.model.load()?;
    let requests = rows
        .iter()
        .map(|r| score_request(&tokenizer, r, args.chat))
        .collect::<tiller_eval::Result<Vec<_>>>()?;
    let bar = progress::bar(requests.len() as u64, "scoring");
    let mut scores = Vec::with_capacity(requests.len());
    for chunk in requests.chunks(args.batch_size.max(1) * 4) {
        scores.extend(score(&lm, chunk, args.batch_size).context("scoring failed")?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let (total_logprob, total_tokens) = scores
        .iter()
        .fold((0.0, 0usize), |(lp, n), s| (lp + s.logprob, n + s.tokens));
    let out: Vec<Map<String, Value>> = rows
        .into_iter()
        .zip(&scores)
        .map(|(row, s)| {
            let mut fields = row.fields;
            fields.insert("logprob".into(), json!(s.logprob));
            fields.insert("tokens".into(), json!(s.tokens));
            fields
        })
        .collect();
    write_rows(&args.output, &out)?;
    let nll = -total_logprob / total_tokens.max(1) as f64;
    println!(
        "scored {} rows, {total_tokens} tokens: mean NLL {nll:.4} nats/token, perplexity {:.3}",
        out.len(),
        nll.exp()
    );
    Ok(())
}
