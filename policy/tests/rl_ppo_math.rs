//! PPO's pure parts against hand-computed numbers: per-token rewards (KL penalty plus the
//! score at the last completion token) with the missing-EOS penalty and reward clipping, GAE
//! with γ, λ ≠ 1 over masked (prompt and padding) positions, whitening, the clipped value
//! loss and the adaptive KL controller.

use tch::{Kind, Tensor};
use tiller_model::FinishReason;
use tiller_policy::rl::advantages::masked_whiten;
use tiller_policy::rl::critic::value_loss;
use tiller_policy::rl::gae::{clip_scores, gae, token_rewards};
use tiller_policy::rl::kl_control::{KlControlConfig, KlController};
use tiller_policy::rl::rollout::{apply_missing_eos_penalty, Sample};

fn t2(rows: &[[f64; 4]]) -> Tensor {
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, 4])
}

fn mask(rows: &[[bool; 4]]) -> Tensor {
    let flat: Vec<bool> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, 4])
}

fn assert_close(got: &Tensor, want: &[f64], what: &str) {
    let got = Vec::<f64>::try_from(got.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-9, "{what}[{i}]: got {g}, want {w}");
    }
}

/// Row 0: a prompt token then three completion tokens; row 1: a prompt token, two
/// completion tokens and a padding token.
fn completion_mask() -> Tensor {
    mask(&[[false, true, true, true], [false, true, true, false]])
}

#[test]
fn token_rewards_put_the_score_on_the_last_completion_token() {
    let kl = t2(&[[0.5, 0.1, 0.2, 0.3], [9.0, 0.4, -0.2, 0.7]]);
    let scores = Tensor::from_slice(&[2.0f64, -1.0]);
    let r = token_rewards(&kl, &completion_mask(), &scores, 0.1);
    assert_close(
        &r.non_score,
        &[0.0, -0.01, -0.02, -0.03, 0.0, -0.04, 0.02, 0.0],
        "non_score",
    );
    assert_close(
        &r.rewards,
        &[0.0, -0.01, -0.02, 1.97, 0.0, -0.04, -0.98, 0.0],
        "rewards",
    );
}

#[test]
fn a_row_without_completion_tokens_gets_no_reward() {
    let kl = t2(&[[0.5, 0.1, 0.2, 0.3]]);
    let none = mask(&[[false, false, false, false]]);
    let r = token_rewards(&kl, &none, &Tensor::from_slice(&[3.0f64]), 0.1);
    assert_close(&r.rewards, &[0.0; 4], "rewards");
}

fn sample(score: f64, finish: FinishReason) -> Sample {
    Sample {
        prompt_index: 0,
        prompt_ids: vec![1],
        completion_ids: vec![2, 3],
        old_logprobs: vec![-1.0, -1.0],
        text: "ab".into(),
        finish,
        score,
    }
}

#[test]
fn missing_eos_penalty_then_clipping_reach_the_last_token() {
    let mut samples = vec![
        sample(2.0, FinishReason::Eos),
        sample(-1.0, FinishReason::Length),
        sample(12.0, FinishReason::StopString),
        sample(-3.0, FinishReason::Length),
    ];
    apply_missing_eos_penalty(&mut samples, 1.0);
    let scores: Vec<f64> = samples.iter().map(|s| s.score).collect();
    let clipped = clip_scores(&Tensor::from_slice(&scores), Some(10.0));
    assert_close(&clipped, &[2.0, -2.0, 10.0, -4.0], "penalty and clip");
    assert_close(
        &clip_scores(&Tensor::from_slice(&scores), None),
        &[2.0, -2.0, 12.0, -4.0],
        "no clip",
    );
    // The shaped score lands on the last completion token, after the KL penalty.
    let kl = t2(&[[0.0, 1.0, 1.0, 0.0]; 4]);
    let m = mask(&[[true, true, true, false]; 4]);
    let r = token_rewards(&kl, &m, &clipped, 0.5);
    assert_close(
        &r.rewards.select(1, 2),
        &[1.5, -2.5, 9.5, -4.5],
        "last-token rewards",
    );
}

#[test]
fn gae_with_discount_and_lambda_over_masked_tokens() {
    // Prompt and padding positions carry rewards and values that must be ignored.
    let rewards = t2(&[[5.0, 1.0, 2.0, 3.0], [1.0, -1.0, 4.0, 9.0]]);
    let values = t2(&[[7.0, 0.5, 1.0, 1.5], [2.0, 0.25, -0.5, 8.0]]);
    let g = gae(&rewards, &values, &completion_mask(), 0.9, 0.8);
    // Row 0: δ3 = 3 − 1.5 = 1.5; δ2 = 2 + 0.9·1.5 − 1 = 2.35, A2 = 2.35 + 0.72·1.5 = 3.43;
    // δ1 = 1 + 0.9·1 − 0.5 = 1.4, A1 = 1.4 + 0.72·3.43 = 3.8696.
    // Row 1 ends at position 2: δ2 = 4 + 0.5 = 4.5; δ1 = −1 − 0.45 − 0.25 = −1.7,
    // A1 = −1.7 + 0.72·4.5 = 1.54.
    assert_close(
        &g.advantages,
        &[0.0, 3.8696, 3.43, 1.5, 0.0, 1.54, 4.5, 0.0],
        "advantages",
    );
    assert_close(
        &g.returns,
        &[0.0, 4.3696, 4.43, 3.0, 0.0, 1.79, 4.0, 0.0],
        "returns",
    );
}

