//! Log-likelihood scoring: the summed log-probability of continuation tokens given a
//! context, batched with right padding (sorted by length, as lm-evaluation-harness does).

use tch::{Kind, Tensor};

use crate::checkpoint::CausalLm;
use crate::error::{ModelError, Result};

/// Score `continuation` given `context`. Every continuation token is scored; the context
/// must hold at least one token (for raw text, its first token).
#[derive(Debug, Clone)]
pub struct ScoreRequest {
    pub context: Vec<u32>,
    pub continuation: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Sum of natural-log probabilities of the continuation tokens.
    pub logprob: f64,
    /// How many tokens were scored.
    pub tokens: usize,
    /// Whether every continuation token was the model's argmax (greedy) choice.
    pub is_greedy: bool,
}

pub fn score(lm: &CausalLm, requests: &[ScoreRequest], batch_size: usize) -> Result<Vec<Score>> {
    let context = lm.config.max_position_embeddings;
    for (i, r) in requests.iter().enumerate() {
        if r.context.is_empty() {
            return Err(ModelError::InvalidArgument(format!(
                "row {i}: nothing to condition the first token on"
            )));
        }
        let len = r.context.len() + r.continuation.len();
        if len > context {
            return Err(ModelError::ContextOverflow {
                index: i,
                tokens: len,
                max_new_tokens: 0,
                context,
            });
        }
    }
    // Longest first: similar lengths share a batch, and memory peaks at the start.
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by_key(|&i| {
        std::cmp::Reverse(requests[i].context.len() + requests[i].continuation.len())
    });
    let mut scores = vec![
        Score {
            logprob: 0.0,
            tokens: 0,
            is_greedy: true
        };
        requests.len()
    ];
    for chunk in order.chunks(batch_size.max(1)) {
        let batch: Vec<&ScoreRequest> = chunk.iter().map(|&i| &requests[i]).collect();
        for (&i, s) in chunk.iter().zip(tch::no_grad(|| score_batch(lm, &batch))?) {
            scores[i] = s;
        }
    }
    Ok(scores)
}

fn score_batch(lm: &CausalLm, batch: &[&ScoreRequest]) -> Result<Vec<Score>> {
    let device = lm.device();
    let lens: Vec<usize> = batch
        .iter()
        .map(|r| r.context.len() + r.continuation.len())
        .collect();
    let longest = lens.iter().copied().max().unwrap_or(0) as i64;
    let b = batch.len() as i64;
    let mut ids = vec![0i64; (b * longest) as usize];
    for (row, r) in batch.iter().enumerate() {
        for (j, &id) in r.context.iter().chain(&r.continuation).enumerate() {
            ids[row * longest as usize + j] = id as i64;
        }
    }
    let ids = Tensor::from_slice(&ids)
        .view([b, longest])
        .to_device(device);
    let positions = Tensor::arange(longest, (Kind::Int64, device)).expand([b, longest], false);
    // Right padding: real tokens never attend to the padding after them, so plain causal
    // attention is exact for them.
    let hidden = lm.model.forward(&ids, &positions, None, None); // (b, t, c)
    let mut out = Vec::with_capacity(batch.len());
    for (row, r) in batch.iter().enumerate() {
        let (start, n) = (r.context.len() as i64 - 1, r.continuation.len() as i64);
        if n == 0 {
            out.push(Score {
                logprob: 0.0,
                tokens: 0,
                is_greedy: true,
            });
            continue;
        }
        let logits = lm.model.logits(&hidden.get(row as i64).narrow(0, start, n)); // (n, vocab)
        let targets = ids.get(row as i64).narrow(0, start + 1, n);
        let log_probs = logits.log_softmax(-1, Kind::Float);
        let chosen = log_probs.gather(1, &targets.unsqueeze(1), false);
        let greedy = logits.argmax(-1, false).eq_tensor(&targets).all();
        out.push(Score {
            logprob: chosen
                .to_kind(Kind::Double)
                .sum(Kind::Double)
                .double_value(&[]),
            tokens: n as usize,
            is_greedy: greedy.int64_value(&[]) != 0,
        });
    }
    Ok(out)
}
