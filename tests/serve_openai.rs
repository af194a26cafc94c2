//! `tiller serve` driven by the official `openai` Python client (tests/serve_openai.py,
//! run with .venv-test's interpreter: `scripts/test_venv.sh` makes it; the tests fail,
//! not skip, without it): chat, streaming, `n`, stop strings, logprobs, errors, 429,
//! disconnects, 32 concurrent streams, SIGTERM draining — on a tiny random model; a LoRA
//! adapter served beside its base (`--adapter`); and greedy parity with `tiller generate`
//! on the default model.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;
use tiller_model::testing::write_tiny_checkpoint;
use tiller_model::{Lora, LoraConfig};

mod serve_support;
use serve_support::{serve, Server, KEY};

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("TILLER_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test_venv.sh (it installs the openai client)",
        p.display()
    );
    p
}

fn client(server: &Server, model: &str, mode: &str, prompts: &[String]) -> Value {
    let out = client_process(server, model, mode, prompts)
        .wait_with_output()
        .expect("run the python client");
    parse(&out)
}

fn client_process(server: &Server, model: &str, mode: &str, prompts: &[String]) -> Child {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve_openai.py");
    Command::new(python())
        .arg(script)
        .args([&server.url, KEY, model, mode])
        .args(prompts)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the python client")
}

fn parse(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn tiny_model() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(dir.path(), 7).unwrap();
    let path = dir.path().to_str().unwrap().to_owned();
    (dir, path)
}

fn generate_cli(model: &str, prompt: &str, max_new_tokens: usize) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tiller"))
        .args(["generate", "--model", model, "--prompt", prompt])
        .args(["--max-new-tokens", &max_new_tokens.to_string()])
        .output()
        .expect("run tiller generate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.strip_suffix('\n').unwrap_or(&text).to_owned()
}

/// A plain HTTP/1.0 GET (the body), for polling /metrics without a client library.
fn http_get(url: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.strip_prefix("http://").unwrap_or(url);
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("{v} is not a string"))
}

fn assert_error(e: &Value, status: u64, param: Option<&str>) {
    assert_eq!(e["status"], status, "{e}");
    let err = &e["error"];
    for field in ["message", "type", "param", "code"] {
        assert!(err.get(field).is_some(), "no `{field}` in {e}");
    }
    assert!(!s(&err["message"]).is_empty(), "{e}");
    match param {
        Some(p) => assert_eq!(err["param"], p, "{e}"),
        None => assert!(err["param"].is_null(), "{e}"),
    }
}

