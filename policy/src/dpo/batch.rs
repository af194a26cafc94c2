//! Pairs as one concatenated forward: the chosen and rejected answers of a batch are
//! collated together (chosen first), run through the model once, and their completion
//! log-probs summed per sequence. The LM head runs on completion positions only.

use tch::{Device, Kind, Reduction, Tensor};
use tiller_data::{collate, Collation, TokenizedExample, TokenizedPair};
use tiller_model::llama::Llama;
use tiller_model::train::{per_example_sum, target_logits, TrainBatch};

use crate::error::Result;

/// A collated batch of `pairs` pairs: sequences `0..pairs` chosen, `pairs..2·pairs` rejected.
pub struct PairBatch {
    pub batch: TrainBatch,
    pub pairs: usize,
    /// (2·pairs,) i64: for each sequence, its segment in `batch` (packing may reorder).
    segment_of: Tensor,
    /// Completion tokens per sequence (chosen first), as f64.
    pub tokens: Vec<f64>,
}

impl PairBatch {
    pub fn new(
        pairs: &[&TokenizedPair],
        collation: Collation,
        row_len: usize,
        pad_id: i64,
        device: Device,
    ) -> Result<Self> {
        let examples: Vec<TokenizedExample> = pairs
            .iter()
            .map(|p| p.chosen())
            .chain(pairs.iter().map(|p| p.rejected()))
            .collect();
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
        Ok(PairBatch {
            batch: TrainBatch::from_packed(&packed, device)?,
            pairs: pairs.len(),
            segment_of: Tensor::from_slice(&segment_of).to_device(device),
            tokens,
        })
    }

    /// Completion token counts of the chosen and the rejected answers, (pairs,) each.
    pub fn token_counts(&self, kind: Kind, device: Device) -> (Tensor, Tensor) {
        let t = Tensor::from_slice(&self.tokens)
            .to_kind(kind)
            .to_device(device);
        let n = self.pairs as i64;
        (t.narrow(0, 0, n), t.narrow(0, n, n))
    }

    /// Real tokens in the batch.
    pub fn num_tokens(&self) -> usize {
        self.batch.num_tokens
    }
}

/// Summed completion log-probs per sequence and the mean completion logits.
pub struct SeqLogps {
    /// (pairs,) chosen and rejected summed log-probs.
    pub chosen: Tensor,
    pub rejected: Tensor,
    /// Mean over chosen (rejected) completion positions and the vocabulary of the logits
    /// (TRL's `logits/chosen`); NaN when not computed.
    pub logits_chosen: f64,
    pub logits_rejected: f64,
}

/// One forward pass of `model` over `b`.
pub fn sequence_logps(model: &Llama, b: &PairBatch) -> Result<SeqLogps> {
    let tb = &b.batch;
    let hidden = model.forward(&tb.input_ids, &tb.positions, tb.mask.as_ref(), None);
    let logits = target_logits(model, &hidden, &tb.targets); // (n, V)
    let logps = -logits.f_cross_entropy_loss::<Tensor>(
        &tb.targets.labels,
        None,
        Reduction::None,
        -100,
        0.0,
    )?;
    let per_segment = per_example_sum(&logps, &tb.targets, tb.num_examples); // (2·pairs,)
    let per_seq = per_segment
        .index_select(0, &b.segment_of)
        .to_kind(logp_kind(per_segment.kind()));
    let n = b.pairs as i64;
    let (logits_chosen, logits_rejected) = tch::no_grad(|| -> Result<(f64, f64)> {
        let vocab = logits.size().last().copied().unwrap_or(1) as f64;
        let sums = per_example_sum(
            &logits.detach().sum_dim_intlist(-1, false, Kind::Float),
            &tb.targets,
            tb.num_examples,
        )
        .index_select(0, &b.segment_of);
        let (c, r) = (
            sums.narrow(0, 0, n).sum(Kind::Double),
            sums.narrow(0, n, n).sum(Kind::Double),
        );
        let (tc, tr): (f64, f64) = (
            b.tokens[..b.pairs].iter().sum(),
            b.tokens[b.pairs..].iter().sum(),
        );
        Ok((
            c.f_double_value(&[])? / (tc.max(1.0) * vocab),
            r.f_double_value(&[])? / (tr.max(1.0) * vocab),
        ))
    })?;
    Ok(SeqLogps {
        chosen: per_seq.narrow(0, 0, n),
        rejected: per_seq.narrow(0, n, n),
        logits_chosen,
        logits_rejected,
    })
}

/// Log-probs are summed in f32 for f32/bf16 models (f64 models keep f64).
pub fn logp_kind(model: Kind) -> Kind {
    match model {
        Kind::Double => Kind::Double,
        _ => Kind::Float,
    }
}
