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

/// `tiller COMMAND --model MODEL --input INPUT --output OUTPUT EXTRA...`, the shape of
/// most runs here.
fn run_file(command: &str, model: &str, input: &Path, output: &Path, extra: &[&str]) -> Output {
    let (input, output) = (input.to_str().unwrap(), output.to_str().unwrap());
    let base = [
        command, "--model", model, "--input", input, "--output", output,
    ];
    tiller(&[&base[..], extra].concat())
}

/// `tiller generate --model MODEL --prompt PROMPT --raw EXTRA...`.
fn generate_one(model: &str, prompt: &str, extra: &[&str]) -> Output {
    let base = ["generate", "--model", model, "--prompt", prompt, "--raw"];
    tiller(&[&base[..], extra].concat())
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
    let sampling = [
        "--max-new-tokens",
        "5",
        "--temperature",
        "0.8",
        "--top-p",
        "0.9",
        "--seed",
        "3",
    ];
    ok(&run_file("generate", &model, &input, &output, &sampling));
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
    let one_at_a_time = [&sampling[..], &["--batch-size", "1"]].concat();
    ok(&run_file(
        "generate",
        &model,
        &input,
        &again,
        &one_at_a_time,
    ));
    assert_eq!(read_jsonl(&again), rows);
}

#[test]
fn generate_with_one_prompt_prints_the_answer() {
    let (dir, model) = setup();
    let printed = ok(&generate_one(&model, "hi", &["--max-new-tokens", "3"]));
    // The printed answer is the completion the file path writes for the same prompt.
    let input = dir.path().join("hi.jsonl");
    std::fs::write(&input, "{\"prompt\": \"hi\"}\n").unwrap();
    let output = dir.path().join("hi-out.jsonl");
    let flags = ["--max-new-tokens", "3", "--raw", "--logprobs"];
    ok(&run_file("generate", &model, &input, &output, &flags));
    let row = &read_jsonl(&output)[0];
    let completion = row["completion"].as_str().unwrap();
    assert_eq!(printed, format!("{completion}\n"), "{row}");
    // With --logprobs, one JSON line per token follows the answer: the file's tokens.
    let with_logprobs = ok(&generate_one(
        &model,
        "hi",
        &["--max-new-tokens", "3", "--logprobs"],
    ));
    let rest = with_logprobs
        .strip_prefix(&format!("{completion}\n"))
        .unwrap_or_else(|| panic!("{with_logprobs:?} does not start with {completion:?}"));
    let tokens: Vec<Value> = rest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!((1..=3).contains(&tokens.len()), "{with_logprobs}");
    let ids: Vec<&Value> = tokens.iter().map(|t| &t["token_id"]).collect();
    let logprobs: Vec<&Value> = tokens.iter().map(|t| &t["logprob"]).collect();
    let file_ids: Vec<&Value> = row["completion_token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let file_logprobs: Vec<&Value> = row["completion_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(ids, file_ids, "{with_logprobs}");
    assert_eq!(logprobs, file_logprobs, "{with_logprobs}");
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
    let stdout = ok(&run_file("score", &model, &input, &output, &[]));
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
    ok(&run_file("score", &model, &input, &chat_out, &["--chat"]));
    assert_eq!(read_jsonl(&chat_out)[0]["tokens"], 3);
}

#[test]
fn bad_input_names_file_line_and_field() {
    let (dir, model) = setup();
    let input = dir.path().join("bad.jsonl");
    let output = dir.path().join("o.jsonl");
    let run = |content: &str| {
        std::fs::write(&input, content).unwrap();
        err(&run_file("generate", &model, &input, &output, &[]))
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
    let with = |extra: &[&str]| generate_one(&model, "hi", extra);
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
    let flags = ["--max-new-tokens", "6", "--logprobs"];
    ok(&run_file("generate", &model, &input, &output, &flags));
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
