//! Two candidate answers per prompt for an annotation campaign, from the one decode
//! engine: one model sampled twice (seeds `seed` and `seed + 1`), or two models once each.
//! `tiller annotate generate` and the pipeline's `annotate-queue` stage both sample here.

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tiller_annotate::{Answer, Message, Prompt};
use tiller_data::ChatMessage;
use tiller_model::train::DeviceName;
use tiller_model::{DType, GenerationConfig, Sampling};

use tiller_eval::run::load_model;

use crate::generation::generate_all;

/// How answers are sampled (the `[sampling]` table of an `annotate-queue` stage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSampling {
    #[serde(default)]
    pub device: DeviceName,
    #[serde(default)]
    pub dtype: DType,
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    #[serde(default = "default_top_p")]
    pub top_p: f64,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

fn default_max_new_tokens() -> usize {
    256
}
fn default_temperature() -> f64 {
    0.8
}
fn default_top_p() -> f64 {
    0.95
}
fn default_batch_size() -> usize {
    16
}

impl Default for PairSampling {
    fn default() -> Self {
        PairSampling {
            device: DeviceName::default(),
            dtype: DType::default(),
            max_new_tokens: default_max_new_tokens(),
            temperature: default_temperature(),
            top_p: default_top_p(),
            seed: 0,
            batch_size: default_batch_size(),
        }
    }
}

/// Two answers to each of `prompts`, tagged with the model (and sample) that wrote them.
pub fn sample_pairs(
    models: &[PathBuf],
    prompts: &[Vec<ChatMessage>],
    sampling: &PairSampling,
) -> Result<Vec<[Answer; 2]>> {
    let runs: Vec<(usize, &PathBuf)> = match models {
        [one] => vec![(0, one), (1, one)],
        [_, _] => models.iter().enumerate().collect(),
        _ => bail!("give one model (two samples each) or two models"),
    };
    let loaded = models
        .iter()
        .map(|m| load_model(m, sampling.device.as_str(), sampling.dtype))
        .collect::<tiller_eval::Result<Vec<_>>>()?;
    let mut answers: Vec<Vec<Answer>> = vec![Vec::new(); prompts.len()];
    for (sample, model) in runs {
        let (lm, tokenizer) = &loaded[if models.len() == 1 { 0 } else { sample }];
        let template = tokenizer.require_chat_template()?;
        let ids = prompts
            .iter()
            .map(|m| Ok(tokenizer.encode(&template.apply(m, true)?, false)?))
            .collect::<Result<Vec<_>>>()?;
        let mut stop_token_ids = lm.config.eos_token_ids();
        stop_token_ids.push(tokenizer.eos_id);
        let config = GenerationConfig {
            max_new_tokens: sampling.max_new_tokens,
            sampling: Sampling::from_options(sampling.temperature, None, Some(sampling.top_p)),
            seed: sampling.seed.wrapping_add(sample as u64),
            stop_token_ids,
            stop_strings: vec![],
        };
        let tag = match models.len() {
            1 => format!("{}#{}", model.display(), sample + 1),
            _ => model.display().to_string(),
        };
        let label = format!("answer {}", sample + 1);
        for (i, g) in generate_all(lm, tokenizer, &ids, &config, sampling.batch_size, &label)?
            .into_iter()
            .enumerate()
        {
            answers[i].push(Answer {
                model: tag.clone(),
                text: g.text,
            });
        }
    }
    answers
        .into_iter()
        .map(|pair| {
            pair.try_into()
                .map_err(|_| anyhow::anyhow!("expected two answers per prompt"))
        })
        .collect()
}

/// A chat as the store keeps an item's prompt.
pub fn prompt_of(messages: &[ChatMessage]) -> Prompt {
    Prompt::Messages(
        messages
            .iter()
            .map(|m| Message {
                role: m.role.clone(),
                content: m.content.clone(),
            })
            .collect(),
    )
}
