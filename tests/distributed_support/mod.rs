//! What the data-parallel tests share: running `tiller` with the distributed timeouts
//! short, reading a run's losses and files, comparing weights, and killing a run.

// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const TILLER: &str = env!("CARGO_BIN_EXE_tiller");

pub fn tiller(args: &[&str]) -> Command {
    let mut cmd = Command::new(TILLER);
    cmd.args(args)
        .env("TILLER_LOG", "info")
        .env("OMP_NUM_THREADS", "1")
        .env("TILLER_DIST_TIMEOUT", "30")
        .env("TILLER_DIST_INIT_TIMEOUT", "30")
        .env_remove("RANK")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn tiller");
    assert!(out.status.success(), "tiller failed: {}", text(&out));
    text(&out)
}

/// Runs `tiller <command> --config <config> <more>` and returns its output.
pub fn train(command: &[&str], config: &Path, more: &[&str]) -> String {
    let mut args = command.to_vec();
    args.extend(["--config", config.to_str().expect("utf-8")]);
    args.extend(more);
    run_ok(&mut tiller(&args))
}

/// Trains from `one` as one process, then from `two` as two ranks (`--nproc-per-node 2`),
/// checking that both ranks' tagged output came through; returns the two-rank log.
pub fn train_one_then_two(command: &[&str], one: &Path, two: &Path) -> String {
    train(command, one, &[]);
    let log = train(command, two, &["--nproc-per-node", "2"]);
    assert!(
        log.contains("[rank 0]") && log.contains("[rank 1]"),
        "{log}"
    );
    log
}

pub fn losses(out: &Path) -> Vec<(u64, f64)> {
    steps_of(out, "loss")
}

/// `(step, key)` of every metrics line that has `key`.
pub fn steps_of(out: &Path, key: &str) -> Vec<(u64, f64)> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["step"].as_u64()?, v.get(key)?.as_f64()?)))
        .collect()
}

pub fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| {
            p.strip_prefix(dir)
                .expect("under dir")
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    names
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read run dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The largest absolute difference between two safetensors files' tensors.
pub fn max_weight_diff(a: &Path, b: &Path) -> f64 {
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

/// Waits until `out/metrics.jsonl` has `n` lines (the run is under way).
pub fn wait_for_steps(out: &Path, n: usize, child: &mut Child) {
    let started = Instant::now();
    loop {
        let lines =
            std::fs::read_to_string(out.join("metrics.jsonl")).map_or(0, |t| t.lines().count());
        if lines >= n {
            return;
        }
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the run ended before it could be interrupted"
        );
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn sigkill(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// The processes `pid` started (a launcher's ranks).
pub fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .expect("the launcher's children")
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Waits (at most 10 s) until every process of `pids` has exited (or is a zombie).
pub fn wait_until_gone(pids: &[u32]) {
    let started = Instant::now();
    while pids
        .iter()
        .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
    {
        let zombie = pids.iter().all(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"))
        });
        if zombie {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "processes {pids:?} outlived their launcher"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_with_deadline(child: Child, limit: Duration) -> Output {
    let started = Instant::now();
    let out = child.wait_with_output().expect("wait");
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    out
}

/// `key` of every metrics line that has it.
pub fn series(out: &Path, key: &str) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get(key)?.as_f64())
        .collect()
}

/// The gradient norms two runs logged, step by step, within 1e-5 relative: AdamW hides a
/// gradient's overall scale from the weights, the norm does not.
pub fn assert_same_grad_norms(a: &Path, b: &Path) {
    let (ga, gb) = (series(a, "grad_norm"), series(b, "grad_norm"));
    assert_eq!(ga.len(), gb.len());
    assert!(!ga.is_empty());
    for (x, y) in ga.iter().zip(&gb) {
        assert!(
            (x - y).abs() <= 1e-5 * x.abs(),
            "grad_norm {ga:?} vs {gb:?}"
        );
    }
}

/// One process (`one`) and two ranks (`two`) trained alike: `steps` logged steps at the
/// same step numbers, losses within 1e-5 relative (plus `loss_abs` absolute, for a loss
/// that is zero by construction), the same grad norms, final weights within 1e-5 max abs,
/// and — rank 0 alone writing — the same files but the configs (named after each run)
/// and as many metrics lines (a second writer would duplicate or interleave them).
/// Returns the one-process losses.
pub fn assert_trained_alike(
    one: &Path,
    two: &Path,
    steps: usize,
    loss_abs: f64,
) -> Vec<(u64, f64)> {
    assert_trained_alike_by(one, two, steps, loss_abs, "loss")
}

/// [`assert_trained_alike`] with the loss logged under `loss_key` (PPO's
/// `loss/policy_avg`, which TRL logs instead of a `loss`).
pub fn assert_trained_alike_by(
    one: &Path,
    two: &Path,
    steps: usize,
    loss_abs: f64,
    loss_key: &str,
) -> Vec<(u64, f64)> {
    assert_trained_alike_within(one, two, steps, loss_abs, loss_key, WEIGHTS_ABS)
}

/// How far (max abs) the final weights of one process and two ranks may be apart.
pub const WEIGHTS_ABS: f64 = 1e-5;

/// [`assert_trained_alike_by`] with the final weights within `weights_abs`.
pub fn assert_trained_alike_within(
    one: &Path,
    two: &Path,
    steps: usize,
    loss_abs: f64,
    loss_key: &str,
    weights_abs: f64,
) -> Vec<(u64, f64)> {
    let (a, b) = (steps_of(one, loss_key), steps_of(two, loss_key));
    assert_eq!(a.len(), steps, "{a:?}");
    assert_eq!(
        a.iter().map(|l| l.0).collect::<Vec<_>>(),
        b.iter().map(|l| l.0).collect::<Vec<_>>()
    );
    for ((step, la), (_, lb)) in a.iter().zip(&b) {
        assert!(
            (la - lb).abs() <= 1e-5 * la.abs() + loss_abs,
            "step {step}: one process {la}, two ranks {lb}"
        );
    }
    assert_same_grad_norms(one, two);
    let diff = max_weight_diff(
        &one.join("model.safetensors"),
        &two.join("model.safetensors"),
    );
    assert!(diff <= weights_abs, "final weights differ by {diff}");
    let strip = |names: Vec<String>| -> Vec<String> {
        names
            .into_iter()
            .filter(|n| !n.ends_with(".toml"))
            .collect()
    };
    assert_eq!(strip(files(one)), strip(files(two)));
    let lines = |d: &Path| {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .expect("metrics.jsonl")
            .lines()
            .count()
    };
    assert_eq!(lines(one), lines(two));
    a
}
