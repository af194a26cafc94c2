//! Rollouts on a tiny random model: the log-probs kept at sampling time equal a fresh
//! forward pass's log-probs of the same tokens (left-padded prompts of different lengths,
//! completions of different lengths), entropies are sane, and prompt files load with
//! errors naming the row.

use tch::{Device, Kind};
use tiller_data::Tokenizer;
use tiller_model::testing::write_tiny_checkpoint;
use tiller_model::{CausalLm, GenerationConfig, Sampling};
use tiller_policy::rl::config::RolloutConfig;
use tiller_policy::rl::rollout::{
    apply_missing_eos_penalty, completion_logprobs, load_prompts, rollout, truncate_samples_log,
    RolloutBatch,
};
use tiller_reward::FnReward;

fn setup(rows: &str) -> (tempfile::TempDir, RolloutConfig) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(&dir.path().join("model"), 11).unwrap();
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(&prompts, rows).unwrap();
    let config: RolloutConfig = toml::from_str(&format!(
        "prompts = \"{}\"\nmax_new_tokens = 12\ntemperature = 0.7",
        prompts.display()
    ))
    .unwrap();
    (dir, config)
}

const PROMPTS: &str = concat!(
    "{\"prompt\": \"hi\"}\n",
    "{\"prompt\": [{\"role\": \"user\", \"content\": \"a much longer prompt than the first one\"}]}\n",
    "{\"prompt\": \"medium length\"}\n",
);

#[test]
fn rollout_logprobs_equal_a_fresh_forward_pass() {
    let (dir, config) = setup(PROMPTS);
    let model_dir = dir.path().join("model");
    let tokenizer = Tokenizer::from_dir(&model_dir).unwrap();
    let lm = CausalLm::load(&model_dir, Device::Cpu, Kind::Float).unwrap();
    let prompts = load_prompts(&config, &tokenizer).unwrap();
    assert_eq!(prompts.len(), 3);
    assert_ne!(prompts[0].ids.len(), prompts[1].ids.len());

    let mut generation = config.generation(&tokenizer, &lm.config, 5);
    generation.sampling = Sampling::Random {
        temperature: 0.7,
        top_k: Some(50),
        top_p: Some(0.9),
    };
    // Stop on many byte tokens so completions end at different lengths.
    generation.stop_token_ids.extend(97..110);
    let reward = FnReward {
        name: "length".into(),
        f: |r: &tiller_reward::RewardInput| r.completion.len() as f64,
    };
    let out = rollout(
        &lm,
        &tokenizer,
        &prompts,
        &[0, 1, 2],
        3,
        &generation,
        4,
        0,
        &reward,
    )
    .unwrap();
    assert_eq!(out.samples.len(), 9);
    let lengths: Vec<usize> = out.samples.iter().map(|s| s.completion_ids.len()).collect();
    assert!(
        lengths.iter().any(|&n| n != lengths[0]),
        "completions should differ in length: {lengths:?}"
    );
    for s in &out.samples {
        assert_eq!(s.score, s.text.len() as f64);
        assert_eq!(s.old_logprobs.len(), s.completion_ids.len());
    }
    assert_eq!(out.generated_tokens, lengths.iter().sum::<usize>());

    let rows: Vec<_> = out.samples.iter().collect();
    let batch = RolloutBatch::new(&rows, tokenizer.pad_id, Device::Cpu).unwrap();
    let stats = tch::no_grad(|| completion_logprobs(&lm.model, &batch, 0.7, true)).unwrap();
    let mask = &batch.completion_mask;
    let diff = ((&stats.logprobs - &batch.old_logprobs).abs() * mask)
        .max()
        .double_value(&[]);
    assert!(diff <= 1e-4, "max |rollout − forward| log-prob = {diff}");
    // Padding positions are exactly zero; entropies are positive and at most ln(V).
    let pad = (stats.logprobs.abs() * (-mask + 1.0))
        .sum(Kind::Float)
        .double_value(&[]);
    assert_eq!(pad, 0.0);
    let entropy = stats.entropy.unwrap();
    let min = (&entropy + (-mask + 1.0) * 1e9).min().double_value(&[]);
    let max = entropy.max().double_value(&[]);
    assert!(
        min > 0.0 && max <= (259f64).ln() + 1e-4,
        "entropy in [{min}, {max}]"
    );

    // The same seed samples the same completions whatever the chunking.
    let again = rollout(
        &lm,
        &tokenizer,
        &prompts,
        &[0, 1, 2],
        3,
        &generation,
        0,
        0,
        &reward,
    )
    .unwrap();
    for (a, b) in out.samples.iter().zip(&again.samples) {
        assert_eq!(a.completion_ids, b.completion_ids);
    }
    // ... and whatever the split across ranks: the rank holding prompts 1 and 2 of the
    // step starts at row 3 and samples what one process samples there.
    let share = rollout(
        &lm,
        &tokenizer,
        &prompts,
        &[1, 2],
        3,
        &generation,
        0,
        3,
        &reward,
    )
    .unwrap();
    for (a, b) in out.samples[3..].iter().zip(&share.samples) {
        assert_eq!(a.completion_ids, b.completion_ids);
    }
    // A different seed samples differently.
    let other = GenerationConfig {
        seed: 6,
        ..generation.clone()
    };
    let third = rollout(
        &lm,
        &tokenizer,
        &prompts,
        &[0, 1, 2],
        3,
        &other,
        0,
        0,
        &reward,
    )
    .unwrap();
    assert!(out
        .samples
        .iter()
        .zip(&third.samples)
        .any(|(a, b)| a.completion_ids != b.completion_ids));
}

