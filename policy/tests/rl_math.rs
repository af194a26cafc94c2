//! The pure parts of online RL against hand-computed values: KL estimators, group
//! normalization (GRPO, Dr.GRPO, batch scaling), RLOO's leave-one-out baseline, whitening,
//! the clipped surrogate and the loss-type token weights.

use tch::{Kind, Tensor};
use tiller_policy::rl::advantages::{
    group_advantages, group_stds, masked_whiten, rloo_advantages, whiten, ScaleRewards,
};
use tiller_policy::rl::kl::KlEstimator;
use tiller_policy::rl::loss::{approx_kl, clip_fraction, clipped_surrogate, ClipRange, LossType};

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).reshape([-1])).unwrap()
}

#[test]
fn kl_estimators_match_their_formulas() {
    // log π = −1, log π_ref = −2: log ratio 1.
    assert!((KlEstimator::K1.value(-1.0, -2.0) - 1.0).abs() < 1e-12);
    assert!((KlEstimator::K2.value(-1.0, -2.0) - 0.5).abs() < 1e-12);
    assert!((KlEstimator::K3.value(-1.0, -2.0) - 0.367_879_441_171_442_3).abs() < 1e-12);
    // log ratio −0.5: k1 negative, k2 and k3 not.
    assert!((KlEstimator::K1.value(-2.0, -1.5) + 0.5).abs() < 1e-12);
    assert!((KlEstimator::K2.value(-2.0, -1.5) - 0.125).abs() < 1e-12);
    assert!((KlEstimator::K3.value(-2.0, -1.5) - (0.5f64.exp() - 1.5)).abs() < 1e-12);
    // Equal policies: every estimator is 0.
    for k in [KlEstimator::K1, KlEstimator::K2, KlEstimator::K3] {
        assert_eq!(k.value(-3.0, -3.0), 0.0);
    }
    // The tensor form agrees with the scalar form.
    let logp = Tensor::from_slice(&[-1.0f64, -2.0, -0.3]);
    let refp = Tensor::from_slice(&[-2.0f64, -1.5, -0.3]);
    for k in [KlEstimator::K1, KlEstimator::K2, KlEstimator::K3] {
        let expected: Vec<f64> = [(-1.0, -2.0), (-2.0, -1.5), (-0.3, -0.3)]
            .iter()
            .map(|&(a, b)| k.value(a, b))
            .collect();
        close(&values(&k.per_token(&logp, &refp)), &expected, 1e-12);
    }
}

#[test]
fn grpo_group_normalization_and_dr_grpo() {
    let rewards = [1.0, 2.0, 3.0, 0.0, 0.0, 0.0];
    // Group 1: mean 2, unbiased std 1; group 2: all equal, std 0.
    let a = group_advantages(&rewards, 3, ScaleRewards::Group).unwrap();
    close(
        &a,
        &[-1.0 / 1.0001, 0.0, 1.0 / 1.0001, 0.0, 0.0, 0.0],
        1e-12,
    );
    let dr = group_advantages(&rewards, 3, ScaleRewards::None).unwrap();
    close(&dr, &[-1.0, 0.0, 1.0, 0.0, 0.0, 0.0], 1e-12);
    // Batch std: mean 1, squared deviations 0+1+4+1+1+1 = 8, /5 → sqrt(1.6).
    let s = 1.6f64.sqrt() + 1e-4;
    let b = group_advantages(&rewards, 3, ScaleRewards::Batch).unwrap();
    close(&b, &[-1.0 / s, 0.0, 1.0 / s, 0.0, 0.0, 0.0], 1e-12);
    close(
        &group_stds(&rewards, 3).unwrap(),
        &[1.0, 1.0, 1.0, 0.0, 0.0, 0.0],
        1e-12,
    );
    let e = group_advantages(&rewards, 4, ScaleRewards::Group)
        .unwrap_err()
        .to_string();
    assert!(e.contains("6 rewards") && e.contains("groups of 4"), "{e}");
}

#[test]
fn rloo_leave_one_out_baseline() {
    // Group [1, 2, 3]: baselines 2.5, 2, 1.5. Group [4, 0]: baselines 0, 4.
    let a = rloo_advantages(&[1.0, 2.0, 3.0], 3).unwrap();
    close(&a, &[-1.5, 0.0, 1.5], 1e-12);
    let b = rloo_advantages(&[4.0, 0.0, 1.0, 1.0], 2).unwrap();
    close(&b, &[4.0, -4.0, 0.0, 0.0], 1e-12);
    let e = rloo_advantages(&[1.0, 2.0], 1).unwrap_err().to_string();
    assert!(e.contains("at least 2 samples"), "{e}");
}

