//! Pairs as one concatenated forward: the chosen and rejected answers of a batch are
//! collated together (chosen first), run through the model once, and their completion
//! log-probs summed per sequence (see [`crate::sequences`]).

use tch::{Device, Kind, Tensor};
use tiller_data::{Collation, TokenizedExample, TokenizedPair};
use tiller_model::llama::Llama;

use crate::error::Result;
pub use crate::sequences::logp_kind;
use crate::sequences::{self, PackedSequences};

/// A collated batch of `pairs` pairs: sequences `0..pairs` chosen, `pairs..2·pairs` rejected.
pub struct PairBatch {
    pub seqs: PackedSequences,
    pub pairs: usize,
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
        Ok(PairBatch {
            seqs: PackedSequences::new(&examples, collation, row_len, pad_id, device)?,
            pairs: pairs.len(),
        })
    }

    /// Completion token counts of the chosen and the rejected answers, (pairs,) each.
    pub fn token_counts(&self, kind: Kind, device: Device) -> (Tensor, Tensor) {
        let t = self.seqs.token_counts(kind, device);
        let n = self.pairs as i64;
        (t.narrow(0, 0, n), t.narrow(0, n, n))
    }

    /// Real tokens in the batch.
    pub fn num_tokens(&self) -> usize {
        self.seqs.num_tokens()
    }
}

/// Summed completion log-probs of a [`PairBatch`]'s answers and their mean logits.
pub struct PairBatchLogps {
    /// (pairs,) chosen and rejected summed log-probs.
    pub chosen: Tensor,
    pub rejected: Tensor,
    /// Mean over chosen (rejected) completion positions and the vocabulary of the logits
    /// (TRL's `logits/chosen`).
    pub logits_chosen: f64,
    pub logits_rejected: f64,
}

/// One forward pass of `model` over `b`.
pub fn pair_logps(model: &Llama, b: &PairBatch) -> Result<PairBatchLogps> {
    let s = sequences::sequence_logps(model, &b.seqs)?;
    let n = b.pairs;
    Ok(PairBatchLogps {
        chosen: s.logps.narrow(0, 0, n as i64),
        rejected: s.logps.narrow(0, n as i64, n as i64),
        logits_chosen: s.mean_logit(&b.seqs, 0, n)?,
        logits_rejected: s.mean_logit(&b.seqs, n, n)?,
    })
}
