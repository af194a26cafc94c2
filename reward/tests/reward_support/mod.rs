//! What the reward training tests (full, LoRA and the refusal classifier) share: seeded
//! random words, planted preference pairs, a tiny base model beside them, the training
//! TOML, and the lock that makes the bit-for-bit tests take turns.
#![allow(dead_code)] // each test file uses a part

use std::path::Path;

use tiller_model::testing::write_tiny_checkpoint;
use tiller_reward::RewardTrainConfig;

/// Random lowercase words of a given length, the same ones for the same `seed`: the
/// filler around a planted signal.
pub fn random_words(seed: u64) -> impl FnMut(usize) -> String {
    let mut rng = tiller_model::sampling::SplitMix64(seed);
    move |len| {
        (0..len)
            .map(|_| (b'a' + (rng.next_u64() % 26) as u8) as char)
            .collect()
    }
}

/// Pairs whose chosen answer carries a `#` and whose rejected answer does not.
pub fn write_planted_pairs(path: &Path, n: usize, seed: u64) {
    let mut word = random_words(seed);
    let mut lines = String::new();
    for _ in 0..n {
        let prompt = word(6);
        let (a, b) = (word(8), word(8));
        let row = serde_json::json!({"prompt": prompt, "chosen": format!("{a} #"), "rejected": format!("{b} x")});
        lines.push_str(&format!("{row}\n"));
    }
    std::fs::write(path, lines).unwrap();
}

/// A temporary directory with `base/` (a tiny random model) and planted train (256) and
/// eval (64) pairs.
pub fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(&dir.path().join("base"), 7).unwrap();
    write_planted_pairs(&dir.path().join("train.jsonl"), 256, 1);
    write_planted_pairs(&dir.path().join("eval.jsonl"), 64, 2);
    dir
}

/// A reward run on `dir`'s data into `dir/out`: `steps` steps of 16 at `lr`, checkpoints
/// every `save_every` steps (0: none), with `extra` sections appended.
pub fn config(
    dir: &Path,
    out: &str,
    (steps, save_every): (u64, u64),
    lr: f64,
    extra: &str,
) -> RewardTrainConfig {
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
        lr = {lr:e}
        [schedule]
        kind = "constant"
        {extra}
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

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
