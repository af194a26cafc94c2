//! A leaderboard of model tags from pairwise votes: Bradley–Terry strengths fitted by
//! Hunter's MM algorithm, ties counted as half a win for each side (a "both bad" vote is
//! a tie, as in Chatbot Arena), on the Elo-like scale `1000 + 400·log10(p)`, with
//! percentile bootstrap 95% intervals over resampled votes.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// One judged comparison: `score` is 1 when `first` won, 0 when `second` won, 0.5 for a tie.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub first: String,
    pub second: String,
    pub score: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct LeaderboardOptions {
    /// Virtual ties each model plays against a fixed reference of strength 1 (score
    /// 1000). Keeps a model with no wins (or no losses) at a finite score; 0 gives the
    /// plain maximum-likelihood fit, normalized to a geometric-mean strength of 1.
    pub prior_ties: f64,
    /// Bootstrap resamples for the intervals; 0 skips them.
    pub bootstrap_samples: usize,
    /// Seed of the bootstrap, so a leaderboard is reproducible.
    pub seed: u64,
}

impl Default for LeaderboardOptions {
    fn default() -> Self {
        LeaderboardOptions {
            prior_ties: 1.0,
            bootstrap_samples: 200,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LeaderboardRow {
    pub model: String,
    pub score: f64,
    /// 2.5th and 97.5th percentiles of the bootstrap scores; `None` without bootstrap.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub wins: f64,
    pub losses: f64,
    pub ties: f64,
    pub comparisons: usize,
}

/// Fits strengths and returns one score per model (`1000 + 400·log10(p)`).
/// Comparisons of a model with itself carry no information and are ignored.
pub fn fit_scores(comparisons: &[Comparison], prior_ties: f64) -> BTreeMap<String, f64> {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for c in comparisons.iter().filter(|c| c.first != c.second) {
        let next = index.len();
        index.entry(&c.first).or_insert(next);
        let next = index.len();
        index.entry(&c.second).or_insert(next);
    }
    let k = index.len();
    // wins[i]: (half-)wins of i; games[i][j]: comparisons between i and j.
    let mut wins = vec![prior_ties / 2.0; k];
    let mut games = vec![vec![0.0; k]; k];
    for c in comparisons.iter().filter(|c| c.first != c.second) {
        let (i, j) = (index[c.first.as_str()], index[c.second.as_str()]);
        wins[i] += c.score;
        wins[j] += 1.0 - c.score;
        games[i][j] += 1.0;
        games[j][i] += 1.0;
    }
    let mut strength = vec![1.0; k];
    for _ in 0..10_000 {
        let mut next = vec![0.0; k];
        for i in 0..k {
            let mut denominator = prior_ties / (strength[i] + 1.0);
            for j in 0..k {
                if games[i][j] > 0.0 {
                    denominator += games[i][j] / (strength[i] + strength[j]);
                }
            }
            next[i] = if denominator > 0.0 {
                wins[i] / denominator
            } else {
                1.0
            };
        }
        if prior_ties == 0.0 {
            // Without the reference player the scale is free: pin the geometric mean.
            let positive: Vec<f64> = next.iter().copied().filter(|p| *p > 0.0).collect();
            let log_mean =
                positive.iter().map(|p| p.ln()).sum::<f64>() / positive.len().max(1) as f64;
            next.iter_mut().for_each(|p| *p /= log_mean.exp());
        }
        let change = next
            .iter()
            .zip(&strength)
            .map(|(a, b)| {
                if *a > 0.0 && *b > 0.0 {
                    (a / b).ln().abs()
                } else {
                    (a - b).abs()
                }
            })
            .fold(0.0, f64::max);
        strength = next;
        if change < 1e-12 {
            break;
        }
    }
    index
        .into_iter()
        .map(|(model, i)| (model.to_string(), 1000.0 + 400.0 * strength[i].log10()))
        .collect()
}

/// The full leaderboard, best first.
pub fn leaderboard(comparisons: &[Comparison], options: LeaderboardOptions) -> Vec<LeaderboardRow> {
    let scores = fit_scores(comparisons, options.prior_ties);
    let mut samples: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    if !comparisons.is_empty() {
        let mut rng = StdRng::seed_from_u64(options.seed);
        for _ in 0..options.bootstrap_samples {
            let resample: Vec<Comparison> = (0..comparisons.len())
                .map(|_| comparisons[rng.random_range(0..comparisons.len())].clone())
                .collect();
            for (model, score) in fit_scores(&resample, options.prior_ties) {
                if let Some((name, _)) = scores.get_key_value(&model) {
                    samples.entry(name.as_str()).or_default().push(score);
                }
            }
        }
    }
    let mut rows: Vec<LeaderboardRow> = scores
        .iter()
        .map(|(model, score)| {
            let (mut wins, mut losses, mut ties, mut count) = (0.0, 0.0, 0.0, 0);
            for c in comparisons.iter().filter(|c| c.first != c.second) {
                let mine = if &c.first == model {
                    c.score
                } else if &c.second == model {
                    1.0 - c.score
                } else {
                    continue;
                };
                count += 1;
                if mine == 1.0 {
                    wins += 1.0;
                } else if mine == 0.0 {
                    losses += 1.0;
                } else {
                    ties += 1.0;
                }
            }
            let interval = samples
                .get_mut(model.as_str())
                .map(|s| percentile_interval(s));
            LeaderboardRow {
                model: model.clone(),
                score: *score,
                ci_low: interval.map(|i| i.0),
                ci_high: interval.map(|i| i.1),
                wins,
                losses,
                ties,
                comparisons: count,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.model.cmp(&b.model))
    });
    rows
}

/// The 2.5th and 97.5th percentiles (nearest rank) of `values`.
fn percentile_interval(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let rank = (q * values.len() as f64).ceil() as usize;
        values[rank.clamp(1, values.len()) - 1]
    };
    (at(0.025), at(0.975))
}
