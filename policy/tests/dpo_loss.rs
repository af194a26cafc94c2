//! Every DPO-family loss against values computed by hand (scalar f64 arithmetic, see the
//! comments) on fixed log-probs: two pairs, β = 0.5.
//!
//!   pair   ℓw    ℓl    ℓw_ref  ℓl_ref  Nw  Nl   Δw    Δl    h
//!   0     -10   -12   -11     -11.5    5   4    1.0  -0.5   1.5
//!   1     -20   -18   -19     -19.5   10   8   -1.0   1.5  -2.5
//!
//! `dpo_golden.py` beside this file derives every golden value with TRL's formulas (in TRL's
//! variable names) and checks the numbers written here: `python3 policy/tests/dpo_golden.py`.

use tch::{Kind, Tensor};
use tiller_policy::dpo::{loss, DpoLoss, DpoParams, PairLogps, RunningMean};

fn t(v: &[f64]) -> Tensor {
    Tensor::from_slice(v).to_kind(Kind::Double)
}

fn inputs() -> PairLogps {
    PairLogps {
        chosen: t(&[-10.0, -20.0]),
        rejected: t(&[-12.0, -18.0]),
        ref_chosen: Some(t(&[-11.0, -19.0])),
        ref_rejected: Some(t(&[-11.5, -19.5])),
        chosen_tokens: t(&[5.0, 10.0]),
        rejected_tokens: t(&[4.0, 8.0]),
    }
}

fn params(kind: DpoLoss) -> DpoParams {
    DpoParams {
        kind,
        beta: 0.5,
        ..DpoParams::default()
    }
}

fn value(p: &DpoParams) -> f64 {
    loss(&inputs(), p, None).unwrap().loss.double_value(&[])
}

/// The loss called `name`, with TRL's default coefficients.
fn named(name: &str) -> DpoLoss {
    DpoLoss::named(name).unwrap()
}

fn check(p: DpoParams, expected: f64) {
    let got = value(&p);
    assert!(
        (got - expected).abs() < 1e-9,
        "{:?}: got {got}, expected {expected}",
        p
    );
}

#[test]
fn every_loss_matches_golden_values() {
    let cases = [
        (named("sigmoid"), 0.9444000437),
        (named("robust"), 0.9444000437),
        // max(0, 1 − 0.75) = 0.25 and max(0, 1 + 1.25) = 2.25
        (named("hinge"), 1.25),
        (named("ipo"), 1.056640625),
        (named("sigmoid_norm"), 0.6913986520),
        (named("bco_pair"), 1.5768239424),
        (named("nca_pair"), 1.5143180828),
        (named("apo_zero"), 1.0585010991),
        (named("apo_down"), 1.0490605810),
        // (1 − 1)² + (−0.5 + 1)² = 0.25 and (−1 − 1)² + (1.5 + 1)² = 10.25
        (named("sppo_hard"), 5.25),
        (named("discopop"), 0.9871478040),
        (named("simpo"), 0.7956352223),
        // NLL(yw) = 30 / 15 = 2
        (named("cpo"), 2.8132616875),
        (named("orpo"), 2.0424965458),
    ];
    for (kind, expected) in cases {
        check(params(kind), expected);
    }
}

#[test]
fn label_smoothing() {
    // −(1−ε) log σ(x) − ε log σ(−x) = −log σ(x) + ε x, and mean βh = −0.25.
    check(
        params(DpoLoss::Sigmoid {
            label_smoothing: 0.2,
        }),
        0.9444000437 - 0.2 * 0.25,
    );
    check(
        params(DpoLoss::Robust {
            label_smoothing: 0.2,
        }),
        1.0277333771,
    );
    check(
        params(DpoLoss::Robust {
            label_smoothing: 0.0,
        }),
        0.9444000437,
    );
}

#[test]
fn gamma_alpha_lambda_edges() {
    check(
        params(DpoLoss::Simpo {
            gamma: 0.0,
            label_smoothing: 0.0,
        }),
        0.5533380097,
    );
    check(
        params(DpoLoss::Cpo {
            alpha: 0.0,
            label_smoothing: 0.0,
        }),
        0.8132616875,
    );
    // λ = 0 leaves the NLL alone.
    check(params(DpoLoss::Orpo { lambda: 0.0 }), 2.0);
    check(params(DpoLoss::Orpo { lambda: 1.0 }), 2.4249654580);
    check(
        DpoParams {
            rpo_alpha: Some(0.5),
            ..params(named("sigmoid"))
        },
        0.9444000437 + 0.5 * 2.0,
    );
    check(
        DpoParams {
            rpo_alpha: Some(0.0),
            ..params(named("sigmoid"))
        },
        0.9444000437,
    );
}

#[test]
fn sigmoid_is_ln2_when_policy_equals_reference() {
    let p = PairLogps {
        chosen: t(&[-3.0, -7.5]),
        rejected: t(&[-4.0, -1.0]),
        ref_chosen: Some(t(&[-3.0, -7.5])),
        ref_rejected: Some(t(&[-4.0, -1.0])),
        chosen_tokens: t(&[2.0, 3.0]),
        rejected_tokens: t(&[2.0, 1.0]),
    };
    let out = loss(&p, &DpoParams::default(), None).unwrap();
    assert!((out.loss.double_value(&[]) - std::f64::consts::LN_2).abs() < 1e-12);
    assert_eq!(
        out.chosen_rewards.abs().sum(Kind::Double).double_value(&[]),
        0.0
    );
}

