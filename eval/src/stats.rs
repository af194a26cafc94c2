//! The statistics the reports need, on `statrs` (the project's statistics crate):
//! proportions with Wilson (and exact Clopper–Pearson) intervals, a percentile bootstrap,
//! the exact McNemar / sign test for paired outcomes, the two-proportion z-test, and the
//! normal and t quantiles they rest on.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Beta, Binomial, ContinuousCDF, DiscreteCDF, Normal, StudentsT};
use tiller_model::sampling::SplitMix64;

/// The standard normal's `p` quantile (`normal_quantile(0.975)` ≈ 1.959964).
pub fn normal_quantile(p: f64) -> f64 {
    standard_normal().inverse_cdf(p)
}

/// The standard normal CDF.
pub fn normal_cdf(x: f64) -> f64 {
    standard_normal().cdf(x)
}

fn standard_normal() -> Normal {
    // Mean 0 and standard deviation 1 are always valid parameters.
    Normal::standard()
}

/// Student's t `p` quantile with `df` degrees of freedom; None when `df` is not positive.
pub fn t_quantile(p: f64, df: f64) -> Option<f64> {
    StudentsT::new(0.0, 1.0, df).ok().map(|t| t.inverse_cdf(p))
}

/// z for a two-sided 95% interval.
pub fn z95() -> f64 {
    normal_quantile(0.975)
}

/// A closed interval `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

/// `k` successes out of `n`, the rate (None when `n == 0`) and its Wilson 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
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
            interval: wilson(k, n, z95()),
        }
    }
}

/// `k / n`, or None for an empty denominator (reports show "n/a", never NaN).
pub fn ratio(k: usize, n: usize) -> Option<f64> {
    (n > 0).then(|| k as f64 / n as f64)
}

/// The Wilson score interval for `k` successes in `n` trials; None when `n == 0`. The
/// formula has one home, tiller-reward's calibration (reward-model accuracy uses it too).
pub fn wilson(k: usize, n: usize, z: f64) -> Option<Interval> {
    (n > 0).then(|| {
        let (lo, hi) = tiller_reward::calibration::wilson_interval(k, n, z);
        Interval { lo, hi }
    })
}

/// The exact (Clopper–Pearson) interval at `confidence` for `k` successes in `n` trials,
/// from the Beta quantiles; None when `n == 0`.
pub fn clopper_pearson(k: usize, n: usize, confidence: f64) -> Option<Interval> {
    if n == 0 || k > n {
        return None;
    }
    let alpha = 1.0 - confidence;
    let (kf, nf) = (k as f64, n as f64);
    let lo = if k == 0 {
        0.0
    } else {
        Beta::new(kf, nf - kf + 1.0).ok()?.inverse_cdf(alpha / 2.0)
    };
    let hi = if k == n {
        1.0
    } else {
        Beta::new(kf + 1.0, nf - kf)
            .ok()?
            .inverse_cdf(1.0 - alpha / 2.0)
    };
    Some(Interval { lo, hi })
}

/// Percentile bootstrap (seeded, `resamples` draws) of the mean of `values`; None when empty.
pub fn bootstrap_mean(values: &[f64], resamples: usize, seed: u64) -> Option<Interval> {
    bootstrap(values, resamples, seed, |draw| {
        Some(draw.iter().copied().sum::<f64>() / draw.len() as f64)
    })
}