#[test]
fn gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value() {
    let rewards = t2(&[[0.0, 1.0, 2.0, 3.0]]);
    let values = t2(&[[0.0, 0.5, 1.0, 1.5]]);
    let m = mask(&[[false, true, true, true]]);
    let g = gae(&rewards, &values, &m, 1.0, 1.0);
    assert_close(&g.advantages, &[0.0, 5.5, 4.0, 1.5], "advantages");
    assert_close(&g.returns, &[0.0, 6.0, 5.0, 3.0], "returns");
}

#[test]
fn whitening_uses_the_masked_elements_and_the_unbiased_variance() {
    let x = t2(&[[100.0, 3.8696, 3.43, 1.5], [-50.0, 1.54, 4.5, 7.0]]);
    // Masked: 3.8696, 3.43, 1.5, 1.54, 4.5; mean 2.96792, unbiased variance 1.891889632.
    let w =
        Vec::<f64>::try_from(masked_whiten(&x, &completion_mask(), true).flatten(0, -1)).unwrap();
    let want = [
        (1, 0.6555480608207306),
        (2, 0.335945843252643),
        (3, -1.067221308490781),
        (5, -1.038140123998689),
        (6, 1.1138675284160955),
    ];
    for (i, e) in want {
        assert!((w[i] - e).abs() < 1e-6, "whitened[{i}]: {} vs {e}", w[i]);
    }
    // shift_mean = false keeps the mean (as PPO whitens rewards).
    let kept =
        Vec::<f64>::try_from(masked_whiten(&x, &completion_mask(), false).flatten(0, -1)).unwrap();
    assert!((kept[1] - 3.623468060820731).abs() < 1e-6, "{}", kept[1]);
}

#[test]
fn clipped_value_loss_golden_numbers() {
    let values = Tensor::from_slice(&[1.0f64, 2.0, 0.5, 5.0]).view([1, 4]);
    let old = Tensor::from_slice(&[1.5f64, 1.0, 0.1, 4.0]).view([1, 4]);
    let returns = Tensor::from_slice(&[2.0f64, 0.0, 3.0, 4.5]).view([1, 4]);
    let m = mask(&[[true, true, true, false]]);
    // Position 0: unclipped (1−2)² = 1 beats clipped (1.3−2)² = 0.49.
    // Position 1: unclipped 4 beats clipped (1.2−0)² = 1.44.
    // Position 2: clipped (0.3−3)² = 7.29 beats unclipped 6.25. Position 3 is masked.
    let v = value_loss(&values, &old, &returns, &m, 0.2).unwrap();
    let loss = v.loss.double_value(&[]);
    assert!(
        (loss - 0.5 * (1.0 + 4.0 + 7.29) / 3.0).abs() < 1e-12,
        "{loss}"
    );
    assert!((v.clipfrac - 1.0 / 3.0).abs() < 1e-12, "{}", v.clipfrac);
    // The gradient flows through the unclipped values only where they won.
    let values = values.set_requires_grad(true);
    let v = value_loss(&values, &old, &returns, &m, 0.2).unwrap();
    v.loss.backward();
    // d/dV of ½·(V−R)²/3 = (V−R)/3 at positions 0 and 1; 0 at 2 (clipped) and 3 (masked).
    assert_close(
        &values.grad(),
        &[-1.0 / 3.0, 2.0 / 3.0, 0.0, 0.0],
        "value gradient",
    );
}

#[test]
fn adaptive_kl_controller_follows_ziegler_et_al() {
    let mut c = KlController::new(KlControlConfig::Adaptive {
        coef: 0.2,
        target: 6.0,
        horizon: 10_000.0,
    });
    // KL 9 is 50% over target: the error is clipped to 0.2, β·(1 + 0.2·64/10000).
    c.update(9.0, 64);
    assert!((c.value - 0.2 * 1.00128).abs() < 1e-15, "{}", c.value);
    // KL 5.4 is 10% under: β·(1 − 0.1·64/10000).
    c.update(5.4, 64);
    assert!(
        (c.value - 0.2 * 1.00128 * 0.99936).abs() < 1e-15,
        "{}",
        c.value
    );
    // A non-finite KL leaves β alone.
    let before = c.value;
    c.update(f64::NAN, 64);
    assert_eq!(c.value, before);

    let mut fixed = KlController::new(KlControlConfig::Fixed { coef: 0.05 });
    fixed.update(100.0, 64);
    assert_eq!(fixed.value, 0.05);
}

#[test]
fn kl_controller_state_round_trips_through_json() {
    let mut c = KlController::new(KlControlConfig::Adaptive {
        coef: 0.1,
        target: 1.0,
        horizon: 100.0,
    });
    c.update(3.0, 8);
    let text = serde_json::to_string(&c).unwrap();
    let back: KlController = serde_json::from_str(&text).unwrap();
    assert_eq!(back, c);
}
