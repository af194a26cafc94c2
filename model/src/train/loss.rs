//! Token-level log-probabilities and cross-entropy that only pay for the positions the loss
//! uses: hidden states are gathered at target positions *before* the LM head, so no
//! `(batch, seq, vocab)` logits tensor is ever built for prompt or padding tokens.

use tch::{Device, Kind, Reduction, Tensor};
use tiller_data::PackedBatch;

use crate::error::{ModelError, Result};
use crate::llama::Llama;

/// A collated batch as tensors: what [`Llama::forward`] takes, plus the loss targets.
pub struct TrainBatch {
    /// (rows, t)
    pub input_ids: Tensor,
    /// (rows, t), restarting at 0 for every packed example.
    pub positions: Tensor,
    /// Boolean (rows, 1, t, t) block-diagonal causal mask; None when every row holds one
    /// example without padding (plain causal attention, the fastest path).
    pub mask: Option<Tensor>,
    pub targets: Targets,
    /// Real (non-padding) tokens in the batch.
    pub num_tokens: usize,
    /// Examples in the batch.
    pub num_examples: usize,
}

/// Which hidden states predict which tokens, flattened over `(rows * t)`.
pub struct Targets {
    /// (n,) i64 indices into the flattened hidden states: the position *before* each target.
    pub positions: Tensor,
    /// (n,) i64 target token ids.
    pub labels: Tensor,
    /// (n,) i64 index of the example (in packing order) each target belongs to, for
    /// per-sequence sums (DPO, reward models).
    pub example: Tensor,
}

