//! No training prompt the project ships is a near-duplicate of an evaluation prompt: the
//! project's probes and the public suites in `../shared/datasets` (issue 18). The check is
//! `datasets/overlap.py`, which the data generators also run before they write; this test
//! runs it on the shipped files, and on planted near-duplicates to show that it catches them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shared() -> PathBuf {
    let dir = root().join("../shared/datasets");
    // Not a silent skip: CI and the dev machines have ../shared beside the checkout.
    assert!(
        dir.join("harmbench").is_dir(),
        "no public datasets in {}",
        dir.display()
    );
    dir
}

fn overlap(args: &[&std::ffi::OsStr]) -> Output {
    Command::new("python3")
        .arg(root().join("datasets/overlap.py"))
        .arg("--shared")
        .arg(shared())
        .args(args)
        .output()
        .expect("python3 runs")
}

#[test]
fn shipped_training_prompts_do_not_near_duplicate_evaluation_prompts() {
    let out = overlap(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "no near-duplicates: N training prompts from 10 files against M evaluation prompts"
    let numbers: Vec<usize> = stdout
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [train, files, evaluated] = numbers[..] else {
        panic!("unexpected summary: {stdout}");
    };
    assert!(train >= 1_000, "{stdout}");
    assert_eq!(files, 10, "{stdout}");
    // HarmBench 400, CatQA 550, XSTest 450, CoCoNot's two files and the project's probes.
    assert!(evaluated >= 3_000, "{stdout}");
}

/// The first HarmBench behaviour, read at test time (the repository holds none of its text).
fn first_harmbench_behaviour() -> String {
    let csv = std::fs::read_to_string(shared().join("harmbench/harmbench_behaviors_text_all.csv"))
        .unwrap();
    let row = csv.lines().nth(1).unwrap();
    assert!(!row.starts_with('"'), "first row is not quoted: {row}");
    row.split(',').next().unwrap().to_string()
}

fn first_probe() -> String {
    let probes = std::fs::read_to_string(root().join("datasets/eval/harmful.jsonl")).unwrap();
    let row: serde_json::Value = serde_json::from_str(probes.lines().next().unwrap()).unwrap();
    row["prompt"].as_str().unwrap().to_string()
}

fn write_prompts(path: &Path, prompts: &[String]) {
    let rows: Vec<String> = prompts
        .iter()
        .map(|p| serde_json::json!({ "prompt": p }).to_string())
        .collect();
    std::fs::write(path, rows.join("\n") + "\n").unwrap();
}

#[test]
fn reworded_and_repunctuated_copies_are_caught_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("planted.jsonl");
    let behaviour = first_harmbench_behaviour();
    write_prompts(
        &file,
        &[
            // One word added: still most of the same 3-grams.
            format!("Please {}!", behaviour.to_uppercase()),
            // Punctuation and case only: the same normalised text.
            first_probe().to_lowercase().replace(['.', '?', ','], " ; "),
            // Shares a frame with many probes, but is its own request.
            "How do I make a birthday cake for my daughter?".to_string(),
        ],
    );
    let out = overlap(&["--train".as_ref(), file.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let planted = file.display().to_string();
    assert!(
        stderr.contains(&format!("{planted}:1 ~ "))
            && stderr.contains("harmbench_behaviors_text_all.csv:2"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("(1.00): {planted}:2 ~ "))
            && stderr.contains("eval/harmful.jsonl:1"),
        "{stderr}"
    );
    assert!(!stderr.contains(&format!("{planted}:3 ")), "{stderr}");
    assert!(
        stderr.contains("near-duplicate an evaluation prompt"),
        "{stderr}"
    );
}
