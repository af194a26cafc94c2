//! Batched generation with left padding and a KV cache: the prompt is run once, then one
//! token per step for every row. Rows stop on an EOS id, a stop string, or max_new_tokens.

use tch::{Kind, Tensor};
use tiller_data::Tokenizer;

use crate::checkpoint::CausalLm;
use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::llama::{padded_causal_mask, padded_positions};
use crate::sampling::{choose_tokens, Sampling, SplitMix64};

#[derive(Debug, Clone)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    pub seed: u64,
    /// Token ids that end a row (the tokenizer's EOS and config.json's eos_token_id).
    pub stop_token_ids: Vec<u32>,
    /// Texts that end a row; the completion text is cut before the first one.
    pub stop_strings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Eos,
    StopString,
    Length,
}

#[derive(Debug, Clone)]
pub struct Generated {
    /// Every sampled token, including a final stop token.
    pub tokens: Vec<u32>,
    /// Log-probability of each sampled token (see `sampling::choose_tokens`).
    pub logprobs: Vec<f32>,
    /// Decoded completion, up to (not including) the stop token or stop string.
    pub text: String,
    pub finish: FinishReason,
}

impl GenerationConfig {
    pub fn greedy(max_new_tokens: usize, tokenizer: &Tokenizer) -> Self {
        GenerationConfig {
            max_new_tokens,
            sampling: Sampling::Greedy,
            seed: 0,
            stop_token_ids: vec![tokenizer.eos_id],
            stop_strings: vec![],
        }
    }
}

/// The seed of row `index` of a request: rows sample independently of batch composition.
pub fn row_seed(seed: u64, index: usize) -> u64 {
    SplitMix64(seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407)).next_u64()
}

/// Generates a completion for each prompt (token ids). `row_indices[i]` is the position of
/// `prompts[i]` in the whole request: it seeds the row's sampling, so a row's completion
/// does not depend on which batch it ran in, and it names the row in errors.
pub fn generate(
    lm: &CausalLm,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    row_indices: &[usize],
    config: &GenerationConfig,
) -> Result<Vec<Generated>> {
    if row_indices.len() != prompts.len() {
        return Err(ModelError::InvalidArgument(format!(
            "{} prompts but {} row indices",
            prompts.len(),
            row_indices.len()
        )));
    }
    if prompts.is_empty() {
        return Ok(vec![]);
    }
    let context = lm.config.max_position_embeddings;
    for (p, &index) in prompts.iter().zip(row_indices) {
        if p.is_empty() {
            return Err(ModelError::InvalidArgument(format!(
                "prompt {index} is empty"
            )));
        }
        if p.len() + config.max_new_tokens > context {
            return Err(ModelError::ContextOverflow {
                index,
                tokens: p.len(),
                max_new_tokens: config.max_new_tokens,
                context,
            });
        }
    }
    tch::no_grad(|| generate_no_grad(lm, tokenizer, prompts, row_indices, config))
}

fn generate_no_grad(
    lm: &CausalLm,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    row_indices: &[usize],
    config: &GenerationConfig,
) -> Result<Vec<Generated>> {
    let device = lm.device();
    let b = prompts.len() as i64;
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) as i64;
    let padded = prompts.iter().any(|p| p.len() as i64 != longest);

    // Left padding: every prompt ends at column `longest - 1`.
    let mut ids = vec![tokenizer.pad_id as i64; (b * longest) as usize];
    let mut valid = vec![false; (b * longest) as usize];
    for (row, prompt) in prompts.iter().enumerate() {
        let start = row * longest as usize + (longest as usize - prompt.len());
        for (j, &id) in prompt.iter().enumerate() {
            ids[start + j] = id as i64;
            valid[start + j] = true;
        }
    }
    let ids = Tensor::from_slice(&ids)
        .view([b, longest])
        .to_device(device);
    let mut key_valid = Tensor::from_slice(&valid)
        .view([b, longest])
        .to_device(device);
    let mut positions = padded_positions(&key_valid);

    let mut cache = KvCache::new(
        &lm.config,
        b,
        longest + config.max_new_tokens as i64,
        lm.kind(),
        device,
    );
    let prefill_mask = padded.then(|| padded_causal_mask(&key_valid));
    let hidden = lm
        .model
        .forward(&ids, &positions, prefill_mask.as_ref(), Some(&mut cache));
    let mut logits = lm.model.logits(&hidden.select(1, longest - 1));

    let mut rngs: Vec<SplitMix64> = row_indices
        .iter()
        .map(|&i| SplitMix64(row_seed(config.seed, i)))
        .collect();
    let mut rows: Vec<RowState> = (0..prompts.len()).map(|_| RowState::default()).collect();
    for step in 0..config.max_new_tokens {
        let (next, logprobs) = choose_tokens(&logits, config.sampling, &mut rngs)?;
        for (row, state) in rows.iter_mut().enumerate() {
            if state.finish.is_none() {
                state.push(next[row] as u32, logprobs[row], config, tokenizer)?;
            }
        }
        if step + 1 == config.max_new_tokens || rows.iter().all(|r| r.finish.is_some()) {
            break;
        }
        let input: Vec<i64> = rows
            .iter()
            .zip(&next)
            .map(|(r, &id)| {
                if r.finish.is_some() {
                    tokenizer.pad_id as i64
                } else {
                    id
                }
            })
            .collect();
        let input = Tensor::from_slice(&input).view([b, 1]).to_device(device);
        positions = positions.narrow(1, positions.size()[1] - 1, 1) + 1;
        key_valid = Tensor::cat(
            &[&key_valid, &Tensor::ones([b, 1], (Kind::Bool, device))],
            1,
        );
        let mask = padded.then(|| key_valid.view([b, 1, 1, -1]));
        let hidden = lm
            .model
            .forward(&input, &positions, mask.as_ref(), Some(&mut cache));
        logits = lm.model.logits(&hidden.select(1, 0));
    }
    rows.into_iter().map(|r| r.finish(tokenizer)).collect()
}

#[derive(Default)]
struct RowState {
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    finish: Option<FinishReason>,
    /// Byte length of the text before the first stop string, once one has appeared.
    cut: Option<usize>,
}

impl RowState {
    fn push(
        &mut self,
        token: u32,
        logprob: f32,
        config: &GenerationConfig,
        tokenizer: &Tokenizer,
    ) -> Result<()> {
        self.tokens.push(token);
        self.logprobs.push(logprob);
        if config.stop_token_ids.contains(&token) {
            self.finish = Some(FinishReason::Eos);
        } else if !config.stop_strings.is_empty() {
            let text = tokenizer.decode(&self.tokens, true)?;
            if let Some(cut) = config
                .stop_strings
                .iter()
                .filter_map(|s| text.find(s.as_str()))
                .min()
            {
                self.cut = Some(cut);
                self.finish = Some(FinishReason::StopString);
            }
        }
        Ok(())
    }

    fn finish(self, tokenizer: &Tokenizer) -> Result<Generated> {
        let finish = self.finish.unwrap_or(FinishReason::Length);
        let text_tokens = match finish {
            FinishReason::Eos => &self.tokens[..self.tokens.len() - 1],
            _ => &self.tokens[..],
        };
        let mut text = tokenizer.decode(text_tokens, true)?;
        if let Some(cut) = self.cut {
            text.truncate(cut);
        }
        Ok(Generated {
            tokens: self.tokens,
            logprobs: self.logprobs,
            text,
            finish,
        })
    }
}
