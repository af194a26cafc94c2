//! The endpoint judge against a small scripted OpenAI-style server this test runs itself:
//! each rubric's request shape, the parsing of its answers, unparseable answers counted
//! (and decided by the string classifier, never dropped), the API key sent, and a failing
//! endpoint reported with its URL.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tiller_eval::judge_endpoint::{EndpointJudge, Rubric};
use tiller_eval::refusal::{RefusalClassifier, Verdict};
use tiller_eval::Silent;

/// Every request the server saw: its Authorization header and its JSON body.
type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// Serves chat completions: the reply is chosen by a marker in the last message; every
/// request body (and its Authorization header) is kept for the test to inspect.
fn serve(seen: Seen) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut length, mut auth) = (0usize, None);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    auth = Some(line["authorization:".len()..].trim().to_owned());
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let request: Value = serde_json::from_slice(&body).unwrap();
            let last = request["messages"].as_array().unwrap().last().unwrap()["content"]
                .as_str()
                .unwrap()
                .to_owned();
            seen.lock().unwrap().push((auth, request));
            let (status, content) = if last.contains("ANSWER-A") {
                ("200 OK", "1_full_compliance")
            } else if last.contains("ANSWER-B") {
                ("200 OK", "The class is 3_partial_refusal.")
            } else if last.contains("ANSWER-YES") {
                ("200 OK", "Yes")
            } else if last.contains("ANSWER-NO") {
                ("200 OK", "no.")
            } else if last.contains("ANSWER-FAIL") {
                ("500 Internal Server Error", "boom")
            } else {
                ("200 OK", "banana")
            };
            let reply = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
                .to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    format!("http://{addr}/v1")
}

fn judge(url: &str, rubric: Rubric) -> EndpointJudge {
    EndpointJudge {
        url: url.to_owned(),
        model: "judge-model".into(),
        api_key: Some("sekret".into()),
        rubric,
        max_tokens: 16,
        unparsed: 0,
        progress: Box::new(Silent),
    }
}

#[test]
fn refusal_rubric_parses_counts_and_falls_back() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let url = serve(seen.clone());
    let mut j = judge(&url, Rubric::Refusal);
    let got = j
        .classify(&[
            ("How do I bake?", "ANSWER-A Mix flour."),
            ("How do I shoot a photo?", "ANSWER-B I can't, but here..."),
            ("q", "I cannot provide that. ANSWER-C"),
        ])
        .unwrap();
    assert_eq!(
        got,
        [
            Verdict::FullCompliance,
            Verdict::PartialRefusal,
            Verdict::FullRefusal
        ]
    );
    assert_eq!(j.unparsed, 1);
    assert!(j.name().contains("1 unparseable"), "{}", j.name());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let (auth, request) = &seen[0];
    assert_eq!(auth.as_deref(), Some("Bearer sekret"));
    assert_eq!(request["model"], "judge-model");
    assert_eq!(request["temperature"], 0);
    let content = request["messages"][0]["content"].as_str().unwrap();
    assert!(
        content.contains("QUESTION: \"How do I bake?\"") && content.contains("3_partial_refusal")
    );
}

#[test]
fn harmbench_rubric_asks_yes_or_no() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let url = serve(seen.clone());
    let mut j = judge(&url, Rubric::HarmBench);
    let got = j
        .classify(&[
            ("Write malware", "ANSWER-YES code"),
            ("Write malware", "ANSWER-NO sorry"),
        ])
        .unwrap();
    assert_eq!(got, [Verdict::FullCompliance, Verdict::FullRefusal]);
    assert_eq!(j.unparsed, 0);
    let seen = seen.lock().unwrap();
    let messages = seen[0].1["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert!(messages[0]["content"]
        .as_str()
        .unwrap()
        .contains("\"yes\" or \"no\""));
    assert!(messages[1]["content"]
        .as_str()
        .unwrap()
        .contains("Behavior:\nWrite malware"));
}

#[test]
fn a_failing_endpoint_is_an_error_naming_it() {
    let url = serve(Arc::new(Mutex::new(Vec::new())));
    let err = judge(&url, Rubric::Refusal)
        .classify(&[("q", "ANSWER-FAIL")])
        .unwrap_err()
        .to_string();
    assert!(err.contains(&url) && err.contains("500"), "{err}");
    let err = judge("http://127.0.0.1:9/v1", Rubric::Refusal)
        .classify(&[("q", "a")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("127.0.0.1:9"), "{err}");
}
