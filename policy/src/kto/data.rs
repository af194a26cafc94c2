//! KTO's rows: each prompt/completion/label row, and its KL pair — the row's prompt with
//! another row's completion, whose log-ratio feeds the batch KL estimate z0.
//!
//! The pairing is TRL's (`KTOTrainer`'s `_get_kl_dataset`): the file, in order, is cut into
//! chunks of `batch_size` rows and the completions are rotated by one inside each chunk,
//! so row i of a chunk pairs with the completion of row i − 1 (the first with the last).
//! It is fixed for a data set, which is what lets the reference log-probs of the KL pairs
//! be cached with the rest; batches drawn at random still mix prompts and completions.
//! A KL pair's completion is cut to fit `max_seq_len` after its prompt.

use std::path::Path;

use tiller_data::{load_unpaired, PairOptions, TokenizedExample, TokenizedUnpaired, Tokenizer};

use crate::error::{PolicyError, Result};
use crate::kto::config::KtoConfig;

/// The rows of one KTO data set and their KL partners.
pub struct KtoSet {
    pub rows: Vec<TokenizedUnpaired>,
    /// For each row, the row whose completion makes its KL pair.
    pub partner: Vec<usize>,
    max_seq_len: usize,
}

impl KtoSet {
    /// Pairs `rows` as TRL does, in chunks of `batch_size`.
    pub fn new(rows: Vec<TokenizedUnpaired>, batch_size: usize, max_seq_len: usize) -> Self {
        let partner = kl_partners(rows.len(), batch_size);
        KtoSet {
            rows,
            partner,
            max_seq_len,
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The completion tokens of row `i`'s KL pair.
    pub fn kl_completion(&self, i: usize) -> &[i64] {
        let room = self
            .max_seq_len
            .saturating_sub(self.rows[i].prompt_ids.len())
            .max(1);
        let ids = &self.rows[self.partner[i]].completion_ids;
        &ids[..ids.len().min(room)]
    }

    /// Row `i`'s prompt and completion, the loss on the completion.
    pub fn example(&self, i: usize) -> TokenizedExample {
        self.rows[i].example()
    }

    /// Row `i`'s prompt with its KL pair's completion.
    pub fn kl_example(&self, i: usize) -> TokenizedExample {
        let pair = TokenizedUnpaired {
            prompt_ids: self.rows[i].prompt_ids.clone(),
            completion_ids: self.kl_completion(i).to_vec(),
            label: false,
            truncated: false,
        };
        pair.example()
    }

    /// Cache-key rows: prompt, completion, KL completion.
    pub fn key_rows(&self) -> Vec<[&[i64]; 3]> {
        (0..self.len())
            .map(|i| {
                let r = &self.rows[i];
                [
                    &r.prompt_ids[..],
                    &r.completion_ids[..],
                    self.kl_completion(i),
                ]
            })
            .collect()
    }
}

/// TRL's KL pairing: rotation by one inside each chunk of `batch_size` rows.
pub fn kl_partners(n: usize, batch_size: usize) -> Vec<usize> {
    let size = batch_size.max(1);
    (0..n)
        .map(|i| {
            let start = i - i % size;
            let end = (start + size).min(n);
            if i == start {
                end - 1
            } else {
                i - 1
            }
        })
        .collect()
}

/// Loads and tokenizes an unpaired file and pairs its rows for the KL estimate, in
/// chunks of one global micro-batch (`batch_size` × `world` ranks), so the pairs — and
/// the KL estimate of each micro-batch — do not depend on how many ranks share it.
pub fn load_set(
    config: &KtoConfig,
    path: &Path,
    tokenizer: &Tokenizer,
    world: usize,
) -> Result<KtoSet> {
    let d = &config.data;
    let options = PairOptions {
        max_seq_len: d.max_seq_len,
        max_prompt_len: d.max_prompt_len,
    };
    let (rows, report) = load_unpaired(path, tokenizer, &options, d.on_bad_row)?;
    tracing::info!("{report}");
    if rows.is_empty() {
        return Err(PolicyError::Invalid(format!(
            "{}: no prompt/completion/label rows",
            path.display()
        )));
    }
    let desirable = rows.iter().filter(|r| r.label).count();
    tracing::info!(
        "{}: {desirable} desirable, {} undesirable",
        path.display(),
        rows.len() - desirable
    );
    Ok(KtoSet::new(
        rows,
        config.train.batch_size * world.max(1),
        d.max_seq_len,
    ))
}
