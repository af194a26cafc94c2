//! Collating tokenized examples into batches: right padding to the longest example, or
//! packing several examples into one row. Plain `Vec`s in row-major order; the model crate
//! turns them into tensors of shape `(rows, seq_len)`.

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::paired::TokenizedPair;
use crate::tokenize::{TokenizedExample, IGNORE_INDEX};

/// Examples right-padded to the longest one (for training). All fields are row-major
/// `(batch_size, seq_len)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaddedBatch {
    pub batch_size: usize,
    pub seq_len: usize,
    /// Token ids; padding is `pad_id`.
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding (HF convention).
    pub attention_mask: Vec<i64>,
    /// 0, 1, 2, ... along each row (padding continues the count; it is masked anyway).
    pub position_ids: Vec<i64>,
    /// Whether each token is a target (see [`TokenizedExample`]); false on padding and
    /// on each row's first token (nothing predicts it).
    pub loss_mask: Vec<bool>,
}

impl PaddedBatch {
    /// `input_ids` with positions outside the loss set to [`IGNORE_INDEX`].
    pub fn labels(&self) -> Vec<i64> {
        labels(&self.input_ids, &self.loss_mask)
    }

    /// Tokens scored by the loss.
    pub fn num_loss_tokens(&self) -> usize {
        self.loss_mask.iter().filter(|&&m| m).count()
    }
}

fn labels(ids: &[i64], mask: &[bool]) -> Vec<i64> {
    ids.iter()
        .zip(mask)
        .map(|(&id, &m)| if m { id } else { IGNORE_INDEX })
        .collect()
}

/// An example's mask with its first token out of the loss.
fn first_not_target(mask: &[bool]) -> impl Iterator<Item = bool> + '_ {
    mask.iter().enumerate().map(|(t, &m)| m && t > 0)
}

/// Pads `examples` on the right to the longest one.
pub fn pad_batch(examples: &[&TokenizedExample], pad_id: i64) -> Result<PaddedBatch> {
    if examples.is_empty() {
        return Err(DataError::Dataset("cannot collate an empty batch".into()));
    }
    let seq_len = examples.iter().map(|e| e.len()).max().unwrap_or(0);
    let n = examples.len() * seq_len;
    let mut batch = PaddedBatch {
        batch_size: examples.len(),
        seq_len,
        input_ids: Vec::with_capacity(n),
        attention_mask: Vec::with_capacity(n),
        position_ids: Vec::with_capacity(n),
        loss_mask: Vec::with_capacity(n),
    };
    for example in examples {
        let pad = seq_len - example.len();
        batch.input_ids.extend_from_slice(&example.input_ids);
        batch.input_ids.extend(std::iter::repeat_n(pad_id, pad));
        batch
            .attention_mask
            .extend(std::iter::repeat_n(1, example.len()));
        batch.attention_mask.extend(std::iter::repeat_n(0, pad));
        batch.position_ids.extend(0..seq_len as i64);
        batch.loss_mask.extend(first_not_target(&example.loss_mask));
        batch.loss_mask.extend(std::iter::repeat_n(false, pad));
    }
    Ok(batch)
}

/// Preference pairs as one padded batch: rows `0..n` are prompt + chosen, rows `n..2n`
/// prompt + rejected (one forward pass for both, as TRL's DPO concatenates them).
pub fn pad_pairs(pairs: &[&TokenizedPair], pad_id: i64) -> Result<PaddedBatch> {
    let chosen: Vec<TokenizedExample> = pairs.iter().map(|p| p.chosen()).collect();
    let rejected: Vec<TokenizedExample> = pairs.iter().map(|p| p.rejected()).collect();
    let all: Vec<&TokenizedExample> = chosen.iter().chain(&rejected).collect();
    pad_batch(&all, pad_id)
}

/// Where one example sits in a packed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Index of the example in the slice given to [`collate`] or [`pack_batch`].
    pub example: usize,
    pub row: usize,
    /// First column of the example in its row.
    pub start: usize,
    pub len: usize,
}

/// Several examples per row. Each example restarts its `position_ids` at 0 and has its
/// own `segment_ids` value, so the model builds a block-diagonal causal mask: token `i`
/// may attend to token `j` of the same row iff `j <= i` and
/// `segment_ids[i] == segment_ids[j] != 0`. Fields are row-major `(rows, seq_len)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedBatch {
    pub rows: usize,
    pub seq_len: usize,
    pub input_ids: Vec<i64>,
    /// Position within the example: 0, 1, ... restarting at each example; 0 on padding.
    pub position_ids: Vec<i64>,
    /// 1, 2, ... per example within a row; 0 marks padding.
    pub segment_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Whether each token is a target; false on padding and on each example's first token.
    pub loss_mask: Vec<bool>,
    /// One entry per example, in packing order.
    pub segments: Vec<Segment>,
}

impl PackedBatch {
    /// `input_ids` with positions outside the loss set to [`IGNORE_INDEX`].
    pub fn labels(&self) -> Vec<i64> {
        labels(&self.input_ids, &self.loss_mask)
    }

    /// Tokens scored by the loss.
    pub fn num_loss_tokens(&self) -> usize {
        self.loss_mask.iter().filter(|&&m| m).count()
    }

