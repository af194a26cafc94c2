//! Tokenization with loss masks.
//!
//! Conversations are rendered with the model's chat template. The loss covers the
//! completion only (prompt tokens masked) by default; for multi-turn `messages` it covers
//! the assistant turns only.
//!
//! **Finding assistant spans.** Most templates (SmolLM2's included) have no
//! `{% generation %}` markers, so the spans are found by rendering prefixes: for each
//! assistant message `k`, `apply(messages[..k], add_generation_prompt = true)` ends where
//! the answer starts and `apply(messages[..=k], false)` ends where it stops. Both must be
//! prefixes of the full rendering (templates that rewrite earlier turns, e.g. by dropping
//! old reasoning, are rejected with an error). The whole text is then tokenized once and
//! a token is in the loss when its first byte lies inside an assistant span.
//!
//! **EOS.** A span ends just after the last EOS token text inside it (`<|im_end|>` for
//! ChatML), so the newline a template writes after EOS is not trained; when the final
//! assistant turn holds no EOS text, the EOS id is appended (in the loss). Plain-text
//! prompt/completion pairs (no template) are `prompt + completion` with EOS appended.
//!
//! **Truncation** keeps the start: at most `max_seq_len` tokens, the rest dropped.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::chat_template::{ChatMessage, ChatTemplate};
use crate::error::{DataError, Result};
use crate::records::{Loaded, SftRecord, Turns};
use crate::tokenizer::Tokenizer;

/// Label value of positions left out of the loss, as in PyTorch's cross entropy.
pub const IGNORE_INDEX: i64 = -100;

/// Which tokens count in the loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossOn {
    /// The completion only; for `messages`, the assistant turns only (the default).
    #[default]
    Completion,
    /// Every token (plain language modelling).
    All,
}

/// How examples are tokenized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeOptions {
    /// At most this many tokens per example; longer ones keep their start.
    pub max_seq_len: usize,
    #[serde(default)]
    pub loss_on: LossOn,
}

impl TokenizeOptions {
    /// At most `max_seq_len` tokens, the loss on completions / assistant turns.
    pub fn new(max_seq_len: usize) -> Self {
        TokenizeOptions {
            max_seq_len,
            loss_on: LossOn::Completion,
        }
    }
}

/// One tokenized example. `loss_mask[i]` says whether `input_ids[i]` is a target: the
/// model's prediction at position `i - 1` is scored against it (the usual shift).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizedExample {
    pub input_ids: Vec<i64>,
    pub loss_mask: Vec<bool>,
    /// Whether tokens were cut off by `max_seq_len`.
    pub truncated: bool,
}

impl TokenizedExample {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// `input_ids` with positions outside the loss set to [`IGNORE_INDEX`] (HF `labels`).
    pub fn labels(&self) -> Vec<i64> {
        self.input_ids
            .iter()
            .zip(&self.loss_mask)
            .map(|(&id, &m)| if m { id } else { IGNORE_INDEX })
            .collect()
    }

    /// How many tokens are scored (position 0 never is: nothing predicts it).
    pub fn num_loss_tokens(&self) -> usize {
        self.loss_mask.iter().skip(1).filter(|&&m| m).count()
    }

    fn truncate(&mut self, max_len: usize) {
        if self.input_ids.len() > max_len {
            self.input_ids.truncate(max_len);
            self.loss_mask.truncate(max_len);
            self.truncated = true;
        }
    }
}

/// Rendered text plus the byte ranges that are in the loss.
struct Rendered {
    text: String,
    spans: Vec<Range<usize>>,
    /// Append the EOS id (the text ends a trained answer without EOS text).
    append_eos: bool,
    /// Plain text (no template): the tokenizer adds its own special tokens (BOS).
    add_special_tokens: bool,
}

/// Tokenizes one SFT record.
pub fn tokenize_sft(
    tokenizer: &Tokenizer,
    record: &SftRecord,
    options: &TokenizeOptions,
) -> Result<TokenizedExample> {
    let eos = eos_text(tokenizer)?;
    let rendered = match record {
        SftRecord::Messages(messages) => {
            let template = tokenizer.require_chat_template()?;
            assistant_spans(template, messages, &eos)?
        }
        SftRecord::PromptCompletion { prompt, completion } => {
            let (prompt_text, completion_text, templated) =
                render_prompt_completion(tokenizer, prompt, completion, &eos)?;
            let start = prompt_text.len();
            let text = prompt_text + &completion_text;
            let completion_span = start..text.len();
            Rendered {
                append_eos: !(templated && completion_text.ends_with(&eos)),
                spans: vec![completion_span],
                text,
                add_special_tokens: !templated,
            }
        }
    };
    encode_with_mask(tokenizer, &rendered, options)
}

