//! A small scripted OpenAI-compatible endpoint (axum on a loopback port) for the arena
//! tests. What it does depends on the request's `model`:
//! - any name not below: streams `"{model} says: {prompt}"` as SSE chunks (a role-only
//!   chunk first, as real servers send), then a finish chunk and `data: [DONE]`;
//! - `slow`: sends the headers and the role chunk, then nothing for a minute;
//! - `broken`: answers 500 with OpenAI's error JSON;
//! - `long`: streams `0123456789` a thousand times;
//! - `keyed`: like the first case, but only with `Authorization: Bearer sekret` (401 without).
//!
//! Every request body is kept, so tests can check what the annotation server sent.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};

pub const KEY: &str = "sekret";

#[derive(Clone, Default)]
pub struct Endpoint {
    pub url: String,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl Endpoint {
    /// Serves the scripted endpoint on a free loopback port (for the test's lifetime).
    pub async fn start() -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = Endpoint {
            url: format!("http://{}", listener.local_addr().expect("addr")),
            ..Default::default()
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(endpoint.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        endpoint
    }

    /// The request bodies received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().expect("lock").clone()
    }
}

/// An http:// URL where nothing listens.
pub fn down_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    url
}

/// What the default script answers `model` for `prompt`.
pub fn answer(model: &str, prompt: &str) -> String {
    format!("{model} says: {prompt}")
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> Bytes {
    let event = json!({"id": "c1", "object": "chat.completion.chunk", "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    Bytes::from(format!("data: {event}\n\n"))
}

fn sse(chunks: Vec<(Bytes, Duration)>) -> Response {
    let stream = futures_util::stream::unfold(chunks.into_iter(), |mut rest| async move {
        let (bytes, pause) = rest.next()?;
        tokio::time::sleep(pause).await;
        Some((Ok::<_, Infallible>(bytes), rest))
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn chat(
    State(endpoint): State<Endpoint>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    endpoint.requests.lock().expect("lock").push(body.clone());
    let model = body["model"].as_str().unwrap_or("").to_string();
    let prompt = body["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let pause = Duration::from_millis(5);
    let role = (
        chunk(&model, json!({"role": "assistant", "content": ""}), None),
        pause,
    );
    match model.as_str() {
        "broken" => {
            let error = json!({"error": {"message": "the GPU caught fire", "type": "server_error", "param": null, "code": null}});
            (StatusCode::INTERNAL_SERVER_ERROR, Json(error)).into_response()
        }
        "slow" => sse(vec![
            role,
            (
                chunk(&model, json!({"content": "late"}), None),
                Duration::from_secs(60),
            ),
        ]),
        "long" => {
            let mut chunks = vec![role];
            chunks.extend((0..1000).map(|_| {
                (
                    chunk(&model, json!({"content": "0123456789"}), None),
                    Duration::ZERO,
                )
            }));
            sse(chunks)
        }
        _ => {
            let authorized = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                == Some(&format!("Bearer {KEY}"));
            if model == "keyed" && !authorized {
                let error = json!({"error": {"message": "bad key", "type": "auth", "param": null, "code": null}});
                return (StatusCode::UNAUTHORIZED, Json(error)).into_response();
            }
            let text = answer(&model, &prompt);
            let mut chunks = vec![role];
            // Three pieces, split on characters (the text may hold any UTF-8).
            let chars: Vec<char> = text.chars().collect();
            for piece in chars.chunks(chars.len().div_ceil(3).max(1)) {
                let piece: String = piece.iter().collect();
                chunks.push((chunk(&model, json!({"content": piece}), None), pause));
            }
            chunks.push((chunk(&model, json!({}), Some("stop")), pause));
            chunks.push((Bytes::from_static(b"data: [DONE]\n\n"), pause));
            sse(chunks)
        }
    }
}
