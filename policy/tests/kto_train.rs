//! KTO on a tiny random model: a planted preference learned from unpaired rows, step-0
//! values when the policy is the reference, TRL's KL pairing, the reference cache (a second
//! run makes no reference passes and gives the same losses), LoRA with the adapters-off
//! reference, and exact resume.

mod preference_support;

use std::path::Path;

use preference_support::{assert_resume_matches, config_toml, words};

use tch::{Device, Kind};
use tiller_model::testing::write_tiny_checkpoint;
use tiller_model::CausalLm;
use tiller_policy::kto::data::kl_partners;
use tiller_policy::kto::{train, KtoConfig};

/// Unpaired rows: desirable answers end in `#`, undesirable ones in `x`.
fn planted_rows(n: usize, seed: u64) -> Vec<serde_json::Value> {
    let mut word = words(seed);
    (0..n)
        .map(|i| {
            let (prompt, answer) = (word(6), word(6));
            let good = i % 2 == 0;
            let mark = if good { "#" } else { "x" };
            serde_json::json!({"prompt": prompt, "completion": format!("{answer} {mark}"), "label": good})
        })
        .collect()
}

fn setup() -> tempfile::TempDir {
    preference_support::setup(&planted_rows(256, 1), &planted_rows(64, 2))
}

fn config(dir: &Path, out: &str, extra: &str) -> KtoConfig {
    let mut cfg: KtoConfig = toml::from_str(&config_toml(dir, out, extra)).unwrap();
    cfg.validate().unwrap();
    if extra.contains("[lora]") {
        cfg.reference.cache = false;
    }
    cfg
}

#[test]
fn a_tiny_model_learns_a_planted_preference_from_unpaired_rows() {
    let dir = setup();
    let cfg = config(dir.path(), "kto", "");
    let summary = train(&cfg, false, &mut |_| {}).unwrap();
    let before = summary.eval_before.unwrap();
    let after = summary.eval_after.unwrap();
    // Step 0: policy = reference, so every log-ratio and z0 are 0 and each row's loss is
    // 1 − σ(0) = 0.5.
    assert!(
        (before.loss - 0.5).abs() < 1e-6,
        "eval loss before {}",
        before.loss
    );
    assert!(before.kl.abs() < 1e-6 && before.margin().abs() < 1e-6);
    assert!(
        (summary.losses[0] - 0.5).abs() < 1e-6,
        "first loss {}",
        summary.losses[0]
    );
    assert_eq!((before.count_chosen, before.count_rejected), (32.0, 32.0));
    assert!(
        after.loss < before.loss - 0.05,
        "eval loss {} -> {}",
        before.loss,
        after.loss
    );
    assert!(
        after.rewards_chosen > 0.0 && after.rewards_rejected < 0.0,
        "held-out rewards/chosen {} rewards/rejected {}",
        after.rewards_chosen,
        after.rewards_rejected
    );
    assert!(
        after.margin() > 1.0,
        "held-out rewards/margins {}",
        after.margin()
    );
    CausalLm::load(&cfg.out, Device::Cpu, Kind::Float).unwrap();
    let metrics = std::fs::read_to_string(cfg.out.join("metrics.jsonl")).unwrap();
    for key in [
        "\"loss\"",
        "\"kl\"",
        "\"rewards/chosen\"",
        "\"rewards/rejected\"",
        "\"rewards/margins\"",
        "\"logps/chosen\"",
        "\"logps/rejected\"",
        "\"logits/chosen\"",
        "\"train_tokens_per_second\"",
        "\"eval_rewards/margins\"",
        "\"eval_kl\"",
        "\"eval_loss\"",
    ] {
        assert!(metrics.contains(key), "metrics.jsonl lacks {key}");
    }

    // The second run finds every reference log-prob (completions and KL pairs) cached.
    let again = train(&config(dir.path(), "kto2", ""), false, &mut |_| {}).unwrap();
    assert!(summary.reference_forwards > 0);
    assert_eq!(
        again.reference_forwards, 0,
        "the second run ran the reference model"
    );
    assert_eq!(
        again.losses, summary.losses,
        "cached reference changed the losses"
    );
}

#[test]
fn kl_pairs_rotate_completions_within_each_batch_as_trl() {
    assert_eq!(kl_partners(7, 3), vec![2, 0, 1, 5, 3, 4, 6]);
    assert_eq!(kl_partners(4, 4), vec![3, 0, 1, 2]);
}

#[test]
fn a_batch_of_one_is_rejected() {
    let dir = setup();
    let mut cfg = config(dir.path(), "one", "");
    cfg.train.batch_size = 1;
    let err = cfg.validate().unwrap_err();
    assert!(err.contains("batch_size"), "{err}");
}

#[test]
fn lora_reference_is_the_base_with_adapters_off() {
    let dir = setup();
    let mut cfg = config(
        dir.path(),
        "lora",
        "[lora]\nr = 4\nalpha = 8.0\nmerge = false",
    );
    cfg.train.max_steps = Some(4);
    let summary = train(&cfg, false, &mut |_| {}).unwrap();
    assert!(
        (summary.losses[0] - 0.5).abs() < 1e-6,
        "first loss {}",
        summary.losses[0]
    );
    assert!(summary.losses[3] < 0.5, "losses {:?}", summary.losses);
    // No cache: one reference pass per micro-batch and per eval batch.
    assert!(summary.reference_forwards >= 4);
    assert!(cfg.out.join("adapter_model.safetensors").is_file());
}

#[test]
fn a_separate_reference_checkpoint_is_compared_against() {
    let dir = setup();
    // A reference with other weights: step-0 log-ratios are not 0, so the loss is not 0.5.
    write_tiny_checkpoint(&dir.path().join("other"), 8).unwrap();
    let mut cfg = config(dir.path(), "sep", "");
    cfg.train.max_steps = Some(2);
    cfg.reference.model = Some(dir.path().join("other"));
    let summary = train(&cfg, false, &mut |_| {}).unwrap();
    let before = summary.eval_before.unwrap();
    assert!(
        (before.loss - 0.5).abs() > 1e-3,
        "eval loss {}",
        before.loss
    );
    // The same weights as the policy, by another path: 0.5 again, from its own cache.
    cfg.out = dir.path().join("same");
    cfg.reference.model = Some(dir.path().join("base"));
    let summary = train(&cfg, false, &mut |_| {}).unwrap();
    assert!((summary.eval_before.unwrap().loss - 0.5).abs() < 1e-6);
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one() {
    let dir = setup();
    let mut cfg = config(dir.path(), "full", "");
    cfg.train.max_steps = Some(8);
    cfg.train.save_every = Some(4);
    cfg.data.eval = None;
    assert_resume_matches(&cfg.out, |resume| {
        train(&cfg, resume, &mut |_| {}).unwrap().losses
    });
}