fn encode_with_mask(
    tokenizer: &Tokenizer,
    rendered: &Rendered,
    options: &TokenizeOptions,
) -> Result<TokenizedExample> {
    let encoding = tokenizer
        .inner()
        .encode(rendered.text.as_str(), rendered.add_special_tokens)
        .map_err(|e| DataError::Encode(e.to_string()))?;
    let mut input_ids: Vec<i64> = encoding.get_ids().iter().map(|&id| id as i64).collect();
    let mut loss_mask: Vec<bool> = encoding
        .get_offsets()
        .iter()
        .map(|&(start, end)| match options.loss_on {
            LossOn::All => true,
            // Tokens the post-processor added (BOS) have empty offsets: never trained.
            LossOn::Completion => end > start && rendered.spans.iter().any(|s| s.contains(&start)),
        })
        .collect();
    let eos_id = tokenizer.eos_id as i64;
    if rendered.append_eos && input_ids.last() != Some(&eos_id) {
        input_ids.push(eos_id);
        loss_mask.push(true);
    }
    let mut example = TokenizedExample {
        input_ids,
        loss_mask,
        truncated: false,
    };
    example.truncate(options.max_seq_len);
    Ok(example)
}

/// The EOS token's text, which templates write at the end of a turn.
pub(crate) fn eos_text(tokenizer: &Tokenizer) -> Result<String> {
    tokenizer
        .inner()
        .id_to_token(tokenizer.eos_id)
        .ok_or_else(|| DataError::Encode(format!("eos id {} has no token", tokenizer.eos_id)))
}

/// Cuts `span` of `text` just after the last `eos` inside it, if there is one.
fn end_at_eos(text: &str, span: Range<usize>, eos: &str) -> (Range<usize>, bool) {
    match text[span.clone()].rfind(eos) {
        Some(at) if !eos.is_empty() => (span.start..span.start + at + eos.len(), true),
        _ => (span, false),
    }
}

fn not_prefix_stable(k: usize) -> DataError {
    DataError::ChatTemplate(format!(
        "rendering the conversation up to message {k} is not a prefix of rendering all of it; \
         cannot locate the assistant turns for the loss mask"
    ))
}

/// Renders `messages` and finds the byte span of every assistant turn (module docs).
fn assistant_spans(
    template: &ChatTemplate,
    messages: &[ChatMessage],
    eos: &str,
) -> Result<Rendered> {
    let text = template.apply(messages, false)?;
    let mut spans = Vec::new();
    let mut last_has_eos = false;
    for (k, message) in messages.iter().enumerate() {
        if message.role != "assistant" {
            continue;
        }
        let before = template.apply(&messages[..k], true)?;
        let upto = template.apply(&messages[..=k], false)?;
        if !upto.starts_with(&before) || !text.starts_with(&upto) {
            return Err(not_prefix_stable(k));
        }
        let (span, has_eos) = end_at_eos(&text, before.len()..upto.len(), eos);
        last_has_eos = has_eos;
        spans.push(span);
    }
    Ok(Rendered {
        text,
        spans,
        append_eos: messages.last().is_some_and(|m| m.role == "assistant") && !last_has_eos,
        add_special_tokens: false,
    })
}

/// Renders a prompt and its completion as two strings whose concatenation is the full
/// text. Conversational forms go through the template (the prompt ends with the
/// generation prompt and the completion is cut after its EOS); plain strings are kept as
/// they are. Returns `(prompt_text, completion_text, templated)`.
pub(crate) fn render_prompt_completion(
    tokenizer: &Tokenizer,
    prompt: &Turns,
    completion: &Turns,
    eos: &str,
) -> Result<(String, String, bool)> {
    match (prompt, completion) {
        (Turns::Text(p), Turns::Text(c)) => Ok((p.clone(), c.clone(), false)),
        (Turns::Messages(p), Turns::Messages(c)) => {
            let template = tokenizer.require_chat_template()?;
            let prompt_text = template.apply(p, true)?;
            let all: Vec<ChatMessage> = p.iter().chain(c).cloned().collect();
            let full = template.apply(&all, false)?;
            if !full.starts_with(&prompt_text) {
                return Err(not_prefix_stable(p.len()));
            }
            let (span, _) = end_at_eos(&full, prompt_text.len()..full.len(), eos);
            Ok((prompt_text, full[span].to_owned(), true))
        }
        _ => Err(DataError::Dataset(
            "a prompt and its completion mix a string and a list of messages".into(),
        )),
    }
}

/// Applies `tokenize` to every loaded record; an error names the record's file and line.
pub fn tokenize_loaded<R, T>(
    loaded: &Loaded<R>,
    mut tokenize: impl FnMut(&R) -> Result<T>,
) -> Result<Vec<T>> {
    loaded
        .records
        .iter()
        .zip(&loaded.locations)
        .map(|(record, location)| {
            tokenize(record).map_err(|e| DataError::row(location, None, e.to_string()))
        })
        .collect()
}

/// Renders a prompt for generation (RL rollouts, annotation): messages through the chat
/// template with the generation prompt, plain text as is (with the tokenizer's BOS).
pub fn tokenize_prompt(tokenizer: &Tokenizer, prompt: &Turns) -> Result<Vec<i64>> {
    let ids = match prompt {
        Turns::Text(text) => tokenizer.encode(text, true)?,
        Turns::Messages(messages) => {
            let text = tokenizer.require_chat_template()?.apply(messages, true)?;
            tokenizer.encode(&text, false)?
        }
    };
    Ok(ids.into_iter().map(i64::from).collect())
}
