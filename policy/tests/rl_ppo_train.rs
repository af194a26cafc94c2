//! PPO end to end on a tiny random model: a planted rule reward rises by a clear margin in
//! a few steps, and a run interrupted at a checkpoint and resumed ends with the same actor
//! and critic weights (and the same per-step scores) as an uninterrupted one.

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};
use tiller_model::testing::write_tiny_checkpoint;
use tiller_model::CausalLm;
use tiller_policy::rl::ppo::{train_with, PpoConfig, CRITIC_DIR};
use tiller_reward::{FnReward, RewardInput, RewardModel};

/// The fraction of the completion's characters that are ASCII lower-case letters: about
/// 10% for a random byte-level model, and easy to raise.
fn lowercase_reward() -> FnReward<impl Fn(&RewardInput) -> f64> {
    FnReward {
        name: "lowercase".into(),
        f: |r: &RewardInput| {
            let chars: Vec<char> = r.completion.chars().collect();
            let lower = chars.iter().filter(|c| c.is_ascii_lowercase()).count();
            lower as f64 / chars.len().max(1) as f64
        },
    }
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(&dir.path().join("policy"), 7).unwrap();
    let rows: String = (0..32)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({ "prompt": format!("question {i}?") })
            )
        })
        .collect();
    std::fs::write(dir.path().join("prompts.jsonl"), rows).unwrap();
    dir
}

fn config(dir: &Path, extra: &str) -> PpoConfig {
    let text = format!(
        r#"
        model = "{model}"
        out = "{out}"
        seed = 5
        [rollout]
        prompts = "{prompts}"
        max_new_tokens = 8
        temperature = 1.0
        samples_every = 2
        [reward]
        rules = [{{ kind = "json" }}]
        [ppo]
        epochs = 4
        num_mini_batches = 2
        micro_batch_size = 4
        kl = {{ kind = "fixed", coef = 0.01 }}
        [train]
        batch_size = 16
        max_steps = 12
        log_every = 1
        [optim]
        lr = 1e-2
        {extra}
        "#,
        model = dir.join("policy").display(),
        out = dir.join("run").display(),
        prompts = dir.join("prompts.jsonl").display(),
    );
    let config: PpoConfig = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    config
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn ppo_raises_a_planted_rule_reward() {
    let dir = setup();
    let cfg = config(dir.path(), "");
    let summary = train_with(&cfg, Some(Box::new(lowercase_reward())), false, &mut |_| {}).unwrap();
    assert_eq!(summary.steps, 12);
    let (before, after) = (
        mean(&summary.mean_scores[..3]),
        mean(&summary.mean_scores[9..]),
    );
    assert!(
        after > before + 0.3,
        "reward {before:.3} -> {after:.3}: {:?}",
        summary.mean_scores
    );
    // Metrics under TRL's names, one line per step; samples every other step (and step 1).
    let metrics = std::fs::read_to_string(cfg.out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 12);
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    for key in [
        "objective/kl",
        "objective/entropy",
        "objective/non_score_reward",
        "objective/rlhf_reward",
        "objective/scores",
        "policy/approxkl_avg",
        "policy/clipfrac_avg",
        "loss/policy_avg",
        "loss/value_avg",
        "val/clipfrac_avg",
        "val/ratio",
        "eps",
        "time/generation_s",
        "rollout/tokens_per_second",
    ] {
        assert!(last[key].is_number(), "{key} missing from {last}");
    }
    let samples = std::fs::read_to_string(cfg.out.join("samples.jsonl")).unwrap();
    assert_eq!(samples.lines().count(), 16 * 7); // steps 1, 2, 4, ..., 12
                                                 // The run directory holds the final actor and critic.
    assert!(cfg.out.join("model.safetensors").is_file());
    assert!(cfg.out.join(CRITIC_DIR).join("model.safetensors").is_file());
}

fn weights(dir: &Path) -> HashMap<String, Tensor> {
    let actor = CausalLm::load(dir, Device::Cpu, Kind::Float).unwrap();
    let critic = RewardModel::load(&dir.join(CRITIC_DIR), Device::Cpu, Kind::Float).unwrap();
    let mut all: HashMap<String, Tensor> = actor
        .vs
        .variables()
        .into_iter()
        .map(|(k, v)| (format!("actor.{k}"), v))
        .collect();
    all.extend(
        critic
            .vs
            .variables()
            .into_iter()
            .map(|(k, v)| (format!("critic.{k}"), v)),
    );
    all
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one() {
    let dir = setup();
    // The adaptive controller, so its state must survive the checkpoint too.
    let mut cfg = config(dir.path(), "");
    cfg.ppo.kl = tiller_policy::rl::kl_control::KlControlConfig::Adaptive {
        coef: 0.05,
        target: 0.5,
        horizon: 50.0,
    };
    cfg.train.max_steps = Some(4);
    cfg.train.save_every = Some(2);
    cfg.train.batch_size = 8;
    let full = train_with(&cfg, Some(Box::new(lowercase_reward())), false, &mut |_| {}).unwrap();
    let full_weights = weights(&cfg.out);
    let full_metrics = std::fs::read_to_string(cfg.out.join("metrics.jsonl")).unwrap();
    std::fs::remove_dir_all(cfg.out.join("checkpoint-4")).unwrap();

    let resumed = train_with(&cfg, Some(Box::new(lowercase_reward())), true, &mut |_| {}).unwrap();
    assert_eq!(resumed.mean_scores, full.mean_scores[2..].to_vec());
    let resumed_weights = weights(&cfg.out);
    assert_eq!(resumed_weights.len(), full_weights.len());
    for (name, t) in &full_weights {
        assert!(
            resumed_weights[name].equal(t),
            "{name} differs after resume"
        );
    }
    // metrics.jsonl reads as one run (timings aside).
    let resumed_metrics = std::fs::read_to_string(cfg.out.join("metrics.jsonl")).unwrap();
    let kls = |text: &str| -> Vec<f64> {
        text.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["objective/kl_coef"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(kls(&resumed_metrics), kls(&full_metrics));
}

#[test]
fn the_example_config_parses_and_bad_input_names_file_and_key() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ppo.toml");
    let config = PpoConfig::from_file(&example).unwrap();
    assert_eq!(config.ppo.epochs, 2);
    assert_eq!(config.ppo.gamma, 1.0);

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&example).unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text.replace("vf_coef = 0.1", "vf_coeff = 0.1")).unwrap();
    let err = PpoConfig::from_file(&bad).unwrap_err().to_string();
    assert!(
        err.contains("bad.toml") && err.contains("vf_coeff"),
        "{err}"
    );
    std::fs::write(&bad, text.replace("cliprange = 0.2", "cliprange = -1.0")).unwrap();
    let err = PpoConfig::from_file(&bad).unwrap_err().to_string();
    assert!(
        err.contains("bad.toml") && err.contains("ppo.cliprange"),
        "{err}"
    );
}
