//! The parts that run a model: answering prompts (batched greedy generation through the
//! chat template) and scoring likelihoods (batched `tiller_model::score`), with progress bars.

use anyhow::{Context, Result};
use serde_json::{json, Map};
use tiller_data::Tokenizer;
use tiller_model::{generate, score, CausalLm, GenerationConfig, Score, ScoreRequest};

use super::bbq::{BbqExample, BbqItem};
use super::crows::{CrowsItem, CrowsPair};
use crate::cli::score::score_request;
use crate::cli::shared::prompt_ids;
use crate::progress;
use crate::rows::Row;

/// Generation settings for answering prompts.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct AnswerSettings {
    pub max_new_tokens: usize,
    pub batch_size: usize,
}

/// A one-field row, so the CLI's shared helpers can read it.
fn row(location: &str, fields: &[(&str, &str)]) -> Row {
    let fields: Map<_, _> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    Row {
        location: location.to_owned(),
        fields,
    }
}

/// Greedy answers to user prompts through the model's chat template, in input order.
/// `sources` name each prompt in errors.
pub fn answer_prompts(
    lm: &CausalLm,
    tokenizer: &Tokenizer,
    prompts: &[(&str, &str)],
    settings: AnswerSettings,
    what: &str,
) -> Result<Vec<String>> {
    let ids = prompts
        .iter()
        .map(|(source, prompt)| prompt_ids(tokenizer, &row(source, &[("prompt", prompt)]), false))
        .collect::<Result<Vec<_>>>()?;
    let mut config = GenerationConfig::greedy(settings.max_new_tokens, tokenizer);
    config.stop_token_ids.extend(lm.config.eos_token_ids());
    // Similar lengths share a batch (less padding); greedy answers do not depend on it.
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i].len());
    let bar = progress::bar(ids.len() as u64, what);
    let mut answers = vec![String::new(); ids.len()];
    for chunk in order.chunks(settings.batch_size.max(1)) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
        let out = generate(lm, tokenizer, &batch, chunk, &config)
            .with_context(|| format!("{what}: generation failed"))?;
        for (&i, g) in chunk.iter().zip(out) {
            answers[i] = g.text.trim().to_owned();
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(answers)
}

/// Scores requests in batches, longest first across the whole set (so each batch holds
/// similar lengths), with a progress bar; results in input order.
pub fn score_all(
    lm: &CausalLm,
    requests: &[ScoreRequest],
    batch_size: usize,
    what: &str,
) -> Result<Vec<Score>> {
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by_key(|&i| {
        std::cmp::Reverse(requests[i].context.len() + requests[i].continuation.len())
    });
    let bar = progress::bar(requests.len() as u64, what);
    let mut scores = vec![None; requests.len()];
    for chunk in order.chunks(batch_size.max(1) * 8) {
        let batch: Vec<ScoreRequest> = chunk.iter().map(|&i| requests[i].clone()).collect();
        let out =
            score(lm, &batch, batch_size).with_context(|| format!("{what}: scoring failed"))?;
        for (&i, s) in chunk.iter().zip(out) {
            scores[i] = Some(s);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    scores
        .into_iter()
        .map(|s| s.context("a request was not scored"))
        .collect()
}

/// The request for a whole sentence, as lm-evaluation-harness scores a continuation with
/// an empty context: conditioned on the prefix token (BOS, or EOS when there is none),
/// every token of the sentence scored.
pub fn sentence_request(tokenizer: &Tokenizer, sentence: &str) -> Result<ScoreRequest> {
    let prefix = tokenizer.bos_id.unwrap_or(tokenizer.eos_id);
    let continuation = tokenizer.encode(sentence, false)?;
    Ok(ScoreRequest {
        context: vec![prefix],
        continuation,
    })
}

/// Full-sentence log-likelihoods of both sentences of every pair.
pub fn score_crows(
    lm: &CausalLm,
    tokenizer: &Tokenizer,
    pairs: &[CrowsPair],
    batch_size: usize,
) -> Result<Vec<CrowsItem>> {
    let mut requests = Vec::with_capacity(2 * pairs.len());
    for p in pairs {
        requests.push(sentence_request(tokenizer, &p.sent_more).with_context(|| p.source.clone())?);
        requests.push(sentence_request(tokenizer, &p.sent_less).with_context(|| p.source.clone())?);
    }
    let scores = score_all(lm, &requests, batch_size, "CrowS-Pairs")?;
    Ok(pairs
        .iter()
        .zip(scores.chunks(2))
        .map(|(p, s)| CrowsItem {
            pair: p.clone(),
            logprob_more: s[0].logprob,
            logprob_less: s[1].logprob,
        })
        .collect())
}

/// Log-likelihood of each answer (with a leading space) after the BBQ prompt, built as
/// `tiller score` builds prompt/completion requests (lm-evaluation-harness's split).
pub fn score_bbq(
    lm: &CausalLm,
    tokenizer: &Tokenizer,
    examples: &[BbqExample],
    batch_size: usize,
) -> Result<Vec<BbqItem>> {
    let mut requests = Vec::with_capacity(3 * examples.len());
    for ex in examples {
        let prompt = ex.prompt();
        for answer in &ex.answers {
            let completion = format!(" {answer}");
            requests.push(score_request(
                tokenizer,
                &row(
                    &ex.source,
                    &[("prompt", &prompt), ("completion", &completion)],
                ),
                false,
            )?);
        }
    }
    let scores = score_all(lm, &requests, batch_size, "BBQ")?;
    Ok(examples
        .iter()
        .zip(scores.chunks(3))
        .map(|(ex, s)| BbqItem {
            example: ex.clone(),
            logprobs: [s[0].logprob, s[1].logprob, s[2].logprob],
        })
        .collect())
}