#[test]
fn logprobs_carry_gradients_and_missing_eos_is_penalized() {
    let (dir, config) = setup("{\"prompt\": \"abc\"}\n");
    let model_dir = dir.path().join("model");
    let tokenizer = Tokenizer::from_dir(&model_dir).unwrap();
    let lm = CausalLm::load(&model_dir, Device::Cpu, Kind::Float).unwrap();
    let prompts = load_prompts(&config, &tokenizer).unwrap();
    let generation = config.generation(&tokenizer, &lm.config, 1);
    let reward = FnReward {
        name: "one".into(),
        f: |_: &tiller_reward::RewardInput| 1.0,
    };
    let mut out = rollout(
        &lm,
        &tokenizer,
        &prompts,
        &[0],
        2,
        &generation,
        0,
        0,
        &reward,
    )
    .unwrap();
    // A random tiny model almost never samples EOS within 12 tokens.
    let truncated = out.samples.iter().filter(|s| s.truncated()).count();
    apply_missing_eos_penalty(&mut out.samples, 0.5);
    let penalized = out.samples.iter().filter(|s| s.score == 0.5).count();
    assert_eq!(penalized, truncated);
    let rows: Vec<_> = out.samples.iter().collect();
    let batch = RolloutBatch::new(&rows, tokenizer.pad_id, Device::Cpu).unwrap();
    let stats = completion_logprobs(&lm.model, &batch, 0.7, false).unwrap();
    assert!(stats.entropy.is_none());
    stats.logprobs.sum(Kind::Float).backward();
    let grad = lm.model.embed_tokens.grad();
    assert!(grad.defined() && grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn a_bad_prompt_row_names_the_file_line_and_field() {
    let (dir, config) = setup("{\"prompt\": \"ok\"}\n{\"prompt\": 3}\n");
    let tokenizer = Tokenizer::from_dir(&dir.path().join("model")).unwrap();
    let err = load_prompts(&config, &tokenizer).unwrap_err().to_string();
    assert!(
        err.contains("prompts.jsonl") && err.contains('2') && err.contains("prompt"),
        "{err}"
    );
}

#[test]
fn a_resumed_samples_log_keeps_earlier_steps_and_names_a_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("samples.jsonl");
    // Nothing logged yet: nothing to drop.
    truncate_samples_log(&path, 3).unwrap();
    assert!(!path.exists());
    // Steps after 2 go, and so does the torn last line of a killed run.
    let rows = "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n{\"step\":3,\"compl";
    std::fs::write(&path, rows).unwrap();
    truncate_samples_log(&path, 2).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"step\":1}\n{\"step\":2}\n"
    );
    // A complete line that does not read is an error naming the file and line.
    std::fs::write(&path, "{\"step\":1}\nnot json\n{\"step\":2}\n").unwrap();
    let err = truncate_samples_log(&path, 2).unwrap_err().to_string();
    assert!(
        err.contains("samples.jsonl") && err.contains("line 2"),
        "{err}"
    );
    std::fs::write(&path, "{\"step\":\"one\"}\n").unwrap();
    let err = truncate_samples_log(&path, 2).unwrap_err().to_string();
    assert!(err.contains("line 1") && err.contains("step"), "{err}");
    // A read error other than a missing file is not swallowed.
    let err = truncate_samples_log(dir.path(), 2).unwrap_err().to_string();
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}