/// Percentile bootstrap (seeded, `resamples` draws of `items.len()` with replacement) of
/// any statistic of the items; draws where `stat` is None are left out. None when empty.
pub fn bootstrap<T: Copy>(
    items: &[T],
    resamples: usize,
    seed: u64,
    stat: impl Fn(&[T]) -> Option<f64>,
) -> Option<Interval> {
    if items.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = SplitMix64(seed);
    let n = items.len();
    let mut draw = Vec::with_capacity(n);
    let mut values: Vec<f64> = (0..resamples)
        .filter_map(|_| {
            draw.clear();
            draw.extend((0..n).map(|_| items[(rng.next_u64() % n as u64) as usize]));
            stat(&draw)
        })
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let last = values.len() - 1;
    let at = |q: f64| values[((q * last as f64).round() as usize).min(last)];
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

/// Two-sided exact sign test: `b` outcomes one way, `c` the other, under p = 1/2. The
/// p-value is twice the binomial tail of the smaller count (capped at 1); 1 when b = c = 0.
pub fn sign_test(b: usize, c: usize) -> f64 {
    let n = (b + c) as u64;
    // An even split (none at all included) is p = 1 exactly, not 1 − rounding.
    if b == c {
        return 1.0;
    }
    match Binomial::new(0.5, n) {
        // The CDF is computed through the incomplete beta function: a p of 1 can come out
        // as 1 − 1e-15, so values within rounding of 1 are 1.
        Ok(binomial) => match 2.0 * binomial.cdf(b.min(c) as u64) {
            p if p > 1.0 - 1e-12 => 1.0,
            p => p,
        },
        Err(_) => 1.0,
    }
}

/// Exact McNemar test on paired binary outcomes: `b` pairs went from no to yes, `c` from
/// yes to no; the sign test on the `b + c` discordant pairs.
pub fn mcnemar_exact(b: usize, c: usize) -> TestResult {
    TestResult {
        test: format!("exact McNemar (binomial on {} discordant pairs)", b + c),
        statistic: Some(b as f64 - c as f64),
        p_value: sign_test(b, c),
    }
}

/// Two-proportion z-test (pooled) of `k1/n1` against `k2/n2`; p = 1 when undefined.
pub fn two_proportion_z(k1: usize, n1: usize, k2: usize, n2: usize) -> TestResult {
    let test = "two-proportion z-test (pooled)".to_owned();
    let undefined = TestResult {
        test: test.clone(),
        statistic: None,
        p_value: 1.0,
    };
    if n1 == 0 || n2 == 0 {
        return undefined;
    }
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let pooled = (k1 + k2) as f64 / (n1 + n2) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return undefined;
    }
    let z = (p1 - p2) / se;
    TestResult {
        test,
        statistic: Some(z),
        p_value: (2.0 * (1.0 - normal_cdf(z.abs()))).clamp(0.0, 1.0),
    }
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
        let i = wilson(5, 10, z95()).unwrap();
        assert!(
            close(i.lo, 0.236_593, 1e-5) && close(i.hi, 0.763_407, 1e-5),
            "{i:?}"
        );
        let i = wilson(0, 10, z95()).unwrap();
        assert!(
            close(i.lo, 0.0, 1e-12) && close(i.hi, 0.277_533, 1e-5),
            "{i:?}"
        );
        let i = wilson(10, 10, z95()).unwrap();
        assert!(
            close(i.lo, 0.722_467, 1e-5) && close(i.hi, 1.0, 1e-12),
            "{i:?}"
        );
        let i = wilson(81, 263, z95()).unwrap();
        assert!(
            close(i.lo, 0.255_289, 1e-5) && close(i.hi, 0.366_210, 1e-5),
            "{i:?}"
        );
        assert_eq!(wilson(0, 0, z95()), None);
        assert_eq!(Proportion::new(0, 0).rate, None);
    }

    #[test]
    fn quantiles_and_exact_intervals_match_scipy() {
        // scipy.stats: norm.ppf(0.975), t.ppf(0.975, 10), beta.ppf for Clopper–Pearson.
        assert!(close(z95(), 1.959_963_985, 1e-8), "{}", z95());
        assert!(close(normal_cdf(1.0), 0.841_344_746, 1e-8));
        assert!(close(t_quantile(0.975, 10.0).unwrap(), 2.228_138_852, 1e-6));
        assert_eq!(t_quantile(0.975, 0.0), None);
        // statsmodels proportion_confint(5, 10, method="beta"): (0.187086, 0.812914).
        let i = clopper_pearson(5, 10, 0.95).unwrap();
        assert!(
            close(i.lo, 0.187_086, 1e-5) && close(i.hi, 0.812_914, 1e-5),
            "{i:?}"
        );
        // k = 0: lo = 0, hi = 1 - 0.025^(1/10) = 0.308498.
        let i = clopper_pearson(0, 10, 0.95).unwrap();
        assert!(
            close(i.lo, 0.0, 1e-12) && close(i.hi, 0.308_498, 1e-5),
            "{i:?}"
        );
        assert_eq!(clopper_pearson(0, 0, 0.95), None);
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
