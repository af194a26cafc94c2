//! A pipeline stage's `nproc_per_node` on a tiny random model: a two-stage pipeline
//! whose SFT stage runs as two ranks (batch 2 each) trains to the weights of the same
//! pipeline run as one process (batch 4) — within 1e-5 max abs, with the same losses —
//! and the downstream stage reads it; `nproc_per_node` on a stage that is not a trainer
//! is an error at load naming the file, the stage and the key.

mod pipeline_support;

use std::path::{Path, PathBuf};

use pipeline_support::*;

/// An SFT stage (`batch` per rank, `nproc` ranks) and a DPO stage on its output.
fn two_stages(dir: &Path, name: &str, batch: usize, nproc: usize) -> (PathBuf, PathBuf) {
    let (model, sft, prefs) = setup(dir);
    let run = dir.join(name);
    let text = format!(
        r#"out = "{run}"

[[stages]]
name = "sft"
kind = "sft"
nproc_per_node = {nproc}
model = "{model}"
seed = 3
[stages.data]
train = "{sft}"
max_seq_len = 48
[stages.train]
batch_size = {batch}
max_steps = 6
log_every = 1
save_every = 3
[stages.optim]
lr = 1e-3

[[stages]]
name = "dpo"
kind = "dpo"
model = "stages.sft"
seed = 3
[stages.data]
train = "{prefs}"
max_seq_len = 32
[stages.train]
batch_size = 4
max_steps = 2
"#,
        run = run.display(),
        model = model.display(),
        sft = sft.display(),
        prefs = prefs.display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write pipeline");
    (path, run)
}

fn losses(dir: &Path) -> Vec<f64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("loss")?.as_f64())
        .collect()
}

fn max_weight_diff(a: &Path, b: &Path) -> f64 {
    let a = tch::Tensor::read_safetensors(a).expect("read weights a");
    let b: std::collections::HashMap<String, tch::Tensor> = tch::Tensor::read_safetensors(b)
        .expect("read weights b")
        .into_iter()
        .collect();
    assert_eq!(a.len(), b.len());
    a.iter()
        .map(|(name, t)| (t - &b[name]).abs().max().double_value(&[]))
        .fold(0.0, f64::max)
}

#[test]
fn an_sft_stage_on_two_ranks_trains_as_one_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (one_cfg, one) = two_stages(dir.path(), "one", 4, 1);
    let (two_cfg, two) = two_stages(dir.path(), "two", 2, 2);
    let env = [("OMP_NUM_THREADS", "1")];
    ok(&tiller(&["run", one_cfg.to_str().expect("utf-8")], &env));
    let out = ok(&tiller(&["run", two_cfg.to_str().expect("utf-8")], &env));
    assert!(out.contains("2 ranks (nproc_per_node)"), "{out}");
    let ran = statuses(&out);
    assert!(
        ran.len() == 2 && ran.iter().all(|(_, s)| s == "ran"),
        "{ran:?}"
    );

    let (la, lb) = (losses(&one.join("sft")), losses(&two.join("sft")));
    assert_eq!(la.len(), 6, "{la:?}");
    assert_eq!(la.len(), lb.len());
    for (a, b) in la.iter().zip(&lb) {
        assert!((a - b).abs() <= 1e-5 * a.abs(), "{la:?} vs {lb:?}");
    }
    let weights = |run: &Path| run.join("sft").join("model.safetensors");
    let diff = max_weight_diff(&weights(&one), &weights(&two));
    assert!(diff <= 1e-5, "SFT weights differ by {diff}");
    assert!(
        max_weight_diff(
            &dir.path().join("base").join("model.safetensors"),
            &weights(&one)
        ) > 1e-4,
        "the stage did not train"
    );
    // The manifest has the launched run's metrics; the next stage trained on its output.
    let m = manifest(&two.join("sft"));
    assert_eq!(m["metrics"]["steps"], 6.0, "{}", m["metrics"]);
    assert!(two.join("dpo").join("model.safetensors").exists());
    // A second run finds both stages up to date.
    let again = ok(&tiller(&["run", two_cfg.to_str().expect("utf-8")], &env));
    assert!(
        statuses(&again).iter().all(|(_, s)| s == "cached"),
        "{again}"
    );
}

#[test]
fn nproc_per_node_on_a_stage_that_is_not_a_trainer_is_an_error_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        "out = \"runs\"\n\n[[stages]]\nname = \"check\"\nkind = \"eval\"\nnproc_per_node = 2\n",
    )
    .expect("write");
    let out = tiller(&["run", path.to_str().expect("utf-8")], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{}:3", path.display()))
            && err.contains("stage \"check\"")
            && err.contains("`nproc_per_node = 2`")
            && err.contains("does not run data parallel"),
        "{err}"
    );
    std::fs::write(
        &path,
        "out = \"runs\"\n\n[[stages]]\nname = \"s\"\nkind = \"sft\"\nnproc_per_node = 0\n",
    )
    .expect("write");
    let out = tiller(&["run", path.to_str().expect("utf-8")], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("`nproc_per_node` must be a positive integer"),
        "{err}"
    );
}
