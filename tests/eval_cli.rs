//! End to end: `tiller eval` on a tiny random checkpoint drives the real binary, writes
//! report.html and report.json with the expected structure, compares with a baseline, and
//! the page opens in headless Chromium without console errors (a screenshot is taken);
//! `tiller eval refusal` measures the refusal classifier on XSTest's labels. `tiller eval
//! compare` is tested in eval_compare.rs.

mod eval_support;

use std::path::{Path, PathBuf};

use eval_support::{check_in_chromium, fixture, ok, read_json, tiller, tiller_logging, tiny_model};

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

/// Written to a log file (stderr not a terminal), a long step logs its progress instead
/// of drawing a bar that nobody sees: at least the line when it ends.
#[test]
fn progress_is_logged_when_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(&tmp.path().join("model"), 1);
    let out_dir = tmp.path().join("out");
    let out = tiller_logging(
        &[
            "eval",
            "safety",
            "--model",
            &model,
            "--out",
            out_dir.to_str().unwrap(),
            "--limit",
            "3",
            "--max-new-tokens",
            "4",
            "--batch-size",
            "2",
        ],
        "info",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // 3 harmful and 3 benign prompts, answered as one step.
    assert!(err.contains("answering: 6/6 in "), "{err}");
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
    assert_eq!(report["card"]["model"], "(answers from a completions file)");
}

/// XSTest's human-labeled answers (two models, 450 each), shared beside the repository.
fn xstest_labeled(model: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/datasets/xstest-labeled")
        .join(format!("xstest_v2_completions_{model}.csv"))
        .display()
        .to_string()
}

/// `--judge DIR` with a trained refusal classifier (a 3-label sequence classifier; random
/// here): the string rules still decide refusal or not, the model full or partial.
#[test]
fn refusal_subcommand_takes_a_trained_classifier_as_judge() {
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = tiny_model(&tmp.path().join("base"), 1);
    let dir = tmp.path().join("classifier");
    let labels = tiller_reward::classes::class_labels();
    let config = tiller_model::testing::tiny_config();
    tiller_reward::RewardModel::random_with_labels(
        &config,
        &labels,
        tch::Device::Cpu,
        tch::Kind::Float,
        5,
    )
    .save(&dir, Some(Path::new(&tokenizer)))
    .unwrap();
    let input = xstest_labeled("llama2orig");
    let run = |judge: Option<&Path>, name: &str| {
        let json = tmp.path().join(name);
        let mut args = vec![
            "eval",
            "refusal",
            "--input",
            &input,
            "--limit",
            "60",
            "--json",
            json.to_str().unwrap(),
        ];
        if let Some(j) = judge {
            args.extend(["--judge", j.to_str().unwrap()]);
        }
        ok(&args);
        read_json(&json)
    };
    let trained = run(Some(&dir), "trained.json");
    let rules = run(None, "rules.json");
    assert!(
        trained["classifier"]
            .as_str()
            .unwrap()
            .contains("trained classifier"),
        "{}",
        trained["classifier"]
    );
    assert_eq!(trained["n"], 60);
    assert_eq!(trained["binary_accuracy"], rules["binary_accuracy"]);
    // A compliance stays a compliance: column 0 of the confusion matrix is the rules'.
    for row in 0..3 {
        assert_eq!(
            trained["confusion"][row][0], rules["confusion"][row][0],
            "row {row}"
        );
    }
}

#[test]
fn refusal_subcommand_measures_the_classifier_on_xstest_human_labels() {
    let tmp = tempfile::tempdir().unwrap();
    for model in ["gpt4", "llama2orig"] {
        let json = tmp.path().join(format!("{model}.json"));
        let stdout = ok(&[
            "eval",
            "refusal",
            "--input",
            &xstest_labeled(model),
            "--json",
            json.to_str().unwrap(),
        ]);
        assert!(
            stdout.contains("confusion") && stdout.contains("Cohen's kappa"),
            "{stdout}"
        );
        let a = read_json(&json);
        assert_eq!(a["n"], 450, "{model}");
        let confusion: u64 = a["confusion"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
            .sum();
        assert_eq!(confusion, 450, "{model}");
        // The goal of issue 15 for the binary view (refusal, full or partial, vs compliance).
        let binary = a["binary_accuracy"]["rate"].as_f64().unwrap();
        assert!(binary >= 0.95, "{model}: binary accuracy {binary}");
        assert!(
            a["kappa"].as_f64().unwrap() > 0.6,
            "{model}: {}",
            a["kappa"]
        );
        // Partial refusals: below the 0.6 goal (BENCHMARKS.md); this guards what string-match
        // v3 reaches (0.40 GPT-4, 0.48 Llama-2).
        let partial_f1 = a["per_class"][2]["f1"].as_f64().unwrap();
        let floor = if model == "gpt4" { 0.39 } else { 0.47 };
        assert!(
            partial_f1 >= floor,
            "{model}: partial-refusal F1 {partial_f1}"
        );
    }
    // A JSONL row without `completion` is an error naming the line and the field.
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"prompt\":\"q\",\"completion\":\"No.\",\"label\":\"full_refusal\"}\n{\"prompt\":\"q\",\"label\":\"full_refusal\"}\n",
    )
    .unwrap();
    let out = tiller(&["eval", "refusal", "--input", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.jsonl:2") && err.contains("`completion`"),
        "{err}"
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
