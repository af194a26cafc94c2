//! Small statistics the reports need: proportions with Wilson intervals, a percentile
//! bootstrap, the exact McNemar test for paired outcomes and the two-proportion z-test.
//! Hand-written: each is a few lines of textbook formula.

use serde::{Deserialize, Serialize};
use tiller_model::sampling::SplitMix64;

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// A closed interval `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

/// `k` successes out of `n`, the rate (None when `n == 0`) and its Wilson 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Proportion {
    pub k: usize,
    pub n: usize,
    pub rate: Option<f64>,
    pub interval: Option<Interval>,
}

impl Proportion {
    pub fn new(k: usize, n: usize) -> Self {
        Proportion {
            k,
            n,
            rate: ratio(k, n),
            interval: wilson(k, n, Z95),
        }
    }
}

/// `k / n`, or None for an empty denominator (reports show "n/a", never NaN).
pub fn ratio(k: usize, n: usize) -> Option<f64> {
    (n > 0).then(|| k as f64 / n as f64)
}

/// The Wilson score interval for `k` successes in `n` trials; None when `n == 0`.
pub fn wilson(k: usize, n: usize, z: f64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let (n, p) = (n as f64, k as f64 / n as f64);
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(Interval {
        lo: (center - half).max(0.0),
        hi: (center + half).min(1.0),
    })
}

/// Percentile bootstrap (seeded, `resamples` draws) of the mean of `values`; None when empty.
pub fn bootstrap_mean(values: &[f64], resamples: usize, seed: u64) -> Option<Interval> {
    if values.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = SplitMix64(seed);
    let n = values.len();
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            (0..n)
                .map(|_| values[(rng.next_u64() % n as u64) as usize])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    Some(Interval {
        lo: at(0.025),
        hi: at(0.975),
    })
}

/// A significance test's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// Which test, in words (shown in the report).
    pub test: String,
    pub statistic: Option<f64>,
    pub p_value: f64,
}

/// Exact McNemar test on paired binary outcomes: `b` pairs went from no to yes, `c` from
/// yes to no. The two-sided p-value is the binomial probability, under p = 1/2, of a split
/// of the `b + c` discordant pairs at least as uneven as the one observed; 1 when none.
pub fn mcnemar_exact(b: usize, c: usize) -> TestResult {
    let n = b + c;
    let k = b.min(c);
    let tail: f64 = (0..=k)
        .map(|i| (ln_choose(n, i) - n as f64 * std::f64::consts::LN_2).exp())
        .sum();
    TestResult {
        test: format!("exact McNemar (binomial on {n} discordant pairs)"),
        statistic: Some(b as f64 - c as f64),
        p_value: (2.0 * tail).min(1.0),
    }
}

/// Two-proportion z-test (pooled) of `k1/n1` against `k2/n2`; p = 1 when undefined.
pub fn two_proportion_z(k1: usize, n1: usize, k2: usize, n2: usize) -> TestResult {
    let test = "two-proportion z-test (pooled)".to_owned();
    if n1 == 0 || n2 == 0 {
        return TestResult {
            test,
            statistic: None,
            p_value: 1.0,
        };
    }
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let pooled = (k1 + k2) as f64 / (n1 + n2) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return TestResult {
            test,
            statistic: None,
            p_value: 1.0,
        };
    }
    let z = (p1 - p2) / se;
    TestResult {
        test,
        statistic: Some(z),
        p_value: (2.0 * (1.0 - normal_cdf(z.abs()))).clamp(0.0, 1.0),
    }
}

/// ln C(n, k), exact enough for p-values (sums of logs).
fn ln_choose(n: usize, k: usize) -> f64 {
    let k = k.min(n - k);
    (0..k)
        .map(|i| ((n - i) as f64).ln() - ((i + 1) as f64).ln())
        .sum()
}

/// Standard normal CDF via erf (Abramowitz–Stegun 7.1.26, absolute error below 1.5e-7:
/// plenty for reporting p-values).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

fn erf(x: f64) -> f64 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    sign * (1.0 - poly * (-x * x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() < tol
    }

    #[test]
    fn wilson_matches_known_values() {
        // Reference values: the closed form evaluated in Python (equal to statsmodels'
        // proportion_confint(method="wilson")).
        let i = wilson(5, 10, Z95).unwrap();
        assert!(
            close(i.lo, 0.236_593, 1e-5) && close(i.hi, 0.763_407, 1e-5),
            "{i:?}"
        );
        let i = wilson(0, 10, Z95).unwrap();
        assert!(
            close(i.lo, 0.0, 1e-12) && close(i.hi, 0.277_533, 1e-5),
            "{i:?}"
        );
        let i = wilson(10, 10, Z95).unwrap();
        assert!(
            close(i.lo, 0.722_467, 1e-5) && close(i.hi, 1.0, 1e-12),
            "{i:?}"
        );
        let i = wilson(81, 263, Z95).unwrap();
        assert!(
            close(i.lo, 0.255_289, 1e-5) && close(i.hi, 0.366_210, 1e-5),
            "{i:?}"
        );
        assert_eq!(wilson(0, 0, Z95), None);
        assert_eq!(Proportion::new(0, 0).rate, None);
    }

    #[test]
    fn mcnemar_exact_matches_binomial() {
        // b=1, c=6: 2 * (C(7,0)+C(7,1)) / 2^7 = 2 * 8/128 = 0.125.
        assert!(close(mcnemar_exact(1, 6).p_value, 0.125, 1e-12));
        assert!(close(mcnemar_exact(0, 0).p_value, 1.0, 1e-12));
        assert!(close(mcnemar_exact(3, 3).p_value, 1.0, 1e-12));
        // b=0, c=10: 2 / 1024.
        assert!(close(mcnemar_exact(0, 10).p_value, 2.0 / 1024.0, 1e-12));
    }

    #[test]
    fn two_proportion_z_known_value() {
        // 45/100 vs 30/100: pooled 0.375, se = sqrt(.375*.625*.02) = 0.068465, z = 2.19089.
        let t = two_proportion_z(45, 100, 30, 100);
        assert!(close(t.statistic.unwrap(), 2.190_890, 1e-5));
        assert!(close(t.p_value, 0.028_459, 1e-4), "{}", t.p_value);
        assert_eq!(two_proportion_z(0, 0, 1, 2).p_value, 1.0);
        assert_eq!(two_proportion_z(0, 5, 0, 5).p_value, 1.0);
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_mean() {
        let values: Vec<f64> = (0..200).map(|i| f64::from(i % 4 == 0)).collect();
        let a = bootstrap_mean(&values, 1000, 7).unwrap();
        assert_eq!(Some(a), bootstrap_mean(&values, 1000, 7));
        assert!(a.lo < 0.25 && 0.25 < a.hi && a.hi - a.lo < 0.2, "{a:?}");
        assert_eq!(bootstrap_mean(&[], 1000, 7), None);
        let constant = bootstrap_mean(&[1.0; 5], 100, 1).unwrap();
        assert_eq!((constant.lo, constant.hi), (1.0, 1.0));
    }
}
