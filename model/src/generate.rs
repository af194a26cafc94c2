//! Generation for a fixed list of prompts, on the decode engine (`crate::engine`): rows
//! leave the batch as soon as they stop (an EOS id, a stop string, or max_new_tokens), and
//! identical prompts are prefilled once.

use std::collections::HashMap;

use tiller_data::Tokenizer;

use crate::checkpoint::CausalLm;
use crate::engine::{Engine, Event, SeqParams};
use crate::error::{ModelError, Result};
use crate::sampling::{Sampling, SplitMix64};

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
    // Identical prompts (a GRPO group's samples) are prefilled once.
    let mut groups: Vec<(&[u32], Vec<usize>)> = vec![];
    let mut group_of: HashMap<&[u32], usize> = HashMap::new();
    for (row, prompt) in prompts.iter().enumerate() {
        let g = *group_of.entry(prompt.as_slice()).or_insert_with(|| {
            groups.push((prompt.as_slice(), vec![]));
            groups.len() - 1
        });
        groups[g].1.push(row);
    }
    let mut engine = Engine::new(lm, tokenizer, prompts.len());
    let mut row_of: HashMap<u64, usize> = HashMap::new();
    for (prompt, rows) in groups {
        let params = rows
            .iter()
            .map(|&row| SeqParams {
                max_new_tokens: config.max_new_tokens,
                sampling: config.sampling,
                seed: row_seed(config.seed, row_indices[row]),
                stop_token_ids: config.stop_token_ids.clone(),
                stop_strings: config.stop_strings.clone(),
                top_logprobs: 0,
            })
            .collect();
        for (id, &row) in engine.add(prompt.to_vec(), params)?.iter().zip(&rows) {
            row_of.insert(*id, row);
        }
    }
    let mut results: Vec<Option<Generated>> = vec![None; prompts.len()];
    while !engine.is_idle() {
        for event in engine.step()? {
            if let Event::Finished { id, generated, .. } = event {
                if let Some(&row) = row_of.get(&id) {
                    results[row] = Some(generated);
                }
            }
        }
    }
    results
        .into_iter()
        .enumerate()
        .map(|(row, g)| {
            g.ok_or_else(|| {
                ModelError::InvalidArgument(format!(
                    "prompt {} produced no completion",
                    row_indices[row]
                ))
            })
        })
        .collect()
}
