//! How well a reward model's preferences match human ones: accuracy with a Wilson 95%
//! interval, and a reliability table of its confidence.
//!
//! Calibration: for each pair the model's predicted winner gets confidence
//! p = σ(|r_c − r_r|) ∈ [0.5, 1]; pairs are binned by p and each bin's mean confidence is
//! compared with how often the predicted winner is the human-chosen answer. The expected
//! calibration error (ECE) is Σ_bins (n_bin / N) · |accuracy_bin − confidence_bin|.

use serde::Serialize;

/// Wilson score interval for `successes` out of `n` at z (1.96 for 95%); (0, 1) when n = 0.
pub fn wilson_interval(successes: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (successes as f64, n as f64);
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let center = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((center - half).max(0.0), (center + half).min(1.0))
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CalibrationBin {
    pub low: f64,
    pub high: f64,
    pub count: usize,
    pub mean_confidence: f64,
    pub accuracy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairEvaluation {
    pub pairs: usize,
    pub accuracy: f64,
    pub accuracy_ci95: (f64, f64),
    pub mean_margin: f64,
    pub bins: Vec<CalibrationBin>,
    pub ece: f64,
}

/// Evaluates reward pairs (r_chosen, r_rejected). Ties count as wrong.
pub fn evaluate_pairs(pairs: &[(f64, f64)], n_bins: usize) -> PairEvaluation {
    let n = pairs.len();
    let correct = pairs.iter().filter(|(c, r)| c > r).count();
    let mean_margin = if n == 0 {
        0.0
    } else {
        pairs.iter().map(|(c, r)| c - r).sum::<f64>() / n as f64
    };
    let n_bins = n_bins.max(1);
    let width = 0.5 / n_bins as f64;
    let mut sums = vec![(0usize, 0.0f64, 0usize); n_bins];
    for (c, r) in pairs {
        let confidence = 1.0 / (1.0 + (-(c - r).abs()).exp());
        let bin = (((confidence - 0.5) / width) as usize).min(n_bins - 1);
        sums[bin].0 += 1;
        sums[bin].1 += confidence;
        sums[bin].2 += usize::from(c > r);
    }
    let bins: Vec<CalibrationBin> = sums
        .iter()
        .enumerate()
        .map(|(i, &(count, conf, hits))| CalibrationBin {
            low: 0.5 + i as f64 * width,
            high: 0.5 + (i + 1) as f64 * width,
            count,
            mean_confidence: if count == 0 { 0.0 } else { conf / count as f64 },
            accuracy: if count == 0 {
                0.0
            } else {
                hits as f64 / count as f64
            },
        })
        .collect();
    let ece = if n == 0 {
        0.0
    } else {
        bins.iter()
            .map(|b| b.count as f64 / n as f64 * (b.accuracy - b.mean_confidence).abs())
            .sum()
    };
    PairEvaluation {
        pairs: n,
        accuracy: if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        },
        accuracy_ci95: wilson_interval(correct, n, 1.959_963_984_540_054),
        mean_margin,
        bins,
        ece,
    }
}
