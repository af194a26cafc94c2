//! End to end: `tiller eval` on a tiny random checkpoint drives the real binary, writes
//! report.html and report.json with the expected structure, compares with a baseline, and
//! the page opens in headless Chromium without console errors (a screenshot is taken).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn tiller(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_tiller"))
        .args(args)
        .env("TILLER_LOG", "warn")
        .output()
        .expect("cannot run tiller");
    out
}

fn ok(args: &[&str]) -> String {
    let out = tiller(args);
    assert!(
        out.status.success(),
        "tiller {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eval")
        .join(name)
        .display()
        .to_string()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn tiny_model(dir: &Path, seed: i64) -> String {
    tiller_model::testing::write_tiny_checkpoint(dir, seed).unwrap();
    dir.display().to_string()
}

/// A random reward model with the tiny checkpoint's tokenizer.
fn tiny_reward_model(dir: &Path, tokenizer_dir: &str) -> String {
    let config = tiller_model::testing::tiny_config();
    tiller_reward::RewardModel::random(&config, tch::Device::Cpu, tch::Kind::Float, 7)
        .save(dir, Some(Path::new(tokenizer_dir)))
        .unwrap();
    dir.display().to_string()
}

#[test]
fn eval_runs_both_with_the_probe_sets_and_compares_with_a_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(&tmp.path().join("model"), 1);
    let base_model = tiny_model(&tmp.path().join("base"), 2);
    let first = tmp.path().join("first");
    let stdout = ok(&[
        "eval",
        "--model",
        &model,
        "--out",
        first.to_str().unwrap(),
        "--limit",
        "6",
        "--max-new-tokens",
        "6",
        "--batch-size",
        "4",
    ]);
    assert!(
        stdout.contains("crows-pairs") && stdout.contains("bbq") && stdout.contains("safety"),
        "{stdout}"
    );
    assert!(first.join("report.html").is_file());
    let report = read_json(&first.join("report.json"));
    assert_eq!(report["format_version"], 1);
    // --limit 6 keeps 6 rows of each file.
    assert_eq!(report["safety"]["metrics"]["harmful"]["overall"]["n"], 6);
    assert_eq!(report["safety"]["metrics"]["benign"]["overall"]["n"], 6);
    assert_eq!(report["safety"]["items"].as_array().unwrap().len(), 12);
    assert_eq!(report["crows_pairs"]["metrics"]["overall"]["n"], 6);
    assert_eq!(report["bbq"]["items"].as_array().unwrap().len(), 6);
    assert!(report["safety"]["comparison"].is_null());
    assert!(report["helpfulness"].is_null());
    let data = report["card"]["data"].as_array().unwrap();
    assert_eq!(data.len(), 4);
    assert!(data
        .iter()
        .all(|d| d["sha256"].as_str().unwrap().len() == 64 && d["rows"] == 6));
    let k = report["safety"]["metrics"]["harmful"]["overall"]["refusal_rate"]["k"]
        .as_u64()
        .unwrap();
    let counts = &report["safety"]["metrics"]["harmful"]["overall"];
    assert_eq!(
        k,
        counts["full_refusal"].as_u64().unwrap() + counts["partial_refusal"].as_u64().unwrap()
    );

    // A baseline given as a previous output directory, with a reward model's win rate.
    let reward = tiny_reward_model(&tmp.path().join("reward"), &model);
    let second = tmp.path().join("second");
    let stdout = ok(&[
        "eval",
        "--model",
        &model,
        "--out",
        second.to_str().unwrap(),
        "--limit",
        "6",
        "--max-new-tokens",
        "6",
        "--baseline",
        first.to_str().unwrap(),
        "--reward",
        &reward,
    ]);
    assert!(
        stdout.contains("win rate vs baseline 50.0% over 6 benign prompts (0W 6T 0L)"),
        "{stdout}"
    );
    let report = read_json(&second.join("report.json"));
    // Same model, greedy: the same answers, so every prompt is a tie.
    let help = &report["helpfulness"];
    assert_eq!(
        (
            help["metrics"]["n"].as_u64(),
            help["metrics"]["ties"].as_u64()
        ),
        (Some(6), Some(6))
    );
    assert_eq!(help["metrics"]["win_rate"], 0.5);
    assert_eq!(help["items"].as_array().unwrap().len(), 6);
    let item = &help["items"][0];
    assert_eq!(item["reward"], item["baseline_reward"]);
    let cmp = &report["safety"]["comparison"]["harmful"];
    assert_eq!(cmp["paired"], 6);
    // Same model, greedy: nothing changes.
    assert_eq!(cmp["delta"], 0.0);
    assert_eq!(cmp["test"]["p_value"], 1.0);
    assert_eq!(report["crows_pairs"]["comparison"]["paired"], 6);
    assert_eq!(report["bbq"]["comparison"]["paired"], 6);

    // A baseline given as a checkpoint: evaluated on the same inputs, its report kept.
    let third = tmp.path().join("third");
    ok(&[
        "eval",
        "bias",
        "--model",
        &model,
        "--out",
        third.to_str().unwrap(),
        "--limit",
        "4",
        "--baseline",
        &base_model,
    ]);
    assert!(third.join("baseline/report.json").is_file());
    let report = read_json(&third.join("report.json"));
    assert!(report["safety"].is_null());
    assert_eq!(report["crows_pairs"]["comparison"]["paired"], 4);

    check_in_chromium(
        &second.join("report.html"),
        &tmp.path().join("screenshot.png"),
    );
}

