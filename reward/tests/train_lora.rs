//! LoRA reward models on a tiny random model: adapters plus a fully trained score head
//! learn a planted preference; the PEFT adapter (and the merged checkpoint) load back with
//! the same rewards; a resumed LoRA run equals an uninterrupted one.

mod reward_support;

use std::path::Path;

use reward_support::{serial, setup};

use tch::{Device, Kind, Tensor};
use tiller_model::LoraConfig;
use tiller_reward::train::{evaluate, load_pairs, train};
use tiller_reward::{RewardModel, RewardTrainConfig};

const LORA: &str = r#"
        [lora]
        r = 8
        alpha = 16.0
        target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        "#;

/// A LoRA run (merged into a full checkpoint at the end with `merge`).
fn config(dir: &Path, out: &str, steps: u64, save_every: u64, merge: bool) -> RewardTrainConfig {
    let extra = format!("{LORA}merge = {merge}");
    reward_support::config(dir, out, (steps, save_every), 1e-2, &extra)
}

#[test]
fn a_lora_reward_model_learns_a_planted_preference_and_loads_back() {
    let _turn = serial();
    let dir = setup();
    let cfg = config(dir.path(), "rm", 60, 0, false);
    let summary = train(&cfg, false, &mut |_| {}).unwrap();
    let after = summary.eval_after.unwrap();
    assert!(
        after.accuracy >= 0.95,
        "held-out accuracy {} (was {})",
        after.accuracy,
        summary.eval_before.unwrap().accuracy
    );
    // A PEFT adapter: SEQ_CLS with the score head saved whole.
    let peft: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cfg.out.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(peft["task_type"], "SEQ_CLS");
    assert_eq!(peft["modules_to_save"], serde_json::json!(["score"]));
    assert!(!cfg.out.join("model.safetensors").exists());
    let tensors = Tensor::read_safetensors(cfg.out.join("adapter_model.safetensors")).unwrap();
    assert!(tensors
        .iter()
        .any(|(n, _)| n == "base_model.model.score.weight"));

    // Loaded back, it gives the very metrics the run ended with.
    let model = RewardModel::load(&cfg.out, Device::Cpu, Kind::Float).unwrap();
    assert!(model.lora.is_some());
    let tokenizer = tiller_data::Tokenizer::from_dir(&cfg.out).unwrap();
    let eval_set = load_pairs(&cfg, cfg.data.eval.as_ref().unwrap(), &tokenizer).unwrap();
    let again = evaluate(
        &cfg,
        &model,
        &eval_set,
        tokenizer.pad_id as i64,
        &tiller_model::dist::Single,
    )
    .unwrap();
    assert_eq!(again, after, "the saved adapter scores differently");
}

#[test]
fn adapter_and_merged_saves_give_the_same_rewards() {
    let _turn = serial();
    let dir = setup();
    let base = dir.path().join("base");
    let mut model = RewardModel::load_or_init(&base, Device::Cpu, Kind::Float, 5).unwrap();
    model.attach_lora(&LoraConfig::default(), 9).unwrap();
    // Non-zero B matrices, so the adapters change the rewards.
    tch::no_grad(|| {
        for (_, t) in model.lora.as_ref().unwrap().vs.variables() {
            let _ = t.shallow_clone().f_normal_(0.0, 0.05).unwrap();
        }
    });
    let ids = Tensor::from_slice(&[5i64, 9, 13, 21, 7, 3, 11, 2]).view([2, 4]);
    let valid = Tensor::from_slice(&[true, true, true, true, false, true, true, true]).view([2, 4]);
    let rewards = tch::no_grad(|| model.rewards(&ids, &valid));

    let adapter = dir.path().join("adapter");
    model
        .save_adapter_or_full(&adapter, &base, Some(&base))
        .unwrap();
    let loaded = RewardModel::load(&adapter, Device::Cpu, Kind::Float).unwrap();
    let again = tch::no_grad(|| loaded.rewards(&ids, &valid));
    assert!(again.equal(&rewards), "{again} vs {rewards}");

    let merged_dir = dir.path().join("merged");
    model.merge_lora().unwrap();
    model
        .save_adapter_or_full(&merged_dir, &base, Some(&base))
        .unwrap();
    assert!(merged_dir.join("model.safetensors").is_file());
    let merged = RewardModel::load(&merged_dir, Device::Cpu, Kind::Float).unwrap();
    assert!(merged.lora.is_none());
    let merged_rewards = tch::no_grad(|| merged.rewards(&ids, &valid));
    assert!(
        merged_rewards.allclose(&rewards, 1e-5, 1e-5, false),
        "{merged_rewards} vs {rewards}"
    );
}

#[test]
fn a_resumed_lora_run_ends_with_the_same_weights() {
    let _turn = serial();
    let dir = setup();
    let straight = config(dir.path(), "straight", 6, 0, false);
    train(&straight, false, &mut |_| {}).unwrap();
    let interrupted = config(dir.path(), "interrupted", 6, 3, false);
    train(&interrupted, false, &mut |_| {}).unwrap();
    std::fs::remove_dir_all(interrupted.out.join("checkpoint-6")).unwrap();
    train(&interrupted, true, &mut |_| {}).unwrap();
    let read = |dir: &Path| {
        let mut t = Tensor::read_safetensors(dir.join("adapter_model.safetensors")).unwrap();
        t.sort_by(|a, b| a.0.cmp(&b.0));
        t
    };
    let (a, b) = (read(&straight.out), read(&interrupted.out));
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after resume");
    }
}
