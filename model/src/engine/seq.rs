//! One running sequence: its sampling parameters, tokens so far, incremental text and stop
//! state, and what it reports when it finishes.

use tiller_data::Tokenizer;

use crate::engine::stop::{Detokenizer, StopMatcher};
use crate::error::Result;
use crate::generate::{FinishReason, Generated};
use crate::sampling::{Sampling, SplitMix64};

/// Per-sequence generation parameters.
#[derive(Debug, Clone)]
pub struct SeqParams {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Seed of this sequence's own RNG (see `generate::row_seed`).
    pub seed: u64,
    /// Token ids that end the sequence (EOS).
    pub stop_token_ids: Vec<u32>,
    /// Texts that end the sequence; the completion is cut before the first one.
    pub stop_strings: Vec<String>,
    /// How many most likely alternatives to report with each token (0: none).
    pub top_logprobs: usize,
}

pub(crate) struct Seq {
    pub id: u64,
    pub params: SeqParams,
    pub rng: SplitMix64,
    pub prompt_tokens: usize,
    pub tokens: Vec<u32>,
    pub logprobs: Vec<f32>,
    detok: Detokenizer,
    stop: StopMatcher,
    pub finish: Option<FinishReason>,
    /// Finished and reported, but still in the batch (`EngineOptions::drop_finished` off).
    pub reported: bool,
}

impl Seq {
    pub fn new(id: u64, params: SeqParams, prompt_tokens: usize) -> Self {
        Seq {
            id,
            rng: SplitMix64(params.seed),
            stop: StopMatcher::new(&params.stop_strings),
            params,
            prompt_tokens,
            tokens: vec![],
            logprobs: vec![],
            detok: Detokenizer::default(),
            finish: None,
            reported: false,
        }
    }

    /// Adds a sampled token; returns the text that may be streamed now.
    pub fn push(&mut self, token: u32, logprob: f32, tokenizer: &Tokenizer) -> Result<String> {
        self.tokens.push(token);
        self.logprobs.push(logprob);
        if self.params.stop_token_ids.contains(&token) {
            self.finish = Some(FinishReason::Eos);
            return Ok(String::new());
        }
        let delta = self.detok.next(tokenizer, &self.tokens)?;
        if self.stop.push(&delta).is_some() {
            self.finish = Some(FinishReason::StopString);
            return Ok(String::new());
        }
        if self.tokens.len() >= self.params.max_new_tokens {
            self.finish = Some(FinishReason::Length);
        }
        Ok(self.stop.take_safe())
    }

    /// The finished completion (decoded once, whole) and the text not yet streamed.
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> Result<(Generated, String)> {
        let finish = self.finish.unwrap_or(FinishReason::Length);
        let text_tokens = match finish {
            FinishReason::Eos => &self.tokens[..self.tokens.len() - 1],
            FinishReason::StopString | FinishReason::Length => &self.tokens[..],
        };
        let mut text = tokenizer.decode(text_tokens, true)?;
        if let Some(cut) = self
            .params
            .stop_strings
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            text.truncate(cut);
        }
        let rest = self.stop.take_rest(&text);
        let generated = Generated {
            tokens: std::mem::take(&mut self.tokens),
            logprobs: std::mem::take(&mut self.logprobs),
            text,
            finish,
        };
        Ok((generated, rest))
    }
}
