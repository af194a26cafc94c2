//! What the pipeline tests share: running the binary, a tiny model with its data, the
//! pipeline file they run, and readers for manifests and the run's status lines.
#![allow(dead_code)] // each test file uses a part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use tiller_model::testing::write_tiny_checkpoint;

const TILLER: &str = env!("CARGO_BIN_EXE_tiller");

/// The `tiller` command with `args` and `env`, not yet started (tests that kill it spawn it).
pub fn tiller_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(TILLER);
    cmd.args(args).env("TILLER_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn tiller(args: &[&str], env: &[(&str, &str)]) -> Output {
    tiller_command(args, env).output().expect("run tiller")
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "tiller failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn write_lines(path: &Path, rows: &[Value]) {
    let text: Vec<String> = rows.iter().map(Value::to_string).collect();
    std::fs::write(path, text.join("\n") + "\n").expect("write data");
}

/// A tiny base model, an SFT set and a preference set in `dir`.
pub fn setup(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let model = dir.join("base");
    write_tiny_checkpoint(&model, 11).expect("tiny checkpoint");
    let sft = dir.join("sft.jsonl");
    let chats: Vec<Value> = (0..12)
        .map(|i| {
            json!({"messages": [
                {"role": "user", "content": format!("What is {i} + 1?")},
                {"role": "assistant", "content": format!("{i} + 1 = {}.", i + 1)},
            ]})
        })
        .collect();
    write_lines(&sft, &chats);
    let prefs = dir.join("prefs.jsonl");
    write_lines(&prefs, &pairs(8));
    (model, sft, prefs)
}

pub fn pairs(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"prompt": format!("Say {i}."), "chosen": format!("{i}."), "rejected": "No."}))
        .collect()
}

pub fn pipeline(
    dir: &Path,
    run: &Path,
    model: &Path,
    sft: &Path,
    prefs: &Path,
    eval: bool,
) -> PathBuf {
    let mut text = format!(
        r#"out = "{run}"

[[stages]]
name = "sft"
kind = "sft"
model = "{model}"
seed = 3
[stages.data]
train = "{sft}"
max_seq_len = 48
[stages.train]
batch_size = 4
max_steps = 4
save_every = 2
[stages.optim]
lr = 1e-3

[[stages]]
name = "reward"
kind = "reward"
model = "{model}"
[stages.data]
train = "{prefs}"
max_seq_len = 32
[stages.train]
batch_size = 4
max_steps = 2

[[stages]]
name = "dpo"
kind = "dpo"
model = "stages.sft"
seed = 5
[stages.data]
train = "{prefs}"
eval = "{prefs}"
max_seq_len = 32
[stages.train]
batch_size = 2
max_steps = 6
save_every = 2
keep_checkpoints = 1
[stages.optim]
lr = 1e-3
"#,
        run = run.display(),
        model = model.display(),
        sft = sft.display(),
        prefs = prefs.display(),
    );
    if eval {
        // A short GRPO stage against the reward stage's model, then the evaluation.
        text.push_str(&format!(
            r#"
[[stages]]
name = "grpo"
kind = "grpo"
model = "stages.dpo"
seed = 7
[stages.rollout]
prompts = "{prefs}"
max_new_tokens = 4
[stages.reward]
model = "stages.reward"
[stages.grpo]
num_generations = 2
[stages.train]
batch_size = 2
max_steps = 2
save_every = 1
[stages.optim]
lr = 1e-3

[[stages]]
name = "eval"
kind = "eval"
model = "stages.grpo"
baseline = "{model}"
limit = 3
max_new_tokens = 4
"#,
            model = model.display(),
            prefs = prefs.display(),
        ));
    }
    let path = dir.join(format!(
        "{}.toml",
        run.file_name().and_then(|n| n.to_str()).unwrap_or("p")
    ));
    std::fs::write(&path, text).expect("write pipeline");
    path
}

pub fn manifest(dir: &Path) -> Value {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("manifest json")
}

/// Stage name → "ran" / "cached" / "resumed", from the run's closing table.
pub fn statuses(stdout: &str) -> Vec<(String, String)> {
    let table = stdout.split("done in").nth(1).unwrap_or("");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .filter(|(_, s)| ["ran", "cached", "resumed"].contains(&s.as_str()))
        .collect()
}

pub fn status_of<'a>(all: &'a [(String, String)], stage: &str) -> &'a str {
    all.iter()
        .find(|(n, _)| n == stage)
        .map_or("missing", |(_, s)| s.as_str())
}
