//! `tiller reward train`, `tiller dpo` and `tiller kto` data parallel on CPU (Gloo over loopback) with a
//! tiny random model: `--nproc-per-node 2` with batch B/2 equals one process with batch B
//! — loss curves within 1e-5 relative and final weights within 1e-5 max abs after 6
//! steps, with and without grad_accum = 2 — and rank 0 alone writes the run directory
//! (DPO's reference cache too: computed sharded, gathered into one file).

mod distributed_support;

use std::path::{Path, PathBuf};

use distributed_support::*;
use tiller_model::testing::write_tiny_checkpoint;

/// Preference row `i` (lengths vary with `i`).
fn preference_row(i: usize) -> serde_json::Value {
    serde_json::json!({
        "prompt": format!("Pick {i}{}", "?".repeat(i % 4)),
        "chosen": format!("{i} is right{}", ".".repeat(i % 3)),
        "rejected": format!("no {}", "x ".repeat(1 + i % 5)),
    })
}

/// Unpaired KTO row `i`: desirable and undesirable mixed unevenly, so a micro-batch's
/// share on one rank can lack a side.
fn unpaired_row(i: usize) -> serde_json::Value {
    let good = i % 3 != 0;
    serde_json::json!({
        "prompt": format!("Pick {i}{}", "?".repeat(i % 4)),
        "completion": if good {
            format!("{i} is right{}", ".".repeat(i % 3))
        } else {
            format!("no {}", "x ".repeat(1 + i % 5))
        },
        "label": good,
    })
}

/// A tiny model and 24 rows (`row(i)`) in `dir`.
fn setup(dir: &Path, row: fn(usize) -> serde_json::Value) -> (PathBuf, PathBuf) {
    let model = dir.join("model");
    write_tiny_checkpoint(&model, 11).expect("tiny checkpoint");
    let data = dir.join("rows.jsonl");
    let rows: Vec<String> = (0..24).map(|i| row(i).to_string()).collect();
    std::fs::write(&data, rows.join("\n")).expect("write data");
    (model, data)
}

/// A run of `trainer` (its own `[loss]` lines in `extra`).
#[allow(clippy::too_many_arguments)]
fn write_config(
    dir: &Path,
    name: &str,
    model: &Path,
    data: &Path,
    batch: usize,
    accum: usize,
    steps: u64,
    extra: &str,
) -> (PathBuf, PathBuf) {
    let out = dir.join(name);
    let config = format!(
        r#"model = "{model}"
out = "{out}"
seed = 5

[data]
train = "{data}"
eval = "{data}"
max_seq_len = 64

[train]
batch_size = {batch}
grad_accum = {accum}
max_steps = {steps}
log_every = 1
eval_every = 3
save_every = 3

[optim]
lr = 1e-3
{extra}
"#,
        model = model.display(),
        out = out.display(),
        data = data.display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).expect("write config");
    (path, out)
}

/// One process with batch 4 against two ranks with batch 2 each, `command` being the
/// trainer's subcommand words.
fn two_ranks_equal_one_process(command: &[&str], extra: &str, accum: usize) {
    let row = match command[0] {
        "kto" => unpaired_row,
        _ => preference_row,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path(), row);
    let steps = 6;
    let (one_cfg, one) = write_config(dir.path(), "one", &model, &data, 4, accum, steps, extra);
    let (two_cfg, two) = write_config(dir.path(), "two", &model, &data, 2, accum, steps, extra);
    let log = train_one_then_two(command, &one_cfg, &two_cfg);
    assert!(
        log.contains(&format!(
            "steps of {} examples (batch_size 2 × grad_accum {accum} × 2 processes)",
            4 * accum
        )),
        "{log}"
    );

    let a = assert_trained_alike(&one, &two, steps as usize, 0.0);
    // The losses moved: the comparison is of training, not of six copies of one number.
    assert!(a.iter().any(|l| l.1 != a[0].1), "{a:?}");
    let metrics = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).expect("metrics");
    // Evaluation sums over both ranks' shares: the same held-out loss.
    let eval = |d: &Path| -> Vec<f64> {
        metrics(d)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get("eval_loss")?.as_f64())
            .collect()
    };
    let (ea, eb) = (eval(&one), eval(&two));
    assert_eq!(ea.len(), eb.len());
    assert!(!ea.is_empty());
    for (x, y) in ea.iter().zip(&eb) {
        assert!((x - y).abs() <= 1e-5 * x.abs(), "eval_loss {x} vs {y}");
    }
}

#[test]
fn reward_two_ranks_equal_one_process() {
    two_ranks_equal_one_process(&["reward", "train"], "", 1);
}

#[test]
fn reward_two_ranks_equal_one_process_with_grad_accum() {
    two_ranks_equal_one_process(&["reward", "train"], "", 2);
}

#[test]
fn dpo_two_ranks_equal_one_process() {
    two_ranks_equal_one_process(&["dpo"], "[loss]\nbeta = 0.1\n", 1);
}

#[test]
fn dpo_two_ranks_equal_one_process_with_grad_accum() {
    two_ranks_equal_one_process(&["dpo"], "[loss]\nbeta = 0.1\n", 2);
}

#[test]
fn kto_two_ranks_equal_one_process() {
    // z0, the KL estimate, is the mean over the whole micro-batch's KL pairs.
    two_ranks_equal_one_process(&["kto"], "[loss]\nbeta = 0.1\n", 1);
}

#[test]
fn kto_two_ranks_equal_one_process_with_grad_accum() {
    two_ranks_equal_one_process(&["kto"], "[loss]\nbeta = 0.1\n", 2);
}

#[test]
fn dpo_batch_level_losses_two_ranks_equal_one_process() {
    // NLL(yw) is a token mean over the whole micro-batch: the normaliser is summed over
    // both ranks, with and without accumulation.
    for (extra, accum) in [
        ("[loss]\nkind = \"orpo\"\nbeta = 0.1\n", 1),
        ("[loss]\nkind = \"cpo\"\nbeta = 0.1\n", 2),
        ("[loss]\nbeta = 0.1\nrpo_alpha = 0.5\n", 2),
        // bco_pair's running mean of rewards, updated from both ranks' sums.
        ("[loss]\nkind = \"bco_pair\"\nbeta = 0.1\n", 2),
    ] {
        two_ranks_equal_one_process(&["dpo"], extra, accum);
    }
}
