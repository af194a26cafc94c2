//! `tiller sft` end to end on a tiny random model: a run killed with SIGKILL and resumed
//! ends bit-identical to an uninterrupted one; the NaN guard stops before any checkpoint;
//! LoRA runs write a merged HF directory or a PEFT adapter that loads as a model.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tch::{Device, Kind};
use tiller_model::testing::{tiny_config, write_tiny_checkpoint, write_tiny_tokenizer};
use tiller_model::CausalLm;

const TILLER: &str = env!("CARGO_BIN_EXE_tiller");

/// A tiny model and a small chat data set in `dir`.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let model = dir.join("model");
    write_tiny_checkpoint(&model, 7).expect("tiny checkpoint");
    let data = dir.join("train.jsonl");
    let rows: Vec<String> = (0..24)
        .map(|i| {
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("What is {i} + {i}?")},
                {"role": "assistant", "content": format!("{i} + {i} = {}.", 2 * i)},
            ]})
            .to_string()
        })
        .collect();
    std::fs::write(&data, rows.join("\n")).expect("write data");
    (model, data)
}

fn write_config(
    dir: &Path,
    model: &Path,
    data: &Path,
    out: &Path,
    max_steps: u64,
    extra: &str,
) -> PathBuf {
    let config = format!(
        r#"model = "{}"
out = "{}"
seed = 3

[data]
train = "{}"
eval = "{}"
max_seq_len = 64
collation = "padding_free"

[train]
batch_size = 4
grad_accum = 2
max_steps = {max_steps}
log_every = 5
eval_every = 50
save_every = 10
keep_checkpoints = 2

[optim]
lr = 1e-3
weight_decay = 0.01

[schedule]
kind = "cosine"
warmup_steps = 5
{extra}"#,
        model.display(),
        out.display(),
        data.display(),
        data.display()
    );
    let path = dir.join(format!(
        "sft-{}.toml",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("run")
    ));
    std::fs::write(&path, config).expect("write config");
    path
}

fn tiller(args: &[&str]) -> Command {
    let mut cmd = Command::new(TILLER);
    cmd.args(args)
        .env("TILLER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn run_ok(args: &[&str]) {
    let out = tiller(args).output().expect("spawn tiller");
    assert!(
        out.status.success(),
        "tiller {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn train_losses(metrics: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(metrics)
        .expect("metrics.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["step"].as_u64()?, v.get("loss")?.as_f64()?)))
        .collect()
}

fn kill_and_resume_matches_uninterrupted(extra: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path());
    let steps = 100;
    let (full, killed) = (dir.path().join("full"), dir.path().join("killed"));
    let full_config = write_config(dir.path(), &model, &data, &full, steps, extra);
    let killed_config = write_config(dir.path(), &model, &data, &killed, steps, extra);
    run_ok(&["sft", "--config", full_config.to_str().expect("utf-8")]);

    let mut child = tiller(&["sft", "--config", killed_config.to_str().expect("utf-8")])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while !killed.join("checkpoint-20").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint written"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let still_running = child.try_wait().expect("try_wait").is_none();
    child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    let _ = child.wait();
    assert!(
        still_running,
        "the run finished before it could be killed; raise the step count"
    );
    assert!(
        !killed.join("model.safetensors").exists(),
        "killed run must not have finished"
    );

    run_ok(&[
        "sft",
        "--config",
        killed_config.to_str().expect("utf-8"),
        "--resume",
    ]);
    let a = std::fs::read(full.join("model.safetensors")).expect("uninterrupted weights");
    let b = std::fs::read(killed.join("model.safetensors")).expect("resumed weights");
    assert!(a == b, "resumed weights differ from the uninterrupted run");
    assert_eq!(
        train_losses(&full.join("metrics.jsonl")),
        train_losses(&killed.join("metrics.jsonl"))
    );
}

#[test]
fn killed_and_resumed_full_run_is_bit_identical() {
    kill_and_resume_matches_uninterrupted("");
}

#[test]
fn killed_and_resumed_lora_run_with_dropout_is_bit_identical() {
    kill_and_resume_matches_uninterrupted("\n[lora]\nr = 4\nalpha = 8\ndropout = 0.1\ntarget_modules = [\"q_proj\", \"v_proj\", \"up_proj\"]\n");
}

#[test]
fn non_finite_loss_stops_before_any_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, data) = setup(dir.path());
    let model = dir.path().join("nan-model");
    let lm = CausalLm::random(&tiny_config(), Device::Cpu, Kind::Float, 1);
    let _ = tch::no_grad(|| lm.model.embed_tokens.shallow_clone().fill_(f64::NAN));
    lm.save(&model, None).expect("save");
    write_tiny_tokenizer(&model).expect("tokenizer");
    let out = dir.path().join("out");
    let config = write_config(dir.path(), &model, &data, &out, 20, "");
    let result = tiller(&["sft", "--config", config.to_str().expect("utf-8")])
        .output()
        .expect("spawn");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert!(stderr.contains("step 1: loss is NaN"), "{stderr}");
    assert!(!out.join("checkpoint-10").exists() && !out.join("model.safetensors").exists());
}

