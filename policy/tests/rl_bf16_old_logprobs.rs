//! On the real default model in bf16, the cached one-token-at-a-time decoder and the full
//! forward pass round differently (an approximate KL of ~2e-3 per token between them). A
//! GRPO run with several updates per rollout must take its old log-probs from the full
//! forward, or the clipped ratio would read that rounding as a policy change. With a
//! learning rate too small to move bf16 weights the policy never changes, so the ratio of
//! every token is then exactly 1. Needs `scripts/setup.sh` (models/smollm2-135m-instruct).

use std::path::PathBuf;

use tiller_policy::rl::grpo::{self, GrpoConfig};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn bf16_old_logprobs_come_from_the_training_forward() {
    let model = root().join("models/smollm2-135m-instruct");
    assert!(
        model.join("model.safetensors").exists(),
        "{} is missing: run scripts/setup.sh first",
        model.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        model = "{model}"
        out = "{out}"
        dtype = "bf16"
        [rollout]
        prompts = "{prompts}"
        max_new_tokens = 12
        samples_every = 0
        [[reward.rules]]
        kind = "length"
        target_words = 5
        [grpo]
        num_generations = 2
        num_iterations = 2
        [train]
        batch_size = 2
        max_steps = 1
        [optim]
        lr = 1e-12
        "#,
        model = model.display(),
        out = dir.path().join("out").display(),
        prompts = root().join("datasets/prompts/train.jsonl").display(),
    );
    let cfg: GrpoConfig = toml::from_str(&text).unwrap();
    cfg.validate().unwrap();
    grpo::train(&cfg, false, &mut |_| {}).unwrap();
    let metrics = std::fs::read_to_string(cfg.out.join("metrics.jsonl")).unwrap();
    let row: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    let kl = row["policy/approxkl_avg"].as_f64().unwrap();
    let clipped = row["policy/clipfrac_avg"].as_f64().unwrap();
    assert!(
        kl < 1e-7,
        "approximate KL {kl} between the old and the unchanged policy"
    );
    assert_eq!(clipped, 0.0);
}