#[test]
fn rewards_are_beta_times_log_ratios() {
    let out = loss(&inputs(), &params(named("sigmoid")), None).unwrap();
    assert_eq!(
        Vec::<f64>::try_from(&out.chosen_rewards).unwrap(),
        vec![0.5, -0.5]
    );
    assert_eq!(
        Vec::<f64>::try_from(&out.rejected_rewards).unwrap(),
        vec![-0.25, 0.75]
    );
    assert!(!out.chosen_rewards.requires_grad());
}

#[test]
fn reference_losses_refuse_missing_reference() {
    let mut p = inputs();
    p.ref_chosen = None;
    let e = loss(&p, &params(named("sigmoid")), None)
        .err()
        .expect("an error")
        .to_string();
    assert!(
        e.contains("sigmoid") && e.contains("reference log-probs"),
        "{e}"
    );
    assert!(loss(&p, &params(named("simpo")), None).is_ok());
}

#[test]
fn bco_running_mean_and_config() {
    let mut m = RunningMean::default();
    m.update(1.0, 4);
    m.update(4.0, 2);
    assert!((m.mean - 2.0).abs() < 1e-12 && m.count == 6);
    // δ given explicitly: δ = 0 turns bco_pair into −log σ(βΔw) − log σ(−βΔl).
    let ls = |x: f64| -(1.0 + (-x).exp()).ln();
    let expected = (-ls(0.5) - ls(0.25) - ls(-0.5) - ls(-0.75)) / 2.0;
    let got = loss(&inputs(), &params(DpoLoss::BcoPair), Some(0.0))
        .unwrap()
        .loss
        .double_value(&[]);
    assert!((got - expected).abs() < 1e-9, "{got} vs {expected}");
    let parsed: DpoParams = toml::from_str("kind = \"sigmoid_norm\"\nbeta = 0.2").unwrap();
    assert_eq!(parsed.kind, DpoLoss::SigmoidNorm);
    let unknown = toml::from_str::<DpoParams>("kind = \"nope\"").unwrap_err();
    assert!(unknown.to_string().contains("loss.kind"), "{unknown}");
    let e = DpoParams {
        kind: DpoLoss::Sigmoid {
            label_smoothing: 0.5,
        },
        ..DpoParams::default()
    }
    .validate()
    .unwrap_err();
    assert!(e.contains("loss.label_smoothing"), "{e}");
}

#[test]
fn the_toml_keeps_trl_keys_and_refuses_a_key_of_another_loss() {
    let parsed: DpoParams =
        toml::from_str("kind = \"simpo\"\nbeta = 2.0\nsimpo_gamma = 0.3\nlabel_smoothing = 0.1")
            .unwrap();
    let simpo = DpoLoss::Simpo {
        gamma: 0.3,
        label_smoothing: 0.1,
    };
    assert_eq!(parsed.kind, simpo);
    assert_eq!(parsed.beta, 2.0);
    // Absent keys take TRL's defaults; `kind` defaults to sigmoid.
    let cpo: DpoParams = toml::from_str("kind = \"cpo\"").unwrap();
    assert_eq!(
        cpo.kind,
        DpoLoss::Cpo {
            alpha: 1.0,
            label_smoothing: 0.0
        }
    );
    let default: DpoParams = toml::from_str("").unwrap();
    assert_eq!(default, DpoParams::default());
    for (text, key) in [
        ("kind = \"sigmoid\"\nsimpo_gamma = 0.5", "loss.simpo_gamma"),
        (
            "kind = \"hinge\"\nlabel_smoothing = 0.0",
            "loss.label_smoothing",
        ),
        ("kind = \"simpo\"\ncpo_alpha = 1.0", "loss.cpo_alpha"),
        ("discopop_tau = 0.1", "loss.discopop_tau"),
    ] {
        let err = toml::from_str::<DpoParams>(text).unwrap_err().to_string();
        assert!(
            err.contains(key) && err.contains("does not apply"),
            "{text}: {err}"
        );
    }
    assert!(toml::from_str::<DpoParams>("kind = \"orpo\"\nbco_delta = 0.1").is_err());
    // The resolved config writes back what it read: only the chosen loss's keys.
    let written = toml::to_string(&parsed).unwrap();
    assert!(written.contains("simpo_gamma = 0.3") && !written.contains("cpo_alpha"));
    assert_eq!(toml::from_str::<DpoParams>(&written).unwrap(), parsed);
}

#[test]
fn every_loss_name_reads_back_as_itself() {
    for name in tiller_policy::dpo::params::DPO_LOSS_NAMES {
        let kind = DpoLoss::named(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(kind.name(), name);
        let written = toml::to_string(&DpoParams {
            kind,
            ..DpoParams::default()
        })
        .unwrap();
        assert_eq!(toml::from_str::<DpoParams>(&written).unwrap().kind, kind);
    }
    assert!(DpoLoss::named("sigmoidd").is_none());
}
