//! The parts that run a model: answering prompts (batched greedy generation through the
//! chat template) and scoring likelihoods (batched `tiller_model::score`), reporting
//! progress. Also how a prompt/completion row becomes a scoring request (`tiller score`
//! builds its requests the same way).

use std::path::Path;

use tiller_data::{ChatMessage, Row, Tokenizer};
use tiller_model::{
    generate, parse_device, score, CausalLm, DType, GenerationConfig, Score, ScoreRequest,
};

use super::bbq::{BbqExample, BbqItem};
use super::crows::{CrowsItem, CrowsPair};
use crate::error::{input_err, EvalError, Result};
use crate::progress::Progress;

/// Generation settings for answering prompts.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct AnswerSettings {
    pub max_new_tokens: usize,
    pub batch_size: usize,
}

/// Whether `dir` holds a checkpoint [`load_model`] reads: config.json and its weights
/// (model.safetensors, or the shards' model.safetensors.index.json).
pub fn is_checkpoint(dir: &Path) -> bool {
    dir.join("config.json").is_file()
        && (dir.join("model.safetensors").is_file()
            || dir.join("model.safetensors.index.json").is_file())
}

/// Loads a checkpoint and its tokenizer on `device` (`cpu`, `cuda`, `cuda:N`).
pub fn load_model(dir: &Path, device: &str, dtype: DType) -> Result<(CausalLm, Tokenizer)> {
    let device = parse_device(device)?;
    let started = std::time::Instant::now();
    let lm = CausalLm::load(dir, device, dtype.kind()).map_err(|e| {
        EvalError::from(e).running(format!("cannot load the model in {}", dir.display()))
    })?;
    let tokenizer = Tokenizer::from_dir(dir)?;
    tracing::info!(
        "loaded {} ({} layers, {:?}, {:?}) in {:.1}s",
        dir.display(),
        lm.config.num_hidden_layers,
        device,
        dtype,
        started.elapsed().as_secs_f64()
    );
    Ok((lm, tokenizer))
}

/// Splits a row into scored tokens and the context before them: a `text` row scores every
/// token but the first; a `prompt`/`completion` row scores the completion (through the chat
/// template as a user/assistant turn with `chat`).
pub fn score_request(tokenizer: &Tokenizer, row: &Row, chat: bool) -> Result<ScoreRequest> {
    if row.has("text") {
        let ids = tokenizer.encode(row.text("text")?, true)?;
        if ids.len() < 2 {
            input_err!(
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
        input_err!(
            "{}: the completion does not extend the prompt's tokens",
            row.location
        );
    }
    Ok(ScoreRequest {
        continuation: whole[context.len()..].to_vec(),
        context,
    })
}

/// Greedy answers to user prompts through the model's chat template, in input order.
/// `sources` name each prompt in errors.
pub fn answer_prompts(
    lm: &CausalLm,
    tokenizer: &Tokenizer,
    prompts: &[(&str, &str)],
    settings: AnswerSettings,
    what: &str,
    progress: &mut dyn Progress,
) -> Result<Vec<String>> {
    let ids = prompts
        .iter()
        .map(|(source, prompt)| {
            Row::new(*source, &[("prompt", prompt)]).prompt_ids(tokenizer, false)
        })
        .collect::<tiller_data::Result<Vec<_>>>()?;
    let mut config = GenerationConfig::greedy(settings.max_new_tokens, tokenizer);
    config.stop_token_ids.extend(lm.config.eos_token_ids());
    // Similar lengths share a batch (less padding); greedy answers do not depend on it.
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i].len());
    progress.start(what, ids.len() as u64);
    let mut answers = vec![String::new(); ids.len()];
    for chunk in order.chunks(settings.batch_size.max(1)) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
        let out = generate(lm, tokenizer, &batch, chunk, &config)
            .map_err(|e| EvalError::from(e).running(format!("{what}: generation failed")))?;
        for (&i, g) in chunk.iter().zip(out) {
            answers[i] = g.text.trim().to_owned();
        }
        progress.advance(chunk.len() as u64);
    }
    progress.finish();
    Ok(answers)
}

/// Scores requests in batches, longest first across the whole set (so each batch holds
/// similar lengths), with a progress bar; results in input order.
pub fn score_all(
    lm: &CausalLm,
    requests: &[ScoreRequest],
    batch_size: usize,
    what: &str,
    progress: &mut dyn Progress,
) -> Result<Vec<Score>> {
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by_key(|&i| {
        std::cmp::Reverse(requests[i].context.len() + requests[i].continuation.len())
    });
    progress.start(what, requests.len() as u64);
    let mut scores = vec![None; requests.len()];
    for chunk in order.chunks(batch_size.max(1) * 8) {
        let batch: Vec<ScoreRequest> = chunk.iter().map(|&i| requests[i].clone()).collect();
        let out = score(lm, &batch, batch_size)
            .map_err(|e| EvalError::from(e).running(format!("{what}: scoring failed")))?;
        for (&i, s) in chunk.iter().zip(out) {
            scores[i] = Some(s);
        }
        progress.advance(chunk.len() as u64);
    }
    progress.finish();
    scores
        .into_iter()
        .map(|s| s.ok_or_else(|| EvalError::Input(format!("{what}: a request was not scored"))))
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
    progress: &mut dyn Progress,
) -> Result<Vec<CrowsItem>> {
    let mut requests = Vec::with_capacity(2 * pairs.len());
    for p in pairs {
        for sentence in [&p.sent_more, &p.sent_less] {
            requests.push(
                sentence_request(tokenizer, sentence).map_err(|e| e.running(p.source.clone()))?,
            );
        }
    }
    let scores = score_all(lm, &requests, batch_size, "CrowS-Pairs", progress)?;
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
    progress: &mut dyn Progress,
) -> Result<Vec<BbqItem>> {
    let mut requests = Vec::with_capacity(3 * examples.len());
    for ex in examples {
        let prompt = ex.prompt();
        for answer in &ex.answers {
            let completion = format!(" {answer}");
            requests.push(score_request(
                tokenizer,
                &Row::new(
                    ex.source.as_str(),
                    &[("prompt", &prompt), ("completion", &completion)],
                ),
                false,
            )?);
        }
    }
    let scores = score_all(lm, &requests, batch_size, "BBQ", progress)?;
    Ok(examples
        .iter()
        .zip(scores.chunks(3))
        .map(|(ex, s)| BbqItem {
            example: ex.clone(),
            logprobs: [s[0].logprob, s[1].logprob, s[2].logprob],
        })
        .collect())
}
