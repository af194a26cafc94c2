//! Padding, packing (positions, segments, no cross-example attention) and the seeded,
//! resumable data order.

use tiller_data::{
    collate, epoch_order, pack_batch, pad_batch, pad_pairs, BatchSampler, Collation, DataPosition,
    OrderConfig, TokenizedExample, TokenizedPair, IGNORE_INDEX,
};

fn example(len: usize, first_id: i64, prompt_len: usize) -> TokenizedExample {
    TokenizedExample {
        input_ids: (0..len as i64).map(|i| first_id + i).collect(),
        loss_mask: (0..len).map(|i| i >= prompt_len).collect(),
        truncated: false,
    }
}

#[test]
fn pad_batch_right_pads_to_the_longest() {
    let a = example(3, 10, 1);
    let b = example(5, 20, 2);
    let batch = pad_batch(&[&a, &b], 0).unwrap();
    assert_eq!((batch.batch_size, batch.seq_len), (2, 5));
    assert_eq!(batch.input_ids, vec![10, 11, 12, 0, 0, 20, 21, 22, 23, 24]);
    assert_eq!(batch.attention_mask, vec![1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
    assert_eq!(batch.position_ids, vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    assert_eq!(
        batch.loss_mask,
        vec![false, true, true, false, false, false, false, true, true, true]
    );
    let labels = batch.labels();
    assert_eq!(
        labels[..5],
        [IGNORE_INDEX, 11, 12, IGNORE_INDEX, IGNORE_INDEX]
    );
    assert_eq!(batch.num_loss_tokens(), 5);
    let e = pad_batch(&[], 0).unwrap_err().to_string();
    assert!(e.contains("empty batch"), "{e}");
}

#[test]
fn pad_pairs_puts_chosen_rows_first() {
    let pair = TokenizedPair {
        prompt_ids: vec![1, 2],
        chosen_ids: vec![3],
        rejected_ids: vec![4, 5],
        truncated: false,
    };
    let batch = pad_pairs(&[&pair], 0).unwrap();
    assert_eq!((batch.batch_size, batch.seq_len), (2, 4));
    assert_eq!(batch.input_ids, vec![1, 2, 3, 0, 1, 2, 4, 5]);
    assert_eq!(
        batch.loss_mask,
        vec![false, false, true, false, false, false, true, true]
    );
}

fn packing_examples() -> Vec<TokenizedExample> {
    vec![
        example(5, 100, 2),
        example(3, 200, 1),
        example(7, 300, 3),
        example(2, 400, 0),
        example(4, 500, 1),
    ]
}

#[test]
fn packing_restarts_positions_and_separates_examples() {
    let examples = packing_examples();
    let refs: Vec<&TokenizedExample> = examples.iter().collect();
    let batch = pack_batch(&refs, 8, 0).unwrap();
    // 21 tokens into rows of 8: best-fit decreasing needs 3 rows.
    assert_eq!(batch.rows, 3);
    assert!(batch.seq_len <= 8);
    assert_eq!(batch.segments.len(), examples.len());
    let mut seen: Vec<usize> = batch.segments.iter().map(|s| s.example).collect();
    seen.sort();
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);

    for s in &batch.segments {
        let e = &examples[s.example];
        let at = s.row * batch.seq_len + s.start;
        assert_eq!(batch.input_ids[at..at + s.len], e.input_ids[..]);
        assert_eq!(
            batch.position_ids[at..at + s.len],
            (0..s.len as i64).collect::<Vec<_>>()[..]
        );
        let seg = batch.segment_ids[at];
        assert!(seg > 0 && batch.segment_ids[at..at + s.len].iter().all(|&x| x == seg));
        // The example's own mask, except its first token (nothing may predict it).
        assert!(!batch.loss_mask[at]);
        assert_eq!(batch.loss_mask[at + 1..at + s.len], e.loss_mask[1..]);
    }
    // Padding is outside everything.
    for t in 0..batch.rows * batch.seq_len {
        if batch.segment_ids[t] == 0 {
            assert_eq!(batch.attention_mask[t], 0);
            assert!(!batch.loss_mask[t]);
        }
    }
    // No token may attend to a token of another example (or to padding), and attention
    // within an example is exactly causal.
    for row in 0..batch.rows {
        for i in 0..batch.seq_len {
            for j in 0..batch.seq_len {
                let owner = |t: usize| {
                    batch
                        .segments
                        .iter()
                        .find(|s| s.row == row && s.start <= t && t < s.start + s.len)
                        .map(|s| s.example)
                };
                let expected = j <= i && owner(i).is_some() && owner(i) == owner(j);
                assert_eq!(
                    batch.may_attend(row, i, j),
                    expected,
                    "row {row} i {i} j {j}"
                );
            }
        }
    }
}

#[test]
fn padding_free_packing_is_one_row_with_cu_seqlens() {
    let examples = packing_examples();
    let refs: Vec<&TokenizedExample> = examples.iter().collect();
    let batch = collate(&refs, Collation::PaddingFree, 0, 0).unwrap();
    assert_eq!((batch.rows, batch.seq_len), (1, 21));
    let order: Vec<usize> = batch.segments.iter().map(|s| s.example).collect();
    assert_eq!(
        order,
        vec![0, 1, 2, 3, 4],
        "padding-free keeps the batch order"
    );
    assert!(batch.attention_mask.iter().all(|&m| m == 1));
    let mut cu = vec![0i64];
    for s in &batch.segments {
        cu.push(cu.last().unwrap() + s.len as i64);
    }
    assert_eq!(batch.cu_seqlens(), cu);
    assert_eq!(batch.num_loss_tokens(), 3 + 2 + 4 + 1 + 3);
}

#[test]
fn cu_seqlens_count_row_padding_as_its_own_sequence() {
    let examples = [example(3, 1, 0), example(2, 9, 0)];
    let refs: Vec<&TokenizedExample> = examples.iter().collect();
    let batch = pack_batch(&refs, 3, 0).unwrap();
    assert_eq!((batch.rows, batch.seq_len), (2, 3));
    assert_eq!(batch.cu_seqlens(), vec![0, 3, 5, 6]);
}

#[test]
fn packing_rejects_examples_longer_than_a_row() {
    let examples = [example(9, 1, 0)];
    let err = pack_batch(&[&examples[0]], 8, 0).unwrap_err();
    assert!(
        err.to_string()
            .contains("more than the packing row length 8"),
        "{err}"
    );
}

#[test]
fn seeded_shuffle_is_deterministic_and_a_permutation() {
    let config = OrderConfig::new(4, 7);
    let a = epoch_order(100, &config, 0);
    assert_eq!(a, epoch_order(100, &config, 0));
    assert_ne!(a, epoch_order(100, &config, 1));
    assert_ne!(a, epoch_order(100, &OrderConfig::new(4, 8), 0));
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    // Pinned so that a change of the shuffle (which would break resuming old runs) is seen.
    assert_eq!(epoch_order(10, &config, 0), PINNED_ORDER);
    let plain = OrderConfig {
        shuffle: false,
        ..config
    };
    assert_eq!(epoch_order(5, &plain, 3), vec![0, 1, 2, 3, 4]);
}

const PINNED_ORDER: [usize; 10] = [6, 1, 8, 3, 0, 2, 9, 4, 5, 7];

#[test]
fn sampler_covers_each_epoch_and_resumes_mid_epoch() {
    let config = OrderConfig::new(4, 42);
    let mut straight = BatchSampler::new(10, config).unwrap();
    assert_eq!(straight.batches_per_epoch(), 3);
    let mut all: Vec<Vec<usize>> = Vec::new();
    for _ in 0..9 {
        all.push(straight.next_batch());
    }
    // Epoch 0 is batches 0..3 (4 + 4 + 2) and covers every example once.
    assert_eq!(all[2].len(), 2);
    let mut epoch0: Vec<usize> = all[..3].concat();
    epoch0.sort();
    assert_eq!(epoch0, (0..10).collect::<Vec<_>>());
    assert_eq!(all[..3].concat(), epoch_order(10, &config, 0));

    // Stop after 4 batches (mid epoch 1), save the position as JSON, resume.
    let mut first = BatchSampler::new(10, config).unwrap();
    for _ in 0..4 {
        first.next_batch();
    }
    let saved = serde_json::to_string(&first.position()).unwrap();
    let position: DataPosition = serde_json::from_str(&saved).unwrap();
    assert_eq!((position.epoch, position.index), (1, 4));
    assert!((position.epoch_fraction() - 1.4).abs() < 1e-9);
    let mut resumed = BatchSampler::resume(10, config, position).unwrap();
    for expected in &all[4..] {
        assert_eq!(&resumed.next_batch(), expected);
    }

    // Resuming on other data or another seed is refused.
    let e = BatchSampler::resume(11, config, position)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("for 10 examples") && e.contains("has 11 examples"),
        "{e}"
    );
    let e = BatchSampler::resume(10, OrderConfig::new(4, 1), position)
        .unwrap_err()
        .to_string();
    assert!(e.contains("with seed 1"), "{e}");
}

#[test]
fn drop_last_skips_the_short_batch() {
    let config = OrderConfig {
        drop_last: true,
        ..OrderConfig::new(4, 0)
    };
    let mut sampler = BatchSampler::new(10, config).unwrap();
    assert_eq!(sampler.batches_per_epoch(), 2);
    for _ in 0..2 {
        assert_eq!(sampler.next_batch().len(), 4);
    }
    assert_eq!(sampler.position().epoch, 1);
    let e = BatchSampler::new(3, config).unwrap_err().to_string();
    assert!(e.contains("drop_last") && e.contains("batch_size 4"), "{e}");
    let e = BatchSampler::new(0, OrderConfig::new(4, 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("from 0 examples"), "{e}");
}

#[test]
fn collate_with_padding_is_one_example_per_row() {
    let examples = packing_examples();
    let refs: Vec<&TokenizedExample> = examples.iter().collect();
    let batch = collate(&refs, Collation::Padding, 0, 0).unwrap();
    let padded = pad_batch(&refs, 0).unwrap();
    assert_eq!((batch.rows, batch.seq_len), (5, 7));
    assert_eq!(batch.input_ids, padded.input_ids);
    assert_eq!(batch.attention_mask, padded.attention_mask);
    assert_eq!(batch.loss_mask, padded.loss_mask);
    assert!(batch
        .segment_ids
        .iter()
        .zip(&batch.attention_mask)
        .all(|(&s, &m)| s == m));
    let packed = collate(&refs, Collation::Pack, 8, 0).unwrap();
    assert_eq!(packed, pack_batch(&refs, 8, 0).unwrap());
}
