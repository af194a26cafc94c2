//! Summed completion log-probs of a batch of prompt + completion sequences in one forward
//! pass, the building block of DPO (chosen and rejected together) and KTO (completions,
//! and their mismatched KL pairs). The sequences are collated as SFT's are (padding-free,
//! padded or packed), and the LM head runs on completion positions only. The per-token
//! log-probs are [`token_logprobs`], as the RL trainers' (`rl::rollout`).

use tch::{Device, Kind, Tensor};
use tiller_data::{collate, Collation, TokenizedExample};
use tiller_model::llama::Llama;
use tiller_model::train::{per_example_sum, target_logits, token_logprobs, TrainBatch};

use crate::error::Result;

/// A collated batch of sequences, remembering which segment holds which sequence.
pub struct PackedSequences {
    pub batch: TrainBatch,
    /// (n,) i64: for each sequence, its segment in `batch` (packing may reorder).
    segment_of: Tensor,
    /// Completion tokens per sequence, as f64.
    pub tokens: Vec<f64>,
}

impl PackedSequences {
    pub fn new(
        examples: &[TokenizedExample],
        collation: Collation,
        row_len: usize,
        pad_id: i64,
        device: Device,
    ) -> Result<Self> {
        let refs: Vec<&TokenizedExample> = examples.iter().collect();
        let packed = collate(&refs, collation, row_len, pad_id)?;
        let mut segment_of = vec![0i64; examples.len()];
        for (k, seg) in packed.segments.iter().enumerate() {
            segment_of[seg.example] = k as i64;
        }
        // Targets as TrainBatch counts them: completion tokens after the first token.
        let tokens = examples
            .iter()
            .map(|e| {
                e.loss_mask
                    .iter()
                    .enumerate()
                    .filter(|(t, &m)| m && *t > 0)
                    .count() as f64
            })
            .collect();
        Ok(PackedSequences {
            batch: TrainBatch::from_packed(&packed, device)?,
            segment_of: Tensor::from_slice(&segment_of).to_device(device),
            tokens,
        })
    }

    /// Sequences in the batch.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Real tokens in the batch.
    pub fn num_tokens(&self) -> usize {
        self.batch.num_tokens
    }

    /// Completion token counts, (n,).
    pub fn token_counts(&self, kind: Kind, device: Device) -> Tensor {
        Tensor::from_slice(&self.tokens)
            .to_kind(kind)
            .to_device(device)
    }
}

/// Per sequence: summed completion log-probs, and the detached sum of the completion
/// logits over positions and vocabulary (for TRL's `logits/*` metrics).
pub struct SequenceLogps {
    /// (n,) in [`logp_kind`] of the model.
    pub logps: Tensor,
    /// (n,) f64, no gradient.
    pub logit_sums: Tensor,
    pub vocab: usize,
}

impl SequenceLogps {
    /// Mean logit over the completion positions of sequences `start..start + len` and
    /// the vocabulary (TRL's `logits/chosen`).
    pub fn mean_logit(&self, b: &PackedSequences, start: usize, len: usize) -> Result<f64> {
        let sum = self
            .logit_sums
            .narrow(0, start as i64, len as i64)
            .sum(Kind::Double)
            .f_double_value(&[])?;
        let tokens: f64 = b.tokens[start..start + len].iter().sum();
        Ok(sum / (tokens.max(1.0) * self.vocab as f64))
    }
}

/// One forward pass of `model` over `b`.
pub fn sequence_logps(model: &Llama, b: &PackedSequences) -> Result<SequenceLogps> {
    let tb = &b.batch;
    let hidden = model.forward(&tb.input_ids, &tb.positions, tb.mask.as_ref(), None);
    let logits = target_logits(model, &hidden, &tb.targets); // (n, V)
    let logps = token_logprobs(&logits, &tb.targets.labels)?.labels;
    let per_segment = per_example_sum(&logps, &tb.targets, tb.num_examples);
    let per_seq = per_segment
        .index_select(0, &b.segment_of)
        .to_kind(logp_kind(per_segment.kind()));
    let logit_sums = tch::no_grad(|| {
        per_example_sum(
            &logits.detach().sum_dim_intlist(-1, false, Kind::Double),
            &tb.targets,
            tb.num_examples,
        )
        .index_select(0, &b.segment_of)
    });
    Ok(SequenceLogps {
        logps: per_seq,
        logit_sums,
        vocab: logits.size().last().copied().unwrap_or(1).max(1) as usize,
    })
}

/// Log-probs are summed in f32 for f32/bf16 models (f64 models keep f64).
pub fn logp_kind(model: Kind) -> Kind {
    match model {
        Kind::Double => Kind::Double,
        _ => Kind::Float,
    }
}
