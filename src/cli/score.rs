//! `tiller score`: log-likelihood of `text` rows, or of `completion` given `prompt`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Map, Value};
use tiller_data::{ChatMessage, Tokenizer};
use tiller_model::{score, ScoreRequest};

use super::shared::ModelArgs;
use crate::progress;
use crate::rows::{read_rows, write_rows, Row};

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

/// Splits a row into scored tokens and the context before them.
pub fn score_request(tokenizer: &Tokenizer, row: &Row, chat: bool) -> Result<ScoreRequest> {
    if row.has("text") {
        // Raw text: every token but the first is scored.
        let ids = tokenizer.encode(row.text("text")?, true)?;
        if ids.len() < 2 {
            bail!(
                "{}: field `text` has fewer than two tokens; nothing to score",
                row.location
            );
        }
        return Ok(ScoreRequest {
            context: ids[..1].to_vec(),
            continuation: ids[1..].to_vec(),
        });
    }
    let (prompt, completion) = (row.text("prompt")?, row.text("completion")?);
    let (context_text, full_text, add_special) = if chat {
        let template = tokenizer.require_chat_template()?;
        let user = [ChatMessage::user(prompt)];
        let both = [
            ChatMessage::user(prompt),
            ChatMessage::assistant(completion),
        ];
        (
            template.apply(&user, true)?,
            template.apply(&both, false)?,
            false,
        )
    } else {
        (prompt.to_owned(), format!("{prompt}{completion}"), true)
    };
    // As lm-evaluation-harness: tokenize the whole text and the context, and score the
    // tokens of the whole that come after the context's.
    let whole = tokenizer.encode(&full_text, add_special)?;
    let context = tokenizer.encode(&context_text, add_special)?;
    if !whole.starts_with(&context) || whole.len() == context.len() {
        bail!(
            "{}: the completion does not extend the prompt's tokens",
            row.location
        );
    }
    Ok(ScoreRequest {
        continuation: whole[context.len()..].to_vec(),
        context,
    })
}

pub fn run(args: ScoreArgs) -> Result<()> {
    let rows = read_rows(&args.input)?;
    let (lm, tokenizer) = args.model.load()?;
    let requests = rows
        .iter()
        .map(|r| score_request(&tokenizer, r, args.chat))
        .collect::<Result<Vec<_>>>()?;
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
