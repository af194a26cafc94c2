//! The `Reward` trait: score (prompt, completion) rows, one value per row. PPO, GRPO and
//! RLOO take any `Reward` — a reward model, rules, a closure, or a weighted sum of them.

use tch::{Kind, Tensor};
use tiller_data::{ChatMessage, Tokenizer};

use crate::error::Result;
use crate::model::RewardModel;

#[derive(Debug, Clone)]
pub struct RewardInput {
    pub prompt: Vec<ChatMessage>,
    pub completion: String,
}

impl RewardInput {
    pub fn new(prompt: &str, completion: &str) -> Self {
        RewardInput {
            prompt: vec![ChatMessage::user(prompt)],
            completion: completion.to_owned(),
        }
    }
}

pub trait Reward {
    /// A short name for logs and metrics.
    fn name(&self) -> String;
    fn score(&self, batch: &[RewardInput]) -> Result<Vec<f64>>;
}

/// Any closure over one row is a reward.
pub struct FnReward<F> {
    pub name: String,
    pub f: F,
}

impl<F: Fn(&RewardInput) -> f64> Reward for FnReward<F> {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn score(&self, batch: &[RewardInput]) -> Result<Vec<f64>> {
        Ok(batch.iter().map(&self.f).collect())
    }
}

/// Σ weightᵢ · rewardᵢ.
pub struct WeightedSum {
    pub parts: Vec<(f64, Box<dyn Reward>)>,
}

impl Reward for WeightedSum {
    fn name(&self) -> String {
        let names: Vec<String> = self
            .parts
            .iter()
            .map(|(w, r)| format!("{w}·{}", r.name()))
            .collect();
        names.join(" + ")
    }
    fn score(&self, batch: &[RewardInput]) -> Result<Vec<f64>> {
        let mut total = vec![0.0; batch.len()];
        for (weight, reward) in &self.parts {
            for (t, s) in total.iter_mut().zip(reward.score(batch)?) {
                *t += weight * s;
            }
        }
        Ok(total)
    }
}

/// A reward model scoring the conversation prompt + completion through the chat template.
pub struct ModelReward {
    pub model: RewardModel,
    pub tokenizer: Tokenizer,
    pub batch_size: usize,
    /// Rows longer than this keep their first `max_len` tokens.
    pub max_len: usize,
}

impl ModelReward {
    /// Token ids of the conversation prompt + answer.
    pub fn encode(&self, input: &RewardInput) -> Result<Vec<u32>> {
        encode_conversation(
            &self.tokenizer,
            &input.prompt,
            &input.completion,
            self.max_len,
        )
    }

    /// Rewards for already-tokenized rows, right-padded in batches.
    pub fn score_ids(&self, rows: &[Vec<u32>]) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(self.batch_size.max(1)) {
            let (ids, valid) = right_padded(chunk, self.tokenizer.pad_id, self.model.device());
            let r = tch::no_grad(|| self.model.rewards(&ids, &valid));
            out.extend(Vec::<f32>::try_from(&r)?.into_iter().map(f64::from));
        }
        Ok(out)
    }
}

impl Reward for ModelReward {
    fn name(&self) -> String {
        "reward_model".into()
    }
    fn score(&self, batch: &[RewardInput]) -> Result<Vec<f64>> {
        let rows = batch
            .iter()
            .map(|r| self.encode(r))
            .collect::<Result<Vec<_>>>()?;
        self.score_ids(&rows)
    }
}

/// Token ids of `prompt` + the assistant's `completion` through the chat template, the
/// first `max_len` of them: what a reward model (or the refusal classifier) reads.
pub fn encode_conversation(
    tokenizer: &Tokenizer,
    prompt: &[ChatMessage],
    completion: &str,
    max_len: usize,
) -> Result<Vec<u32>> {
    let mut messages = prompt.to_vec();
    messages.push(ChatMessage::assistant(completion.to_owned()));
    let text = tokenizer.require_chat_template()?.apply(&messages, false)?;
    let mut ids = tokenizer.encode(&text, false)?;
    ids.truncate(max_len);
    Ok(ids)
}

/// (ids, valid) tensors of shape (b, longest), padded on the right with `pad`.
pub fn right_padded(rows: &[Vec<u32>], pad: u32, device: tch::Device) -> (Tensor, Tensor) {
    let longest = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut ids = vec![pad as i64; rows.len() * longest];
    let mut valid = vec![false; rows.len() * longest];
    for (r, row) in rows.iter().enumerate() {
        for (j, &id) in row.iter().enumerate() {
            ids[r * longest + j] = id as i64;
            valid[r * longest + j] = true;
        }
    }
    let shape = [rows.len() as i64, longest as i64];
    (
        Tensor::from_slice(&ids).view(shape).to_device(device),
        Tensor::from_slice(&valid)
            .view(shape)
            .to_kind(Kind::Bool)
            .to_device(device),
    )
}