    /// Cumulative sequence lengths over the flattened `(rows * seq_len)` tokens, as
    /// varlen attention kernels take them: `[0, end of seq 1, end of seq 2, ...]`. Each
    /// row's padding tail counts as one sequence of its own.
    pub fn cu_seqlens(&self) -> Vec<i64> {
        let mut cu = vec![0i64];
        for row in 0..self.rows {
            let base = (row * self.seq_len) as i64;
            let mut used = 0;
            for s in self.segments.iter().filter(|s| s.row == row) {
                cu.push(base + (s.start + s.len) as i64);
                used = used.max(s.start + s.len);
            }
            if used < self.seq_len {
                cu.push(base + self.seq_len as i64);
            }
        }
        cu
    }

    /// Whether token `i` may attend to token `j` in `row` (the rule in the type's docs).
    pub fn may_attend(&self, row: usize, i: usize, j: usize) -> bool {
        let seg = |t: usize| self.segment_ids[row * self.seq_len + t];
        j <= i && seg(i) != 0 && seg(i) == seg(j)
    }
}

/// How a batch of examples is laid out in rows (`collation = "padding"` in a config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Collation {
    /// One example per row, right-padded to the longest (the default).
    #[default]
    Padding,
    /// Several examples per row of at most `row_len` tokens (best-fit decreasing).
    Pack,
    /// All examples in one row, no padding at all; use with [`PackedBatch::cu_seqlens`].
    PaddingFree,
}

/// Lays `examples` out as `collation` says. With [`Collation::Padding`] every row holds
/// one example (segment id 1), so a plain causal mask plus the attention mask suffices.
pub fn collate(
    examples: &[&TokenizedExample],
    collation: Collation,
    row_len: usize,
    pad_id: i64,
) -> Result<PackedBatch> {
    match collation {
        Collation::Padding => {
            check_batch(examples, usize::MAX)?;
            layout(
                examples,
                (0..examples.len()).map(|i| vec![i]).collect(),
                pad_id,
            )
        }
        Collation::Pack => pack_batch(examples, row_len, pad_id),
        Collation::PaddingFree => {
            check_batch(examples, usize::MAX)?;
            layout(examples, vec![(0..examples.len()).collect()], pad_id)
        }
    }
}

fn check_batch(examples: &[&TokenizedExample], row_len: usize) -> Result<()> {
    if examples.is_empty() {
        return Err(DataError::Dataset("cannot collate an empty batch".into()));
    }
    if let Some((i, e)) = examples.iter().enumerate().find(|(_, e)| e.len() > row_len) {
        return Err(DataError::Dataset(format!(
            "example {i} has {} tokens, more than the packing row length {row_len}; \
             truncate with max_seq_len <= row length",
            e.len()
        )));
    }
    Ok(())
}

/// Packs examples into rows of at most `row_len` tokens by best-fit decreasing (longest
/// example first, into the fullest row it fits), then pads rows to the longest row.
/// The first token of every example is taken out of the loss: it must not be predicted
/// from the previous example's last token.
pub fn pack_batch(
    examples: &[&TokenizedExample],
    row_len: usize,
    pad_id: i64,
) -> Result<PackedBatch> {
    check_batch(examples, row_len)?;
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(examples[i].len())); // stable: ties keep order
    let mut rows: Vec<(usize, Vec<usize>)> = Vec::new(); // (used, examples)
    for i in order {
        let len = examples[i].len();
        let best = rows
            .iter()
            .enumerate()
            .filter(|(_, (used, _))| used + len <= row_len)
            .max_by_key(|(r, (used, _))| (*used, std::cmp::Reverse(*r)))
            .map(|(r, _)| r);
        match best {
            Some(r) => {
                rows[r].0 += len;
                rows[r].1.push(i);
            }
            None => rows.push((len, vec![i])),
        }
    }
    layout(examples, rows.into_iter().map(|(_, m)| m).collect(), pad_id)
}

/// Builds the batch from `rows[r]` = the examples of row `r`, in order.
fn layout(
    examples: &[&TokenizedExample],
    rows: Vec<Vec<usize>>,
    pad_id: i64,
) -> Result<PackedBatch> {
    let used = |members: &Vec<usize>| members.iter().map(|&i| examples[i].len()).sum::<usize>();
    let seq_len = rows.iter().map(used).max().unwrap_or(0);
    let n = rows.len() * seq_len;
    let mut batch = PackedBatch {
        rows: rows.len(),
        seq_len,
        input_ids: Vec::with_capacity(n),
        position_ids: Vec::with_capacity(n),
        segment_ids: Vec::with_capacity(n),
        attention_mask: Vec::with_capacity(n),
        loss_mask: Vec::with_capacity(n),
        segments: Vec::with_capacity(examples.len()),
    };
    for (r, members) in rows.iter().enumerate() {
        let mut start = 0;
        for (k, &i) in members.iter().enumerate() {
            let e = examples[i];
            batch.input_ids.extend_from_slice(&e.input_ids);
            batch.position_ids.extend(0..e.len() as i64);
            batch
                .segment_ids
                .extend(std::iter::repeat_n(k as i64 + 1, e.len()));
            batch.attention_mask.extend(std::iter::repeat_n(1, e.len()));
            batch.loss_mask.extend(first_not_target(&e.loss_mask));
            batch.segments.push(Segment {
                example: i,
                row: r,
                start,
                len: e.len(),
            });
            start += e.len();
        }
        let pad = seq_len - start;
        batch.input_ids.extend(std::iter::repeat_n(pad_id, pad));
        batch.position_ids.extend(std::iter::repeat_n(0, pad));
        batch.segment_ids.extend(std::iter::repeat_n(0, pad));
        batch.attention_mask.extend(std::iter::repeat_n(0, pad));
        batch.loss_mask.extend(std::iter::repeat_n(false, pad));
    }
    Ok(batch)
}