#[test]
fn whitening() {
    // mean 2.5, unbiased std sqrt(5/3).
    let s = (5.0f64 / 3.0).sqrt() + 1e-4;
    close(
        &whiten(&[1.0, 2.0, 3.0, 4.0]),
        &[-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s],
        1e-12,
    );
    // Masked: the 100 is padding and must not count.
    let v = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0, 100.0]);
    let m = Tensor::from_slice(&[1.0f64, 1.0, 1.0, 1.0, 0.0]);
    let r = 1.0 / (5.0f64 / 3.0 + 1e-8).sqrt();
    let w = values(&masked_whiten(&v, &m, true));
    close(&w[..4], &[-1.5 * r, -0.5 * r, 0.5 * r, 1.5 * r], 1e-6);
    let kept = values(&masked_whiten(&v, &m, false));
    close(
        &kept[..4],
        &[2.5 - 1.5 * r, 2.5 - 0.5 * r, 2.5 + 0.5 * r, 2.5 + 1.5 * r],
        1e-6,
    );
}

#[test]
fn clipped_surrogate_golden_values() {
    let clip = ClipRange {
        low: 0.2,
        high: 0.2,
    };
    // ratios 1.5 (above the range), 0.5 (below), 1.1 (inside); advantages ±1, 2.
    let ratios = [1.5f64, 1.5, 0.5, 0.5, 1.1];
    let adv = [1.0f64, -1.0, 1.0, -1.0, 2.0];
    let old = Tensor::from_slice(&[-1.0f64; 5]);
    let logp: Vec<f64> = ratios.iter().map(|r| -1.0 + r.ln()).collect();
    let logp = Tensor::from_slice(&logp).set_requires_grad(true);
    let s = clipped_surrogate(&logp, &old, &Tensor::from_slice(&adv), clip);
    // −min(rA, clip(r)A):
    //  r 1.5, A +1: −min(1.5, 1.2) = −1.2 (clipped)   r 1.5, A −1: −min(−1.5, −1.2) = 1.5
    //  r 0.5, A +1: −min(0.5, 0.8) = −0.5             r 0.5, A −1: −min(−0.5, −0.8) = 0.8 (clipped)
    //  r 1.1, A +2: −2.2
    close(&values(&s.loss), &[-1.2, 1.5, -0.5, 0.8, -2.2], 1e-12);
    close(&values(&s.clipped), &[1.0, 0.0, 0.0, 1.0, 0.0], 0.0);
    close(&values(&s.ratio), &ratios, 1e-12);
    let mask = Tensor::from_slice(&[1.0f64; 5]);
    close(&[clip_fraction(&s, &mask).double_value(&[])], &[0.4], 1e-6);
    // Clipped elements carry no gradient; the others −A·r.
    s.loss.sum(Kind::Double).backward();
    close(&values(&logp.grad()), &[0.0, 1.5, -0.5, 0.0, -2.2], 1e-12);
    // approx KL = mean((log r)²/2).
    let expected = ratios.iter().map(|r| 0.5 * r.ln().powi(2)).sum::<f64>() / 5.0;
    close(
        &[approx_kl(&logp, &old, &mask).double_value(&[])],
        &[expected],
        1e-6,
    );
}

#[test]
fn loss_type_token_weights() {
    // Two rows of a minibatch of 4 rows and 10 tokens; lengths 3 and 1, width 3.
    let mask = Tensor::from_slice(&[1.0f32, 1.0, 1.0, 1.0, 0.0, 0.0]).view([2, 3]);
    let grpo = values(&LossType::Grpo.token_weights(&mask, 4, 10.0, 8));
    close(
        &grpo,
        &[1.0 / 12.0, 1.0 / 12.0, 1.0 / 12.0, 0.25, 0.0, 0.0],
        1e-7,
    );
    let dapo = values(&LossType::Dapo.token_weights(&mask, 4, 10.0, 8));
    close(&dapo, &[0.1, 0.1, 0.1, 0.1, 0.0, 0.0], 1e-7);
    let dr = values(&LossType::DrGrpo.token_weights(&mask, 4, 10.0, 8));
    close(
        &dr,
        &[1.0 / 32.0, 1.0 / 32.0, 1.0 / 32.0, 1.0 / 32.0, 0.0, 0.0],
        1e-7,
    );
}
