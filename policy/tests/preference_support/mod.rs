//! What the DPO and KTO training tests share: planted rows from random words, a tiny base
//! model with train and eval files beside it, the trainers' common TOML, and the
//! resume-equals-uninterrupted check.
#![allow(dead_code)] // each test file uses a part

use std::path::Path;

use tiller_model::testing::write_tiny_checkpoint;

/// A source of random lower-case words (deterministic for `seed`).
pub fn words(seed: u64) -> impl FnMut(usize) -> String {
    let mut rng = tiller_model::sampling::SplitMix64(seed);
    move |len| {
        (0..len)
            .map(|_| (b'a' + (rng.next_u64() % 26) as u8) as char)
            .collect()
    }
}

pub fn write_rows(path: &Path, rows: &[serde_json::Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// A temporary directory with `base/` (a tiny random model), `train.jsonl` and `eval.jsonl`.
pub fn setup(train: &[serde_json::Value], eval: &[serde_json::Value]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(&dir.path().join("base"), 7).unwrap();
    write_rows(&dir.path().join("train.jsonl"), train);
    write_rows(&dir.path().join("eval.jsonl"), eval);
    dir
}

/// The TOML both trainers read in these tests (β 0.1, 40 steps of 16, a reference cache in
/// `dir/cache`), writing to `dir/out`, with `extra` sections appended.
pub fn config_toml(dir: &Path, out: &str, extra: &str) -> String {
    format!(
        r#"
        model = "{model}"
        out = "{out}"
        seed = 3
        [data]
        train = "{train}"
        eval = "{eval}"
        max_seq_len = 64
        [loss]
        beta = 0.1
        [reference]
        cache_dir = "{cache}"
        [train]
        batch_size = 16
        max_steps = 40
        log_every = 5
        keep_checkpoints = 0
        [optim]
        lr = 3e-3
        [schedule]
        kind = "constant"
        {extra}
        "#,
        model = dir.join("base").display(),
        out = dir.join(out).display(),
        train = dir.join("train.jsonl").display(),
        eval = dir.join("eval.jsonl").display(),
        cache = dir.join("cache").display(),
    )
}

/// Runs 8 steps saving at 4 (`run(resume)` returns the losses), drops the final
/// checkpoint-8 from `out`, resumes from checkpoint-4: the last 4 losses are the same.
pub fn assert_resume_matches(out: &Path, mut run: impl FnMut(bool) -> Vec<f64>) {
    let full = run(false);
    assert_eq!(full.len(), 8, "{full:?}");
    std::fs::remove_dir_all(out.join("checkpoint-8")).unwrap();
    let resumed = run(true);
    assert_eq!(resumed, full[4..].to_vec());
}
