//! Reward training on a tiny random model: a planted preference is learned, and a run
//! resumed from a checkpoint ends with the same weights as an uninterrupted one.

mod reward_support;

use std::path::Path;

use reward_support::{serial, setup};

use tch::{Device, Kind};
use tiller_reward::train::train;
use tiller_reward::{RewardModel, RewardTrainConfig};

fn config(dir: &Path, out: &str, steps: u64, save_every: u64) -> RewardTrainConfig {
    reward_support::config(dir, out, (steps, save_every), 3e-3, "")
}

#[test]
fn a_tiny_reward_model_learns_a_planted_preference() {
    let _turn = serial();
    let dir = setup();
    let cfg = config(dir.path(), "rm", 60, 0);
    let summary = train(&cfg, false, &mut |_| {}).unwrap();
    let before = summary.eval_before.unwrap();
    let after = summary.eval_after.unwrap();
    assert!(
        after.accuracy >= 0.95,
        "held-out accuracy {} (was {})",
        after.accuracy,
        before.accuracy
    );
    assert!(after.loss < before.loss);
    // The output is a loadable reward checkpoint, and metrics use TRL's keys.
    RewardModel::load(&cfg.out, Device::Cpu, Kind::Float).unwrap();
    let metrics = std::fs::read_to_string(cfg.out.join("metrics.jsonl")).unwrap();
    for key in [
        "\"loss\"",
        "\"accuracy\"",
        "\"margin\"",
        "\"eval_accuracy\"",
        "\"learning_rate\"",
        "\"grad_norm\"",
    ] {
        assert!(metrics.contains(key), "metrics.jsonl lacks {key}");
    }
}

#[test]
fn resuming_from_a_checkpoint_gives_bit_identical_weights() {
    let _turn = serial();
    let dir = setup();
    let straight = config(dir.path(), "straight", 6, 0);
    train(&straight, false, &mut |_| {}).unwrap();

    let interrupted = config(dir.path(), "interrupted", 6, 3);
    train(&interrupted, false, &mut |_| {}).unwrap();
    // Keep only the step-3 checkpoint, as if the run had died after writing it.
    std::fs::remove_dir_all(interrupted.out.join("checkpoint-6")).unwrap();
    std::fs::remove_file(interrupted.out.join("model.safetensors")).unwrap();
    let summary = train(&interrupted, true, &mut |_| {}).unwrap();
    assert_eq!(summary.steps, 6);

    let a = RewardModel::load(&straight.out, Device::Cpu, Kind::Float).unwrap();
    let b = RewardModel::load(&interrupted.out, Device::Cpu, Kind::Float).unwrap();
    for (name, t) in a.vs.variables() {
        assert!(
            t.equal(&b.vs.variables()[&name]),
            "{name} differs after resume"
        );
    }
}

#[test]
fn two_identical_runs_give_identical_weights() {
    let _turn = serial();
    let dir = setup();
    let a = config(dir.path(), "a", 6, 0);
    let b = config(dir.path(), "b", 6, 0);
    train(&a, false, &mut |_| {}).unwrap();
    train(&b, false, &mut |_| {}).unwrap();
    let a = RewardModel::load(&a.out, Device::Cpu, Kind::Float).unwrap();
    let b = RewardModel::load(&b.out, Device::Cpu, Kind::Float).unwrap();
    for (name, t) in a.vs.variables() {
        assert!(
            t.equal(&b.vs.variables()[&name]),
            "{name} differs between identical runs"
        );
    }
}
