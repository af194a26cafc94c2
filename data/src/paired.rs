//! Tokenizing records whose prompt is shared: preference pairs (DPO, reward models) and
//! unpaired feedback (KTO).
//!
//! As TRL's DPO does, the prompt and each completion are tokenized separately, so chosen
//! and rejected share the very same prompt tokens: for conversations the prompt is
//! `apply(prompt, add_generation_prompt = true)` and a completion is the rest of
//! `apply(prompt + completion)`, cut just after its EOS text; plain strings are used as
//! they are. EOS is appended to a completion that does not end with it.
//!
//! Truncation: with `max_prompt_len` the prompt keeps its *end* (the part nearest the
//! answer, as TRL does); then completions keep their start so that prompt + completion
//! fits `max_seq_len`.
//!
//! Reward models read each side whole instead ([`tokenize_preference_whole`]), as TRL's
//! `RewardTrainer` does: a conversation is `apply(prompt + completion)` tokenized as one
//! text, everything the template writes kept (SmolLM2's ends `<|im_end|>` `\n`), and
//! a plain string is `prompt + completion`, EOS appended when it does not end with it. The
//! two sides' shared leading tokens are then stored once as the prompt.

use serde::{Deserialize, Serialize};

use crate::chat_template::ChatMessage;
use crate::error::{DataError, Result};
use crate::records::{PreferenceRecord, Turns, UnpairedRecord};
use crate::tokenize::{eos_text, render_prompt_completion, TokenizedExample};
use crate::tokenizer::Tokenizer;

/// Lengths for prompt/completion tokenization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairOptions {
    /// Prompt plus one completion fit in this many tokens.
    pub max_seq_len: usize,
    /// Prompts longer than this keep their last `max_prompt_len` tokens.
    #[serde(default)]
    pub max_prompt_len: Option<usize>,
}

impl PairOptions {
    /// At most `max_seq_len` tokens per prompt + completion, no separate prompt limit.
    pub fn new(max_seq_len: usize) -> Self {
        PairOptions {
            max_seq_len,
            max_prompt_len: None,
        }
    }
}

/// A tokenized preference pair sharing one prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizedPair {
    pub prompt_ids: Vec<i64>,
    pub chosen_ids: Vec<i64>,
    pub rejected_ids: Vec<i64>,
    /// Whether anything was cut off.
    pub truncated: bool,
}

impl TokenizedPair {
    /// Prompt + chosen, with the loss on the chosen tokens only.
    pub fn chosen(&self) -> TokenizedExample {
        join(&self.prompt_ids, &self.chosen_ids, self.truncated)
    }

    /// Prompt + rejected, with the loss on the rejected tokens only.
    pub fn rejected(&self) -> TokenizedExample {
        join(&self.prompt_ids, &self.rejected_ids, self.truncated)
    }
}

/// A tokenized prompt and completion with its desirability label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizedUnpaired {
    pub prompt_ids: Vec<i64>,
    pub completion_ids: Vec<i64>,
    pub label: bool,
    pub truncated: bool,
}

impl TokenizedUnpaired {
    /// Prompt + completion, with the loss on the completion tokens only.
    pub fn example(&self) -> TokenizedExample {
        join(&self.prompt_ids, &self.completion_ids, self.truncated)
    }
}

fn join(prompt: &[i64], completion: &[i64], truncated: bool) -> TokenizedExample {
    let mut input_ids = Vec::with_capacity(prompt.len() + completion.len());
    input_ids.extend_from_slice(prompt);
    input_ids.extend_from_slice(completion);
    let mut loss_mask = vec![false; prompt.len()];
    loss_mask.resize(input_ids.len(), true);
    TokenizedExample {
        input_ids,
        loss_mask,
        truncated,
    }
}

/// Tokenizes a preference pair (module docs for the rules).
pub fn tokenize_preference(
    tokenizer: &Tokenizer,
    record: &PreferenceRecord,
    options: &PairOptions,
) -> Result<TokenizedPair> {
    let (prompt_ids, truncated) =
        prompt_tokens(tokenizer, &record.prompt, &record.chosen, options)?;
    let chosen_ids = completion_tokens(tokenizer, &record.prompt, &record.chosen)?;
    let rejected_ids = completion_tokens(tokenizer, &record.prompt, &record.rejected)?;
    fit_completions(prompt_ids, chosen_ids, rejected_ids, truncated, options)
}

/// Cuts both completions to the room the prompt leaves within `max_seq_len`.
fn fit_completions(
    prompt_ids: Vec<i64>,
    mut chosen_ids: Vec<i64>,
    mut rejected_ids: Vec<i64>,
    mut truncated: bool,
    options: &PairOptions,
) -> Result<TokenizedPair> {
    let room = room_for_completion(prompt_ids.len(), options)?;
    for ids in [&mut chosen_ids, &mut rejected_ids] {
        truncated |= cut(ids, room);
    }
    Ok(TokenizedPair {
        prompt_ids,
        chosen_ids,
        rejected_ids,
        truncated,
    })
}