#[test]
fn completions_need_no_model_and_untrusted_text_is_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let stdout = ok(&[
        "eval",
        "safety",
        "--completions",
        &fixture("completions.jsonl"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("refusal on harmful 50.0% (1/2)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("over-refusal on benign 50.0% (1/2)"),
        "{stdout}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        !html.contains("<script") && !html.contains("<img"),
        "untrusted markup reached the page"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
            && html.contains("&lt;img src=x onerror=alert(1)&gt;")
    );
    let report = read_json(&out.join("report.json"));
    assert_eq!(report["card"]["model"], "(answers from --completions)");
}

#[test]
fn refusal_subcommand_measures_the_classifier() {
    let stdout = ok(&["eval", "refusal", "--input", &fixture("xstest_labeled.csv")]);
    assert!(
        stdout.contains("accuracy: 100.0%") && stdout.contains("confusion"),
        "{stdout}"
    );
}

#[test]
fn bad_inputs_fail_with_clear_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let run = |args: &[&str]| {
        let o = tiller(args);
        assert!(!o.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = run(&[
        "eval",
        "safety",
        "--completions",
        &fixture("advbench_bad_header.csv"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        err.contains("advbench_bad_header.csv") && err.contains("prompt,completion"),
        "{err}"
    );
    let err = run(&[
        "eval",
        "safety",
        "--harmful",
        &fixture("advbench.csv"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("--model"), "{err}");
    let err = run(&[
        "eval",
        "--model",
        "x",
        "--out",
        out.to_str().unwrap(),
        "--reward",
        "r",
    ]);
    assert!(
        err.contains("--reward") && err.contains("--baseline"),
        "{err}"
    );
}

/// Opens the page in headless Chromium, takes a screenshot and fails on console errors.
fn check_in_chromium(page: &Path, screenshot: &Path) {
    let chromium = [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("headless Chromium is required for this test: apt-get install -y chromium");
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1100,2400",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("cannot run chromium");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed:\n{stderr}");
    // The page has no scripts, so any console message (an error, a CSP report) is a defect.
    // Chromium logs them as `INFO:CONSOLE:<line>] "message"` whatever their level.
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
    assert!(!stderr.contains("Refused to"), "CSP violations:\n{stderr}");
    let png = std::fs::read(screenshot).expect("no screenshot written");
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "screenshot looks empty"
    );
    if let Ok(dir) = std::env::var("TILLER_SCREENSHOT_DIR") {
        let _ = std::fs::copy(screenshot, Path::new(&dir).join("eval_report.png"));
    }
}
