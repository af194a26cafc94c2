//! The KTO loss against hand-computed values. β = 0.5; three completions with
//! Δ = (1, −1, 1), labels (desirable, undesirable, undesirable), and mismatched-pair
//! log-ratios (1, 0.5, 1.5), so z0 = 1:
//!   desirable Δ=1:    1 − σ(0.5·(1 − 1))    = 0.5
//!   undesirable Δ=−1: 1 − σ(0.5·(1 + 1))    = 1 − σ(1) = 0.268941…
//!   undesirable Δ=1:  1 − σ(0.5·(1 − 1))    = 0.5

use tch::{Kind, Tensor};
use tiller_policy::kto::{kto_loss, KtoInputs, KtoParams};

fn t(v: &[f64]) -> Tensor {
    Tensor::from_slice(v).to_kind(Kind::Double)
}

fn inputs(ref_kl: &[f64]) -> KtoInputs {
    KtoInputs {
        logps: t(&[-10.0, -20.0, -5.0]),
        ref_logps: t(&[-11.0, -19.0, -6.0]),
        desirable: Tensor::from_slice(&[true, false, false]),
        kl_logps: t(&[-3.0, -4.0, -2.0]),
        ref_kl_logps: t(ref_kl),
    }
}

fn value(p: &KtoInputs, params: &KtoParams) -> f64 {
    kto_loss(p, params).unwrap().loss.double_value(&[])
}

#[test]
fn kto_matches_golden_values() {
    let params = KtoParams {
        beta: 0.5,
        ..KtoParams::default()
    };
    let p = inputs(&[-4.0, -4.5, -3.5]);
    let out = kto_loss(&p, &params).unwrap();
    assert!((out.kl - 1.0).abs() < 1e-12);
    assert!((out.loss.double_value(&[]) - 0.4229804737899984).abs() < 1e-12);
    // λU = 2 doubles the undesirable terms.
    let weighted = KtoParams {
        undesirable_weight: 2.0,
        ..params
    };
    assert!((value(&p, &weighted) - 0.6792942809133301).abs() < 1e-12);
    assert_eq!(
        Vec::<f64>::try_from(&out.rewards).unwrap(),
        vec![0.5, -0.5, 0.5]
    );
}

#[test]
fn a_negative_kl_estimate_is_clamped_at_zero() {
    let params = KtoParams {
        beta: 0.5,
        ..KtoParams::default()
    };
    let p = inputs(&[-1.0, -1.0, -1.0]); // mean log-ratio −2
    let out = kto_loss(&p, &params).unwrap();
    assert_eq!(out.kl, 0.0);
    assert!((out.loss.double_value(&[]) - 0.45918022293271515).abs() < 1e-12);
}