/// Tokenizes a preference pair for a reward model: each side's whole sequence (module
/// docs), then the same truncation rules as [`tokenize_preference`].
pub fn tokenize_preference_whole(
    tokenizer: &Tokenizer,
    record: &PreferenceRecord,
    options: &PairOptions,
) -> Result<TokenizedPair> {
    let mut chosen = whole_sequence(tokenizer, &record.prompt, &record.chosen)?;
    let mut rejected = whole_sequence(tokenizer, &record.prompt, &record.rejected)?;
    let shared = (chosen.iter().zip(&rejected))
        .take_while(|(a, b)| a == b)
        .count()
        // Each side keeps at least one token of its own, where its reward is read.
        .min(chosen.len().saturating_sub(1))
        .min(rejected.len().saturating_sub(1));
    let mut prompt_ids: Vec<i64> = chosen.drain(..shared).collect();
    rejected.drain(..shared);
    let mut truncated = false;
    if let Some(max) = options.max_prompt_len {
        if prompt_ids.len() > max {
            prompt_ids.drain(..prompt_ids.len() - max);
            truncated = true;
        }
    }
    fit_completions(prompt_ids, chosen, rejected, truncated, options)
}

/// Prompt + completion tokenized as one text, as TRL's `RewardTrainer` does.
fn whole_sequence(tokenizer: &Tokenizer, prompt: &Turns, completion: &Turns) -> Result<Vec<i64>> {
    let ids = match (prompt, completion) {
        (Turns::Text(p), Turns::Text(c)) => {
            let eos = eos_text(tokenizer)?;
            let mut text = format!("{p}{c}");
            if !text.ends_with(&eos) {
                text.push_str(&eos);
            }
            tokenizer.encode(&text, true)?
        }
        (Turns::Messages(p), Turns::Messages(c)) => {
            let all: Vec<ChatMessage> = p.iter().chain(c).cloned().collect();
            let text = tokenizer.require_chat_template()?.apply(&all, false)?;
            tokenizer.encode(&text, false)?
        }
        _ => {
            return Err(DataError::Dataset(
                "a prompt and its completion mix a string and a list of messages".into(),
            ))
        }
    };
    Ok(to_i64(ids))
}

/// Tokenizes an unpaired feedback record (module docs for the rules).
pub fn tokenize_unpaired(
    tokenizer: &Tokenizer,
    record: &UnpairedRecord,
    options: &PairOptions,
) -> Result<TokenizedUnpaired> {
    let (prompt_ids, mut truncated) =
        prompt_tokens(tokenizer, &record.prompt, &record.completion, options)?;
    let mut completion_ids = completion_tokens(tokenizer, &record.prompt, &record.completion)?;
    let room = room_for_completion(prompt_ids.len(), options)?;
    truncated |= cut(&mut completion_ids, room);
    Ok(TokenizedUnpaired {
        prompt_ids,
        completion_ids,
        label: record.label,
        truncated,
    })
}

fn to_i64(ids: Vec<u32>) -> Vec<i64> {
    ids.into_iter().map(i64::from).collect()
}

/// The prompt's tokens, cut to `max_prompt_len` keeping the end.
fn prompt_tokens(
    tokenizer: &Tokenizer,
    prompt: &Turns,
    completion: &Turns,
    options: &PairOptions,
) -> Result<(Vec<i64>, bool)> {
    let eos = eos_text(tokenizer)?;
    let (prompt_text, _, templated) =
        render_prompt_completion(tokenizer, prompt, completion, &eos)?;
    let mut ids = to_i64(tokenizer.encode(&prompt_text, !templated)?);
    let mut truncated = false;
    if let Some(max) = options.max_prompt_len {
        if ids.len() > max {
            ids.drain(..ids.len() - max);
            truncated = true;
        }
    }
    Ok((ids, truncated))
}

/// A completion's tokens, ending with EOS.
fn completion_tokens(
    tokenizer: &Tokenizer,
    prompt: &Turns,
    completion: &Turns,
) -> Result<Vec<i64>> {
    let eos = eos_text(tokenizer)?;
    let (_, text, _) = render_prompt_completion(tokenizer, prompt, completion, &eos)?;
    let mut ids = to_i64(tokenizer.encode(&text, false)?);
    let eos_id = i64::from(tokenizer.eos_id);
    if ids.last() != Some(&eos_id) {
        ids.push(eos_id);
    }
    Ok(ids)
}

/// Tokens left for a completion after the prompt; an error when the prompt leaves none.
fn room_for_completion(prompt_len: usize, options: &PairOptions) -> Result<usize> {
    match options.max_seq_len.checked_sub(prompt_len) {
        Some(room) if room > 0 => Ok(room),
        _ => Err(DataError::Dataset(format!(
            "the prompt has {} tokens and leaves no room for an answer within max_seq_len = {}; \
             set max_prompt_len below max_seq_len",
            prompt_len, options.max_seq_len
        ))),
    }
}

/// Keeps the first `max` tokens; whether anything was cut.
fn cut(ids: &mut Vec<i64>, max: usize) -> bool {
    let cut = ids.len() > max;
    ids.truncate(max);
    cut
}
