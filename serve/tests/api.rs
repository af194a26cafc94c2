//! The router called in-process (`app(state).oneshot(request)`) on a tiny random model:
//! answers and OpenAI-shaped errors without a socket or a Python client.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tiller_model::testing::write_tiny_checkpoint;
use tiller_model::DType;
use tiller_serve::{app, load, AppState, Loaded, ModelSpec, ServeConfig};
use tower::ServiceExt;

fn tiny(api_key: Option<&str>) -> (tempfile::TempDir, Loaded) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(dir.path(), 3).unwrap();
    let config = ServeConfig {
        models: vec![ModelSpec {
            name: "tiny".into(),
            dir: dir.path().to_path_buf(),
            adapter: None,
        }],
        device: tch::Device::Cpu,
        dtype: DType::F32,
        bind: "127.0.0.1:0".into(),
        api_key: api_key.map(str::to_owned),
        max_batch: 4,
        max_queue: 4,
    };
    let loaded = load(&config).unwrap();
    (dir, loaded)
}

async fn call(
    state: &Arc<AppState>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value, String) {
    let mut req = Request::builder().method(method).uri(path);
    req = req.header("content-type", "application/json");
    let body = body.map_or(Body::empty(), |b| Body::from(b.to_string()));
    let resp = app(state.clone())
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

fn param(v: &Value) -> &Value {
    &v["error"]["param"]
}

#[tokio::test]
async fn chat_answers_with_usage_and_bad_fields_are_named() {
    let (_dir, loaded) = tiny(None);
    let state = loaded.state.clone();
    let ok = json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 5, "temperature": 0});
    let (status, body, _) = call(&state, "POST", "/v1/chat/completions", Some(ok.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    let usage = &body["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() <= 5);
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    // The same greedy request twice: the same answer.
    let (_, again, _) = call(&state, "POST", "/v1/chat/completions", Some(ok.clone())).await;
    assert_eq!(again["choices"], body["choices"]);

    let bad = |patch: Value| {
        let mut b = ok.clone();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (patch, status_want, param_want) in [
        (json!({"model": "nope"}), StatusCode::NOT_FOUND, "model"),
        (
            json!({"temperature": "hot"}),
            StatusCode::BAD_REQUEST,
            "temperature",
        ),
        (
            json!({"temperature": -1}),
            StatusCode::BAD_REQUEST,
            "temperature",
        ),
        (json!({"top_p": 0}), StatusCode::BAD_REQUEST, "top_p"),
        (json!({"n": 100}), StatusCode::BAD_REQUEST, "n"),
        (
            json!({"max_tokens": 0}),
            StatusCode::BAD_REQUEST,
            "max_tokens",
        ),
        (
            json!({"max_completion_tokens": 600}),
            StatusCode::BAD_REQUEST,
            "max_completion_tokens",
        ),
        (json!({"stop": [1]}), StatusCode::BAD_REQUEST, "stop"),
        (json!({"messages": []}), StatusCode::BAD_REQUEST, "messages"),
        (
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            StatusCode::BAD_REQUEST,
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": "y".repeat(600)}]}),
            StatusCode::BAD_REQUEST,
            "messages",
        ),
        (
            json!({"presence_penalty": 1.0}),
            StatusCode::BAD_REQUEST,
            "presence_penalty",
        ),
    ] {
        let (status, body, text) = call(
            &state,
            "POST",
            "/v1/chat/completions",
            Some(bad(patch.clone())),
        )
        .await;
        assert_eq!(status, status_want, "{patch}: {text}");
        assert_eq!(param(&body), param_want, "{patch}: {text}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{text}"
        );
        assert!(
            body["error"].get("type").is_some() && body["error"].get("code").is_some(),
            "{text}"
        );
    }
    let (status, body, _) = call(&state, "POST", "/v1/chat/completions", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(param(&body).is_null());
    let (status, body, _) = call(&state, "GET", "/v1/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "unknown_url");
    drop(state);
    loaded.shutdown();
}

#[tokio::test]
async fn streaming_ends_with_done_and_equals_the_whole_answer() {
    let (_dir, loaded) = tiny(None);
    let state = loaded.state.clone();
    let req = json!({"model": "tiny", "prompt": "abc", "max_tokens": 6, "temperature": 0});
    let (_, whole, _) = call(&state, "POST", "/v1/completions", Some(req.clone())).await;
    let mut streamed = req.clone();
    streamed["stream"] = json!(true);
    let (status, _, text) = call(&state, "POST", "/v1/completions", Some(streamed)).await;
    assert_eq!(status, StatusCode::OK);
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let joined: String = events[..events.len() - 1]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(joined, whole["choices"][0]["text"].as_str().unwrap());
    drop(state);
    loaded.shutdown();
}

#[tokio::test]
async fn models_metrics_health_and_the_api_key() {
    let (_dir, loaded) = tiny(Some("k"));
    let state = loaded.state.clone();
    let (status, body, _) = call(&state, "GET", "/v1/models", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let req = Request::builder()
        .uri("/v1/models")
        .header("authorization", "Bearer k")
        .body(Body::empty())
        .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["data"][0]["id"], "tiny");
    // /health and /metrics need no key.
    let (status, body, _) = call(&state, "GET", "/health", None).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("ok"))
    );
    let (status, _, text) = call(&state, "GET", "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    for family in [
        "# TYPE tiller_queue_depth gauge",
        "# TYPE tiller_running_sequences gauge",
        "# TYPE tiller_generated_tokens_total counter",
        "# TYPE tiller_time_to_first_token_seconds histogram",
        "# TYPE tiller_inter_token_latency_seconds histogram",
        "tiller_running_sequences{model=\"tiny\"} 0",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    drop(state);
    loaded.shutdown();
}
