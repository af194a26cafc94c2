//! A deterministic data order: which examples go into which batch, epoch after epoch,
//! from a seed, resumable mid-epoch from a serializable [`DataPosition`].
//!
//! Epoch `e`'s order is a Fisher–Yates shuffle driven by SplitMix64 seeded with
//! `(seed, e)`. It is written here rather than taken from `rand` so that the order can
//! never change under a dependency upgrade: a resumed run must see the same batches.

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// Where a run is in its data: the next batch starts at `index` in epoch `epoch`'s order.
/// Saved with checkpoints; `seed` and `num_examples` guard against resuming on other data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPosition {
    pub epoch: u64,
    /// Examples of this epoch already handed out.
    pub index: usize,
    pub seed: u64,
    pub num_examples: usize,
}

impl DataPosition {
    /// Fractional epochs done (TRL's `epoch` metric).
    pub fn epoch_fraction(&self) -> f64 {
        self.epoch as f64 + self.index as f64 / self.num_examples.max(1) as f64
    }
}

/// How batches are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderConfig {
    pub batch_size: usize,
    pub seed: u64,
    /// Shuffle every epoch (default true); false keeps file order.
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Drop an epoch's last, smaller batch (default false).
    #[serde(default)]
    pub drop_last: bool,
}

fn yes() -> bool {
    true
}

impl OrderConfig {
    /// Shuffled batches of `batch_size` from `seed`, keeping an epoch's short last batch.
    pub fn new(batch_size: usize, seed: u64) -> Self {
        OrderConfig {
            batch_size,
            seed,
            shuffle: true,
            drop_last: false,
        }
    }
}

/// Hands out batches of example indices forever, epoch after epoch.
#[derive(Debug, Clone)]
pub struct BatchSampler {
    config: OrderConfig,
    position: DataPosition,
    order: Vec<usize>,
}

impl BatchSampler {
    /// Starts at epoch 0, index 0.
    pub fn new(num_examples: usize, config: OrderConfig) -> Result<Self> {
        let position = DataPosition {
            epoch: 0,
            index: 0,
            seed: config.seed,
            num_examples,
        };
        Self::resume(num_examples, config, position)
    }

    /// Continues from a saved position; the same batches follow as in an uninterrupted run.
    pub fn resume(
        num_examples: usize,
        config: OrderConfig,
        position: DataPosition,
    ) -> Result<Self> {
        if num_examples == 0 || config.batch_size == 0 {
            return Err(DataError::Dataset(format!(
                "cannot draw batches of {} from {num_examples} examples",
                config.batch_size
            )));
        }
        if config.drop_last && num_examples < config.batch_size {
            return Err(DataError::Dataset(format!(
                "drop_last with batch_size {} and only {num_examples} examples leaves no batch",
                config.batch_size
            )));
        }
        if position.num_examples != num_examples || position.seed != config.seed {
            return Err(DataError::Dataset(format!(
                "cannot resume: the saved data position is for {} examples with seed {}, \
                 this run has {num_examples} examples with seed {}",
                position.num_examples, position.seed, config.seed
            )));
        }
        if position.index > num_examples {
            return Err(DataError::Dataset(format!(
                "cannot resume: saved index {} is past the {num_examples} examples",
                position.index
            )));
        }
        let order = epoch_order(num_examples, &config, position.epoch);
        let mut sampler = BatchSampler {
            config,
            position,
            order,
        };
        sampler.roll_epoch_if_done();
        Ok(sampler)
    }

    /// The position of the next batch: save this with a checkpoint.
    pub fn position(&self) -> DataPosition {
        self.position
    }

    /// Full batches per epoch (the last one counted even when smaller, unless dropped).
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.position.num_examples, self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The next batch's example indices (never empty), moving into the next epoch when
    /// this one is used up.
    pub fn next_batch(&mut self) -> Vec<usize> {
        let start = self.position.index;
        let end = (start + self.config.batch_size).min(self.order.len());
        let batch = self.order[start..end].to_vec();
        self.position.index = end;
        self.roll_epoch_if_done();
        batch
    }

    fn roll_epoch_if_done(&mut self) {
        let left = self.order.len() - self.position.index;
        let done = left == 0 || (self.config.drop_last && left < self.config.batch_size);
        if done {
            self.position.epoch += 1;
            self.position.index = 0;
            self.order = epoch_order(self.order.len(), &self.config, self.position.epoch);
        }
    }
}

/// The order of examples in `epoch`: a seeded shuffle, or file order without `shuffle`.
pub fn epoch_order(num_examples: usize, config: &OrderConfig, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..num_examples).collect();
    if config.shuffle {
        let mut rng = SplitMix64::new(config.seed, epoch);
        for i in (1..order.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
    }
    order
}

/// SplitMix64 (Steele, Lea and Flood 2014): tiny, fast, and fixed forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64, stream: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let mixed = rng.next() ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        SplitMix64(mixed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` without modulo bias (Lemire's multiply-and-reject).
    fn below(&mut self, n: u64) -> u64 {
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}
