//! GRPO and RLOO on a tiny random model: a planted rule reward (the fraction of `a`s in
//! the completion) rises by a clear margin within a few steps; an interrupted and resumed
//! run ends with the same weights as an uninterrupted one; metrics and samples are logged;
//! the old log-probs are the trained policy's own (exactly, with one update per rollout).

use std::path::Path;

use tch::{Device, Kind};
use tiller_model::testing::write_tiny_checkpoint;
use tiller_model::CausalLm;
use tiller_policy::rl::grpo::{self, GrpoConfig};
use tiller_policy::rl::rloo::{self, RlooConfig};
use tiller_reward::{FnReward, Reward, RewardInput};

fn planted_reward() -> Box<dyn Reward> {
    Box::new(FnReward {
        name: "fraction_of_a".into(),
        f: |r: &RewardInput| {
            let chars = r.completion.chars().count().max(1);
            r.completion.chars().filter(|&c| c == 'a').count() as f64 / chars as f64
        },
    })
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(&dir.path().join("base"), 5).unwrap();
    let rows: String = ["hello", "write", "tell me", "go", "abc", "more", "x", "why"]
        .iter()
        .map(|p| format!("{{\"prompt\": \"{p}\"}}\n"))
        .collect();
    std::fs::write(dir.path().join("prompts.jsonl"), rows).unwrap();
    dir
}

fn common(dir: &Path, out: &str, steps: u64, save_every: u64) -> String {
    format!(
        r#"
        model = "{model}"
        out = "{out}"
        seed = 9
        [rollout]
        prompts = "{prompts}"
        max_new_tokens = 8
        temperature = 1.0
        [train]
        batch_size = 4
        max_steps = {steps}
        log_every = 1
        {save}
        keep_checkpoints = 0
        [optim]
        lr = 2e-2
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
        prompts = dir.join("prompts.jsonl").display(),
    )
}

fn grpo_config(dir: &Path, out: &str, steps: u64, save_every: u64, extra: &str) -> GrpoConfig {
    let text = format!(
        "{}\n[grpo]\nnum_generations = 6\n{extra}",
        common(dir, out, steps, save_every)
    );
    let cfg: GrpoConfig = toml::from_str(&text).unwrap();
    cfg.validate().unwrap();
    cfg
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn grpo_raises_a_planted_reward() {
    let dir = setup();
    let cfg = grpo_config(
        dir.path(),
        "grpo",
        12,
        0,
        "beta = 0.02\nnum_iterations = 2\nmicro_batch_size = 10",
    );
    let summary = grpo::train_with(&cfg, Some(planted_reward()), false, &mut |_| {}).unwrap();
    let s = &summary.mean_scores;
    assert_eq!(s.len(), 12);
    let (before, after) = (mean(&s[..3]), mean(&s[9..]));
    assert!(
        after > before + 0.2,
        "mean reward {before:.3} -> {after:.3}: {s:?}"
    );
    let metrics = std::fs::read_to_string(cfg.out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 12);
    for key in [
        "objective/kl",
        "objective/entropy",
        "objective/rlhf_reward",
        "objective/scores",
        "objective/non_score_reward",
        "policy/approxkl_avg",
        "policy/clipfrac_avg",
        "loss/policy_avg",
        "reward",
        "reward_std",
        "completions/mean_length",
        "time/generation_s",
        "time/scoring_s",
        "time/training_s",
        "rollout/tokens_per_second",
    ] {
        assert!(
            metrics.contains(&format!("\"{key}\"")),
            "metrics lack {key}"
        );
    }
    let samples = std::fs::read_to_string(cfg.out.join("samples.jsonl")).unwrap();
    assert_eq!(samples.lines().count(), 12 * 4 * 6);
    CausalLm::load(&cfg.out, Device::Cpu, Kind::Float).unwrap();
}

#[test]
fn rloo_raises_a_planted_reward() {
    let dir = setup();
    let text = format!(
        "{}\n[rloo]\nnum_generations = 6\nbeta = 0.01\nnormalize_advantages = true\n",
        common(dir.path(), "rloo", 20, 0)
    );
    let cfg: RlooConfig = toml::from_str(&text).unwrap();
    cfg.validate().unwrap();
    let summary = rloo::train_with(&cfg, Some(planted_reward()), false, &mut |_| {}).unwrap();
    let s = &summary.mean_scores;
    let (before, after) = (mean(&s[..3]), mean(&s[17..]));
    assert!(
        after > before + 0.15,
        "mean reward {before:.3} -> {after:.3}: {s:?}"
    );
}

#[test]
fn a_resumed_grpo_run_ends_with_the_same_weights() {
    let dir = setup();
    let extra = "beta = 0.05\nnum_minibatches = 2";
    let full = grpo_config(dir.path(), "full", 4, 0, extra);
    grpo::train_with(&full, Some(planted_reward()), false, &mut |_| {}).unwrap();

    // The same run with checkpoints every 2 steps; then, as if it had died after step 2,
    // its last checkpoint is removed and it resumes from checkpoint-2.
    let first = grpo_config(dir.path(), "part", 4, 2, extra);
    grpo::train_with(&first, Some(planted_reward()), false, &mut |_| {}).unwrap();
    std::fs::remove_dir_all(first.out.join("checkpoint-4")).unwrap();
    let resumed = grpo::train_with(&first, Some(planted_reward()), true, &mut |_| {}).unwrap();
    assert_eq!(resumed.steps, 4);

    let a = CausalLm::load(&full.out, Device::Cpu, Kind::Float).unwrap();
    let b = CausalLm::load(&first.out, Device::Cpu, Kind::Float).unwrap();
    let (va, vb) = (a.vs.variables(), b.vs.variables());
    for (name, t) in &va {
        let diff = (t - &vb[name]).abs().max().double_value(&[]);
        assert!(diff <= 1e-6, "{name} differs by {diff}");
    }
    let metrics = std::fs::read_to_string(first.out.join("metrics.jsonl")).unwrap();
    let full_metrics = std::fs::read_to_string(full.out.join("metrics.jsonl")).unwrap();
    let scores = |m: &str| -> Vec<f64> {
        m.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["objective/scores"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(scores(&metrics), scores(&full_metrics));
}

/// Every logged value of `key` in a run's metrics.jsonl.
fn logged(out: &Path, key: &str) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[key].as_f64())
        .collect()
}

#[test]
fn one_update_per_rollout_trains_on_policy_with_a_ratio_of_exactly_one() {
    let dir = setup();
    let cfg = grpo_config(dir.path(), "on-policy", 3, 0, "beta = 0.0");
    grpo::train_with(&cfg, Some(planted_reward()), false, &mut |_| {}).unwrap();
    assert_eq!(logged(&cfg.out, "val/ratio"), vec![1.0; 3]);
    assert_eq!(logged(&cfg.out, "policy/approxkl_avg"), vec![0.0; 3]);
    assert_eq!(logged(&cfg.out, "policy/clipfrac_avg"), vec![0.0; 3]);
}
