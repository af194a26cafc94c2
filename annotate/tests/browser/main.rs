//! The real pages in headless Chromium over WebDriver (`fantoccini`, see `driver.rs`): the
//! annotator's page (`annotator.rs`), the admin's campaign, upload and export
//! (`admin.rs`), gold, disputes and consent (`gold.rs`), and an arena campaign
//! (`arena.rs`). What they share is here: the server on a free port and where
//! screenshots go.

mod admin;
mod annotator;
mod arena;
mod driver;
#[allow(dead_code)] // the arena's scripted model endpoint, shared with tests/arena
#[path = "../arena/endpoint.rs"]
mod endpoint;
mod gold;

use std::path::PathBuf;

use serde_json::{json, Value};

use tiller_annotate::serve::serve_on;
use tiller_annotate::{AppState, Store};

/// The Enter key, as WebDriver spells it.
const ENTER: &str = "\u{E007}";

/// Serves `store` on a free loopback port until the returned sender is dropped.
async fn start_server(store: &Store) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(store.clone());
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        serve_on(listener, state, shutdown).await.expect("serve");
    });
    (base, stop)
}

/// Where a screenshot named `name` is kept for a person to look at.
fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// Consents and votes through the HTTP API until the queue is empty: `pick(answer_a,
/// item_id)` returns the choice ("A" or "B"), cast with `strength`.
async fn vote_over_http(
    base: &str,
    token: &str,
    strength: &str,
    pick: impl Fn(&str, i64) -> &'static str,
) {
    let http = reqwest::Client::new();
    let auth = format!("Bearer {token}");
    let consent = http
        .post(format!("{base}/api/me/consent"))
        .header("Authorization", &auth)
        .json(&json!({"accept": true}))
        .send()
        .await
        .expect("consent");
    assert!(consent.status().is_success());
    loop {
        let next: Value = http
            .post(format!("{base}/api/me/next"))
            .header("Authorization", &auth)
            .send()
            .await
            .expect("next")
            .json()
            .await
            .expect("json");
        let Some(a) = next["assignment"].as_object() else {
            break;
        };
        let choice = pick(
            a["answer_a"].as_str().expect("text"),
            a["item_id"].as_i64().expect("item"),
        );
        let vote =
            json!({"assignment_id": a["assignment_id"], "choice": choice, "strength": strength});
        let reply = http
            .post(format!("{base}/api/me/votes"))
            .header("Authorization", &auth)
            .json(&vote)
            .send()
            .await
            .expect("vote");
        assert_eq!(reply.status(), reqwest::StatusCode::CREATED);
    }
}