impl Targets {
    pub fn len(&self) -> usize {
        self.labels.numel()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TrainBatch {
    /// Tensors for `batch` on `device`. Token `i` of an example is a target when
    /// `loss_mask[i]`; the hidden state at `i - 1` predicts it.
    pub fn from_packed(batch: &PackedBatch, device: Device) -> Result<Self> {
        let (rows, t) = (batch.rows as i64, batch.seq_len as i64);
        if batch.input_ids.len() != (rows * t) as usize
            || batch.segment_ids.len() != batch.input_ids.len()
        {
            return Err(ModelError::InvalidArgument(format!(
                "packed batch has {} ids and {} segment ids for {rows} rows of {t}",
                batch.input_ids.len(),
                batch.segment_ids.len()
            )));
        }
        let (mut positions, mut labels, mut example) = (Vec::new(), Vec::new(), Vec::new());
        for (k, seg) in batch.segments.iter().enumerate() {
            let base = seg.row * batch.seq_len + seg.start;
            for i in 1..seg.len {
                if batch.loss_mask[base + i] {
                    positions.push((base + i - 1) as i64);
                    labels.push(batch.input_ids[base + i]);
                    example.push(k as i64);
                }
            }
        }
        let one_per_row = batch.segments.len() == batch.rows;
        let no_padding = batch.attention_mask.iter().all(|&m| m == 1);
        let segment_ids = Tensor::from_slice(&batch.segment_ids)
            .view([rows, t])
            .to_device(device);
        let mask = (!(one_per_row && no_padding)).then(|| segment_mask(&segment_ids));
        let ids = |v: &[i64]| Tensor::from_slice(v).to_device(device);
        Ok(TrainBatch {
            input_ids: ids(&batch.input_ids).view([rows, t]),
            positions: ids(&batch.position_ids).view([rows, t]),
            mask,
            targets: Targets {
                positions: ids(&positions),
                labels: ids(&labels),
                example: ids(&example),
            },
            num_tokens: batch.attention_mask.iter().filter(|&&m| m == 1).count(),
            num_examples: batch.segments.len(),
        })
    }
}

/// Boolean (rows, 1, t, t) mask from segment ids (rows, t): query `i` sees key `j` iff
/// `j <= i` and both lie in the same segment. Padding (segment 0) attends to padding, so
/// no query row is fully masked (that would make attention NaN, even where unused).
pub fn segment_mask(segment_ids: &Tensor) -> Tensor {
    let (_, t) = segment_ids.size2().unwrap_or((1, 1));
    let same = segment_ids
        .unsqueeze(2)
        .eq_tensor(&segment_ids.unsqueeze(1)); // (rows, t, t)
    let causal = Tensor::ones([t, t], (Kind::Bool, segment_ids.device())).tril(0);
    same.logical_and(&causal).unsqueeze(1)
}

/// Summed token loss over a batch's targets, and how many targets the model ranks first.
pub struct TokenLoss {
    /// Scalar f32: the sum of `-log p(target)` (divide by the token count for the mean).
    pub nll_sum: Tensor,
    /// Targets where the argmax of the logits equals the label (no gradient).
    pub correct: i64,
    pub count: i64,
}

/// Vocabulary logits (n, V) at the target positions of `hidden` (rows, t, c).
pub fn target_logits(model: &Llama, hidden: &Tensor, targets: &Targets) -> Tensor {
    let c = hidden.size().last().copied().unwrap_or(0);
    let picked = hidden.reshape([-1, c]).index_select(0, &targets.positions); // (n, c)
    model.logits(&picked) // (n, V)
}

/// Summed cross-entropy over the targets (the LM head runs on target positions only).
pub fn token_nll(model: &Llama, hidden: &Tensor, targets: &Targets) -> Result<TokenLoss> {
    let logits = target_logits(model, hidden, targets);
    let nll_sum =
        logits.f_cross_entropy_loss::<Tensor>(&targets.labels, None, Reduction::Sum, -100, 0.0)?;
    let correct = tch::no_grad(|| {
        logits
            .argmax(-1, false)
            .eq_tensor(&targets.labels)
            .sum(Kind::Int64)
    });
    Ok(TokenLoss {
        nll_sum,
        correct: correct.f_int64_value(&[])?,
        count: targets.len() as i64,
    })
}

/// Log-probabilities at some positions: over the vocabulary, and of each position's label.
pub struct TokenLogprobs {
    /// (n, V) `log_softmax(logits)`.
    pub vocab: Tensor,
    /// (n,) `log p(label)`.
    pub labels: Tensor,
}

/// The one definition of token log-probs (DPO, KTO and the RL trainers all build on it):
/// `log_softmax` of `logits` (n, V) in their own dtype (cast them first for another),
/// and at each row its label (n,) i64. Equal, bit for bit, to minus the unreduced
/// cross-entropy, which is `nll_loss(log_softmax(logits))`.
pub fn token_logprobs(logits: &Tensor, labels: &Tensor) -> Result<TokenLogprobs> {
    let vocab = logits.f_log_softmax(-1, logits.kind())?;
    let labels = vocab
        .f_gather(1, &labels.f_unsqueeze(1)?, false)?
        .f_squeeze_dim(1)?;
    Ok(TokenLogprobs { vocab, labels })
}

/// Sums per-target `values` (n,) into one value per example, (num_examples,).
pub fn per_example_sum(values: &Tensor, targets: &Targets, num_examples: usize) -> Tensor {
    Tensor::zeros([num_examples as i64], (values.kind(), values.device())).index_add(
        0,
        &targets.example,
        values,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DPO/KTO summed `-cross_entropy` before sharing [`token_logprobs`] with RL; the
    /// shared definition must give the same bits, in f32 and in bf16.
    #[test]
    fn token_logprobs_equal_minus_the_unreduced_cross_entropy_bit_for_bit() {
        tch::manual_seed(7);
        for kind in [Kind::Float, Kind::BFloat16] {
            let logits = (Tensor::randn([6, 50], (Kind::Float, Device::Cpu)) * 4.0).to_kind(kind);
            let labels = Tensor::from_slice(&[0i64, 49, 3, 3, 17, 25]);
            let ce = -logits
                .f_cross_entropy_loss::<Tensor>(&labels, None, Reduction::None, -100, 0.0)
                .unwrap();
            let lp = token_logprobs(&logits, &labels).unwrap();
            assert_eq!(lp.labels.kind(), kind);
            assert!(lp.labels.equal(&ce), "{kind:?}");
            assert_eq!(lp.vocab.size(), [6, 50]);
        }
    }
}