#[test]
fn the_openai_client_gets_what_it_expects_from_a_tiny_model() {
    let (_dir, model) = tiny_model();
    let server = serve(&format!("tiny={model}"), &["--max-batch", "32"]);
    let mut prompts = vec!["hello there".to_owned()];
    prompts.extend((0..32).map(|i| format!("client {i} says {}", "ab".repeat(i % 5))));
    let r = client(&server, "tiny", "full", &prompts);

    // Greedy chat equals `tiller generate` (same template, same stop ids).
    assert_eq!(s(&r["greedy"]), generate_cli(&model, "hello there", 12));
    assert_eq!(r["streamed"], r["greedy"], "streamed != whole: {r}");
    assert_eq!(r["streamed_finish"], r["greedy_finish"]);
    assert!(r["streamed_chunks"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(r["streamed_usage"], r["usage"]);
    let usage = &r["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 11);
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&completion), "{usage}");
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap() + completion)
    );

    // n = 2: two choices, seeded (same seed, same answers), each sample its own draw.
    assert_eq!(r["n2_index"], serde_json::json!([0, 1]));
    assert_eq!(r["n2"], r["n2_again"]);
    assert_ne!(r["n2"][0], r["n2"][1], "two samples were equal: {r}");
    assert!(r["n2_usage"]["completion_tokens"].as_u64().unwrap() > 10);

    // Stop strings: cut before the stop, finish "stop", streamed the same.
    let stop = s(&r["stop"]);
    let stopped = s(&r["stopped"]);
    assert!(!stop.is_empty());
    assert!(
        s(&r["greedy"]).starts_with(stopped) && !stopped.contains(stop),
        "{r}"
    );
    assert_eq!(r["stopped_finish"], "stop");
    assert_eq!(r["stopped_streamed"], r["stopped"]);

    // Logprobs: one entry per answer token, top 3 sorted, the greedy token first.
    let lps = r["logprobs"].as_array().unwrap();
    assert_eq!(lps.len() as u64, completion.min(12), "{r}");
    for t in lps {
        let top: Vec<f64> = t["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(top.len(), 3);
        assert!(top.windows(2).all(|w| w[0] >= w[1]), "{t}");
        assert!(
            (top[0] - t["logprob"].as_f64().unwrap()).abs() < 1e-5,
            "{t}"
        );
        assert_eq!(t["top_tokens"][0], t["token"]);
    }
    assert_eq!(r["logprobs_text"], r["greedy"]);
    assert_eq!(r["completion_logprobs"].as_array().unwrap().len(), 6, "{r}");
    assert_eq!(r["completion_usage"]["completion_tokens"], 6);
    assert_eq!(r["models"], serde_json::json!(["tiny"]));

    // Errors: OpenAI's shape, the field named, 4xx.
    let e = &r["errors"];
    assert_error(&e["unknown_model"], 404, Some("model"));
    assert_error(&e["temperature"], 400, Some("temperature"));
    assert_error(&e["n"], 400, Some("n"));
    assert_error(&e["messages"], 400, Some("messages[0].content"));
    assert_error(&e["too_long"], 400, Some("messages"));
    assert_eq!(e["too_long"]["error"]["code"], "context_length_exceeded");
    assert_error(&e["max_tokens"], 400, Some("max_tokens"));
    assert_error(&e["top_logprobs"], 400, Some("top_logprobs"));
    assert_error(&e["bad_key"], 401, None);
    assert_error(&e["bad_json"], 400, None);
    assert_eq!(r["health"]["status"], "ok");

    // 32 concurrent streams answer what each prompt gets alone.
    let together = r["concurrent"].as_array().unwrap();
    assert_eq!(together.len(), 32);
    assert_eq!(r["concurrent"], r["alone"]);
    let metrics = s(&r["metrics_text"]);
    for name in [
        "tiller_queue_depth{model=\"tiny\"}",
        "tiller_running_sequences{model=\"tiny\"}",
        "tiller_time_to_first_token_seconds_bucket{model=\"tiny\",le=\"+Inf\"}",
        "tiller_inter_token_latency_seconds_count{model=\"tiny\"}",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    assert!(r["metrics_tokens"].as_f64().unwrap() > 32.0 * 16.0, "{r}");
}

#[test]
fn a_full_queue_answers_429_and_a_gone_client_frees_its_sequence() {
    let (_dir, model) = tiny_model();
    let server = serve(&model, &["--max-batch", "1", "--max-queue", "0"]);
    let name = Path::new(&model)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let prompt = vec!["keep going".to_owned()];
    let busy = client(&server, &name, "busy", &prompt);
    assert_error(&busy["busy"], 429, None);
    assert_eq!(busy["busy"]["retry_after"], "1");

    let gone = client(&server, &name, "disconnect", &prompt);
    assert_eq!(gone["running_after_disconnect"], 0.0, "{gone}");
    let tokens = gone["tokens_after_disconnect"].as_f64().unwrap();
    assert!(tokens < 400.0, "the disconnected stream ran on: {gone}");
}

#[test]
fn sigterm_lets_a_running_request_finish_then_exits() {
    let (_dir, model) = tiny_model();
    let mut server = serve(&format!("tiny={model}"), &[]);
    let running = client_process(
        &server,
        "tiny",
        "one",
        &["drain me".to_owned(), "400".to_owned()],
    );
    // Wait until the request is in the batch, then ask the server to stop.
    let mut seen = false;
    for _ in 0..2000 {
        if http_get(&server.url, "/metrics").contains("tiller_running_sequences{model=\"tiny\"} 1")
        {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(seen, "the request never showed up as running");
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let answer = parse(&running.wait_with_output().unwrap());
    // The whole answer arrived (not a dropped connection): a finish reason and its tokens.
    assert!(
        answer["finish"] == "length" || answer["finish"] == "stop",
        "{answer}"
    );
    assert!(
        answer["completion_tokens"].as_u64().unwrap() > 0,
        "{answer}"
    );
    let status = server.child.wait().unwrap();
    assert!(status.success(), "tiller serve exited with {status}");
}

/// A tiny base and a LoRA adapter over it whose B matrices are random (a trained adapter's
/// are not zero either), so the adapter changes the model's answers.
fn tiny_adapter(work: &Path) -> (String, String) {
    let base = work.join("base");
    let mut lm = write_tiny_checkpoint(&base, 7).unwrap();
    let lora = Lora::attach(&mut lm, &LoraConfig::default(), 3).unwrap();
    tch::no_grad(|| {
        for (name, b) in lora.vs.variables() {
            if name.contains("lora_B") {
                let noise = b.randn_like() * 0.5;
                b.shallow_clone().copy_(&noise);
            }
        }
    });
    let adapter = work.join("adapter");
    lora.save(&adapter, base.to_str().unwrap()).unwrap();
    // So that `tiller generate --model ADAPTER` finds a tokenizer beside the adapter.
    tiller_model::checkpoint::copy_tokenizer_files(&base, &adapter).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    (path(&base), path(&adapter))
}

#[test]
fn an_adapter_is_served_beside_its_base_and_a_bad_one_is_named() {
    let work = tempfile::tempdir().unwrap();
    let (base, adapter) = tiny_adapter(work.path());
    let server = serve(
        &format!("base={base}"),
        &["--adapter", &format!("tuned={adapter}")],
    );
    let prompt = "tell me about rivers";
    let r = client(
        &server,
        "base,tuned",
        "each",
        &[prompt.to_owned(), "12".to_owned()],
    );
    assert_eq!(r["models"], serde_json::json!(["base", "tuned"]));
    let (served_base, served_tuned) = (s(&r["answers"]["base"]), s(&r["answers"]["tuned"]));
    // The adapter served live over the base answers as the merged adapter does in
    // `tiller generate` (which loads an adapter directory merged into its base).
    assert_eq!(served_tuned, generate_cli(&adapter, prompt, 12));
    assert_eq!(served_base, generate_cli(&base, prompt, 12));
    assert_ne!(
        served_tuned, served_base,
        "the adapter changed nothing: {r}"
    );
    drop(server);

    let empty = work.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for bad in [work.path().join("nowhere"), empty] {
        let bad = bad.to_str().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_tiller"))
            .args(["serve", "--model", &base, "--bind", "127.0.0.1:0"])
            .args(["--adapter", &format!("bad={bad}")])
            .env("OMP_NUM_THREADS", "1")
            .output()
            .expect("run tiller serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a bad adapter {bad} was served");
        let flag = format!("--adapter bad={bad}: cannot load this LoRA adapter");
        assert!(
            stderr.contains(&flag) && stderr.contains("adapter_config.json"),
            "the error does not name the flag and {bad}/adapter_config.json:\n{stderr}"
        );
    }
}

/// An adapter served over a model other than the base its adapter_config.json records is
/// refused before serving, naming the adapter and both bases (serve/src/adapter.rs).
#[test]
fn an_adapter_over_another_base_is_refused_naming_both_bases() {
    let work = tempfile::tempdir().unwrap();
    let (base, adapter) = tiny_adapter(work.path());
    let other = work.path().join("other");
    write_tiny_checkpoint(&other, 8).unwrap();
    let other = other.to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tiller"))
        .args(["serve", "--model", other, "--bind", "127.0.0.1:0"])
        .args(["--adapter", &format!("tuned={adapter}")])
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("run tiller serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an adapter over another base was served"
    );
    assert!(
        stderr.contains(&format!(
            "--adapter tuned={adapter}: this LoRA adapter was trained over {base}"
        )) && stderr.contains(&format!("not over --model {other}")),
        "{stderr}"
    );
}

#[test]
fn the_default_model_answers_like_tiller_generate() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/smollm2-135m-instruct");
    assert!(
        model.join("config.json").exists(),
        "{} is missing (scripts/setup.sh)",
        model.display()
    );
    let model = model.to_str().unwrap().to_owned();
    let server = serve(&format!("smol={model}"), &[]);
    let prompt = "What is the capital of France?".to_owned();
    let r = client(&server, "smol", "real", std::slice::from_ref(&prompt));
    assert_eq!(s(&r["greedy"]), generate_cli(&model, &prompt, 12));
    assert!(s(&r["greedy"]).contains("Paris"), "{r}");
    assert_eq!(r["streamed"], r["greedy"]);
    assert_eq!(r["n2"].as_array().unwrap().len(), 2);
    assert_eq!(r["n2"], r["n2_again"]);
    assert_eq!(r["stopped_finish"], "stop");
    assert_eq!(r["stopped_streamed"], r["stopped"]);
    assert_eq!(r["logprobs_text"], r["greedy"]);
    assert_eq!(r["models"], serde_json::json!(["smol"]));
}
