//! `tiller model import`, `generate` and `score` driven as a user runs them, on a tiny
//! random checkpoint (and its GGUF-free HF directory).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use tiller_model::testing::write_tiny_checkpoint;

fn tiller(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tiller"))
        .args(args)
        .output()
        .expect("run tiller")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "tiller failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(out: &Output) -> String {
    assert!(!out.status.success(), "tiller should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn setup() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_tiny_checkpoint(&src, 1).unwrap();
    let model = dir.path().join("model");
    let out = tiller(&[
        "model",
        "import",
        src.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(ok(&out).contains("imported"));
    (dir, model.to_str().unwrap().to_owned())
}

#[test]
fn generate_keeps_input_fields_and_adds_completions() {
    let (dir, model) = setup();
    let input = dir.path().join("prompts.jsonl");
    std::fs::write(
        &input,
        "{\"prompt\": \"hello\", \"id\": 7}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"id\": 8}\n",
    )
    .unwrap();
    let output = dir.path().join("out.jsonl");
    ok(&tiller(&[
        "generate",
        "--model",
        &model,
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--max-new-tokens",
        "5",
        "--temperature",
        "0.8",
        "--top-p",
        "0.9",
        "--seed",
        "3",
    ]));
    let rows = read_jsonl(&output);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["id"], 7);
    assert_eq!(rows[1]["id"], 8);
    for row in &rows {
        assert!(row["completion"].is_string());
        let n = row["completion_tokens"].as_u64().unwrap();
        assert!((1..=5).contains(&n), "{row}");
    }
    // Same seed, same samples.
    let again = dir.path().join("again.jsonl");
    ok(&tiller(&[
        "generate",
        "--model",
        &model,
        "--input",
        input.to_str().unwrap(),
        "--output",
        again.to_str().unwrap(),
        "--max-new-tokens",
        "5",
        "--temperature",
        "0.8",
        "--top-p",
        "0.9",
        "--seed",
        "3",
        "--batch-size",
        "1",
    ]));
    assert_eq!(read_jsonl(&again), rows);
}

#[test]
fn generate_with_one_prompt_prints_the_answer() {
    let (_dir, model) = setup();
    let out = ok(&tiller(&[
        "generate",
        "--model",
        &model,
        "--prompt",
        "hi",
        "--max-new-tokens",
        "3",
        "--raw",
    ]));
    assert!(!out.is_empty());
}

#[test]
fn score_texts_and_completions() {
    let (dir, model) = setup();
    let input = dir.path().join("rows.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"hello world\"}\n{\"prompt\": \"2+2=\", \"completion\": \"4\"}\n",
    )
    .unwrap();
    let output = dir.path().join("scored.jsonl");
    let stdout = ok(&tiller(&[
        "score",
        "--model",
        &model,
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]));
    assert!(stdout.contains("perplexity"), "{stdout}");
    let rows = read_jsonl(&output);
    // Byte-level tiny tokenizer: "hello world" is 11 tokens, 10 scored; "4" is one.
    assert_eq!(rows[0]["tokens"], 10);
    assert_eq!(rows[1]["tokens"], 1);
    for row in &rows {
        assert!(row["logprob"].as_f64().unwrap() < 0.0);
    }
    // --chat scores the answer inside the template (answer + <|im_end|> + newline).
    let chat_out = dir.path().join("chat.jsonl");
    std::fs::write(&input, "{\"prompt\": \"2+2=\", \"completion\": \"4\"}\n").unwrap();
    ok(&tiller(&[
        "score",
        "--model",
        &model,
        "--input",
        input.to_str().unwrap(),
        "--output",
        chat_out.to_str().unwrap(),
        "--chat",
    ]));
    assert_eq!(read_jsonl(&chat_out)[0]["tokens"], 3);
}

#[test]
fn bad_input_names_file_line_and_field() {
    let (dir, model) = setup();
    let input = dir.path().join("bad.jsonl");
    let output = dir.path().join("o.jsonl");
    let run = |content: &str| {
        std::fs::write(&input, content).unwrap();
        err(&tiller(&[
            "generate",
            "--model",
            &model,
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]))
    };
    let e = run("{\"prompt\": \"ok\"}\n{\"prompt\": \n");
    assert!(e.contains("bad.jsonl:2"), "{e}");
    let e = run("{\"prompt\": \"ok\"}\n{\"promt\": \"typo\"}\n");
    assert!(e.contains("bad.jsonl:2") && e.contains("`prompt`"), "{e}");
    let e = run("{\"prompt\": 5}\n");
    assert!(
        e.contains("bad.jsonl:1") && e.contains("`prompt`") && e.contains("string"),
        "{e}"
    );
    let e = run("{\"messages\": [{\"role\": \"user\"}]}\n");
    assert!(
        e.contains("bad.jsonl:1") && e.contains("messages[0]"),
        "{e}"
    );
    let long = format!("{{\"prompt\": \"{}\"}}\n", "x".repeat(600));
    let e = run(&long);
    assert!(e.contains("context window of 512"), "{e}");
    assert!(
        !output.exists(),
        "a failed run must not leave an output file"
    );

    let e = err(&tiller(&[
        "generate",
        "--model",
        dir.path().join("nope").to_str().unwrap(),
        "--prompt",
        "x",
    ]));
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn generate_top_k_zero_is_off_and_bad_sampling_flags_are_named() {
    let (dir, model) = setup();
    let with = |extra: &[&str]| -> Output {
        let base = ["generate", "--model", &model, "--prompt", "hi", "--raw"];
        tiller(&[&base[..], extra].concat())
    };
    // `--top-k 0` used to index out of bounds; now it means "no top-k".
    ok(&with(&[
        "--top-k",
        "0",
        "--temperature",
        "0.7",
        "--max-new-tokens",
        "4",
    ]));
    for bad in ["nan", "-1", "inf"] {
        let e = err(&with(&[&format!("--temperature={bad}")]));
        assert!(
            e.contains("--temperature") && e.contains(">= 0"),
            "{bad}: {e}"
        );
    }
    let e = err(&with(&["--top-p", "1.5"]));
    assert!(e.contains("--top-p"), "{e}");

    // --logprobs writes one log-probability per completion token, each <= 0.
    let input = dir.path().join("p.jsonl");
    std::fs::write(&input, "{\"prompt\": \"hello\"}\n").unwrap();
    let output = dir.path().join("lp.jsonl");
    ok(&tiller(&[
        "generate",
        "--model",
        &model,
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--max-new-tokens",
        "6",
        "--logprobs",
    ]));
    let row = &read_jsonl(&output)[0];
    let logprobs = row["completion_logprobs"].as_array().unwrap();
    let ids = row["completion_token_ids"].as_array().unwrap();
    assert_eq!(
        logprobs.len() as u64,
        row["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(logprobs.len(), ids.len());
    assert!(logprobs.iter().all(|l| l.as_f64().unwrap() <= 0.0), "{row}");
}