#[test]
fn lora_runs_write_loadable_models() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path());
    for merge in [true, false] {
        let out = dir.path().join(format!("lora-{merge}"));
        let extra = format!("\n[lora]\nr = 4\nalpha = 8\nmerge = {merge}\n");
        let config = write_config(dir.path(), &model, &data, &out, 12, &extra);
        run_ok(&["sft", "--config", config.to_str().expect("utf-8")]);
        assert_eq!(out.join("config.json").exists(), merge);
        assert_eq!(out.join("adapter_config.json").exists(), !merge);
        assert!(out.join("sft_config.toml").exists() && out.join("metrics.jsonl").exists());
        CausalLm::load(&out, Device::Cpu, Kind::Float).expect("output loads as a model");
        run_ok(&[
            "generate",
            "--model",
            out.to_str().expect("utf-8"),
            "--prompt",
            "What is 2 + 2?",
            "--max-new-tokens",
            "4",
        ]);
    }
}

#[test]
fn unknown_config_keys_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path());
    let config = write_config(
        dir.path(),
        &model,
        &data,
        &dir.path().join("out"),
        5,
        "warmup_ratio = 0.1\n",
    );
    let result = tiller(&["sft", "--config", config.to_str().expect("utf-8")])
        .output()
        .expect("spawn");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert!(
        stderr.contains("unknown field `warmup_ratio`") && stderr.contains("sft-out.toml"),
        "{stderr}"
    );
}

#[test]
fn without_a_terminal_a_progress_line_is_logged_every_log_every_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path());
    let out = dir.path().join("logged");
    let config = write_config(dir.path(), &model, &data, &out, 12, "");
    // stderr into a file, as a pipeline stage or `nohup` leaves it.
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("create log");
    let status = Command::new(TILLER)
        .args(["sft", "--config", config.to_str().expect("utf-8")])
        .env("TILLER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .expect("spawn tiller");
    let log = std::fs::read_to_string(&log_path).expect("read log");
    assert!(status.success(), "{log}");
    // log_every = 5, and the last step.
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("sft step ")).collect();
    let steps: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split("sft step ").nth(1)?.split(':').next())
        .collect();
    assert_eq!(steps, ["5/12", "10/12", "12/12"], "{log}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("loss ") && l.contains("ETA")),
        "{log}"
    );
    assert!(
        log.contains("batch_size 4 × grad_accum 2 × 1 process"),
        "the global batch is not printed at start: {log}"
    );
}

#[test]
fn a_config_that_cannot_run_is_an_error_naming_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path());
    let out = dir.path().join("zero");
    let config = write_config(dir.path(), &model, &data, &out, 5, "");
    let text = std::fs::read_to_string(&config)
        .expect("read config")
        .replace("grad_accum = 2", "grad_accum = 0");
    std::fs::write(&config, text).expect("write config");
    let result = tiller(&["sft", "--config", config.to_str().expect("utf-8")])
        .output()
        .expect("spawn");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert!(
        stderr.contains("sft-zero.toml") && stderr.contains("train.grad_accum = 0"),
        "{stderr}"
    );
    assert!(
        !out.exists(),
        "a run directory was created for a config that cannot run"
    );
}
