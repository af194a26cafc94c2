//! Reward training on a tiny random model: a planted preference is learned, and a run
//! resumed from a checkpoint ends with the same weights as an uninterrupted one.

use std::path::Path;

use tch::{Device, Kind};
use tiller_model::testing::write_tiny_checkpoint;
use tiller_reward::train::train;
use tiller_reward::{RewardModel, RewardTrainConfig};

/// Pairs whose chosen answer carries a `#` and whose rejected answer does not.
fn write_planted_pairs(path: &Path, n: usize, seed: u64) {
    let mut rng = tiller_model::sampling::SplitMix64(seed);
    let mut word = |len: usize| -> String {
        (0..len)
            .map(|_| (b'a' + (rng.next_u64() % 26) as u8) as char)
            .collect()
    };
    let mut lines = String::new();
    for _ in 0..n {
        let prompt = word(6);
        let (a, b) = (word(8), word(8));
        let row = serde_json::json!({"prompt": prompt, "chosen": format!("{a} #"), "rejected": format!("{b} x")});
        lines.push_str(&format!("{row}\n"));
    }
    std::fs::write(path, lines).unwrap();
}

fn config(dir: &Path, out: &str, steps: u64, save_every: u64) -> RewardTrainConfig {
    let text = format!(
        r#"
        model = "{model}"
        out = "{out}"
        seed = 3
        [data]
        train = "{train}"
        eval = "{eval}"
        max_seq_len = 64
        [train]
        batch_size = 16
        max_steps = {steps}
        log_every = 5
        {save}
        keep_checkpoints = 0
        [optim]
        lr = 3e-3
        [schedule]
        kind = "constant"
        "#,
        // No checkpoints is the absent key (0 is an error).
        save = if save_every > 0 {
            format!("save_every = {save_every}")
        } else {
            String::new()
        },
        model = dir.join("base").display(),
        out = dir.join(out).display(),
        train = dir.join("train.jsonl").display(),
        eval = dir.join("eval.jsonl").display(),
    );
    toml::from_str(&text).unwrap()
}

/// These tests compare weights bit for bit; run concurrently in one process, libtorch's
/// shared state (thread pools, the global generator) made the comparison flaky, so they
/// take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(&dir.path().join("base"), 7).unwrap();
    write_planted_pairs(&dir.path().join("train.jsonl"), 256, 1);
    write_planted_pairs(&dir.path().join("eval.jsonl"), 64, 2);
    dir
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
