//! What trying to break the server found, kept fixed: stuck connections and SIGTERM, a
//! world-readable database, lower-case `bearer`, names counted in bytes, a BOM upload,
//! unnamed fields of a bad upload, admin-token recovery, leases on held items, and a NUL
//! character in a rationale (PostgreSQL cannot store one).

mod common;
#[path = "common/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use axum::http::{header, Method, Request, StatusCode};
use common::{items_jsonl, Backend, TestApp};
use serde_json::json;
use server::Server;
use tiller_annotate::{Limits, Store};

/// Opens a connection that sends half a request line and then nothing.
fn stuck_connection(base: &str) -> TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .write_all(b"GET /healthz HT")
        .expect("half a request line");
    stream
}

#[tokio::test]
async fn a_stuck_client_is_cut_off_by_the_header_timeout_and_sigterm_exits_promptly() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("a.db");
    // A long grace: only the header timeout can end the stuck connection quickly.
    let mut server = Server::start_with(
        &db,
        &["--header-timeout-secs", "1", "--shutdown-grace-secs", "60"],
    )
    .await;
    let mut stuck = stuck_connection(&server.base);
    stuck
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    // The server closes it (possibly after a 408) once the header timeout passes.
    let mut buf = Vec::new();
    let read = stuck.read_to_end(&mut buf);
    assert!(
        read.is_ok(),
        "the server should close a connection that never sends its head: {read:?}"
    );
    let mut again = stuck_connection(&server.base);
    server.terminate();
    let (took, status) = server
        .wait_exit(Duration::from_secs(15))
        .expect("SIGTERM must end the server despite a stuck client");
    assert!(status.success(), "clean exit: {status:?}");
    assert!(took < Duration::from_secs(10), "exit took {took:?}");
    let _ = again.write_all(b"TP/1.1\r\n\r\n");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("cap.db");
    let server = Server::start_with(
        &db,
        &["--max-connections", "2", "--header-timeout-secs", "60"],
    )
    .await;
    let first = stuck_connection(&server.base);
    let _second = stuck_connection(&server.base);
    let health = format!("{}/healthz", server.base);
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(1500))
        .build()
        .expect("client");
    assert!(
        quick.get(&health).send().await.is_err(),
        "a third connection is not served while two are open"
    );
    drop(first);
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let reply = patient
        .get(&health)
        .send()
        .await
        .expect("served once one closed");
    assert!(reply.status().is_success());
}

#[tokio::test]
async fn sigterm_waits_for_stuck_connections_only_for_the_grace() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("g.db");
    // A header timeout far away: only the bounded shutdown wait can end this.
    let mut server = Server::start_with(
        &db,
        &["--header-timeout-secs", "600", "--shutdown-grace-secs", "1"],
    )
    .await;
    let _stuck = stuck_connection(&server.base);
    // Let the server accept it before the signal.
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.terminate();
    let (took, status) = server
        .wait_exit(Duration::from_secs(15))
        .expect("the shutdown wait is bounded");
    assert!(status.success(), "clean exit: {status:?}");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(8),
        "exit took {took:?}: it should wait about the 1 s grace, not forever"
    );
}

#[cfg(unix)]
#[test]
fn the_database_and_its_wal_and_shm_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("private.db");
    let store = Store::open(&db).expect("store");
    store
        .create_admin_token()
        .expect("a write, so the WAL exists");
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", db.display());
        let mode = std::fs::metadata(&path).expect(&path).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{path} has mode {mode:o}");
    }
}

async fn the_bearer_scheme_is_case_insensitive(backend: Backend) {
    let app = TestApp::on(backend);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let request = Request::builder()
            .method(Method::GET)
            .uri("/api/admin/campaigns")
            .header(header::AUTHORIZATION, format!("{scheme} {}", app.admin))
            .body(axum::body::Body::empty())
            .expect("request");
        let reply = app.raw(request).await;
        assert_eq!(reply.status, StatusCode::OK, "{scheme}: {}", reply.text);
    }
    let request = Request::builder()
        .uri("/api/admin/campaigns")
        .header(header::AUTHORIZATION, format!("Basic {}", app.admin))
        .body(axum::body::Body::empty())
        .expect("request");
    assert_eq!(app.raw(request).await.status, StatusCode::UNAUTHORIZED);
}

async fn names_are_limited_in_characters_not_bytes(backend: Backend) {
    let app = TestApp::on(backend);
    let emoji = "🙂".repeat(60); // 60 characters, 240 bytes
    let reply = app
        .post(
            "/api/admin/campaigns",
            &app.admin,
            json!({"name": emoji, "overlap": 1, "annotators": ["é".repeat(200)]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let reply = app
        .post(
            "/api/admin/campaigns",
            &app.admin,
            json!({"name": "x".repeat(201), "overlap": 1}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let message = reply.json["error"].as_str().expect("message");
    assert!(
        message.contains("`name`") && message.contains("1 to 200 characters (got 201)"),
        "{message}"
    );
}

async fn uploads_skip_a_bom_and_name_the_wrongly_typed_field(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, _) = app.campaign("c", 1, &[]).await;
    let with_bom = format!("\u{feff}{}", items_jsonl(2));
    let reply = app.upload(id, &app.admin, &with_bom).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.json["added"], 2);

    let cases = [
        (r#"{"prompt": 7}"#, "field `prompt`"),
        (r#"{"prompt": "p", "answers": "two"}"#, "field `answers`"),
        (
            r#"{"prompt": "p", "answers": [{"model": "a", "text": 1}, {"model": "b", "text": "t"}]}"#,
            "field `answers[0].text`",
        ),
    ];
    for (line, field) in cases {
        let body = format!("{}{line}\n", items_jsonl(1));
        let reply = app.upload(id, &app.admin, &body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{line}");
        let message = reply.json["error"].as_str().expect("message");
        assert!(
            message.starts_with("line 2: ") && message.contains(field),
            "{line}: {message}"
        );
    }
}

async fn rotating_the_admin_token_revokes_the_old_one(backend: Backend) {
    let app = TestApp::on(backend);
    assert_eq!(
        app.get("/api/admin/campaigns", &app.admin).await.status,
        StatusCode::OK
    );
    let fresh = app.store.rotate_admin_token().expect("rotate");
    assert_ne!(fresh, app.admin);
    assert_eq!(
        app.get("/api/admin/campaigns", &app.admin).await.status,
        StatusCode::UNAUTHORIZED,
        "the old admin link stops working"
    );
    assert_eq!(
        app.get("/api/admin/campaigns", &fresh).await.status,
        StatusCode::OK
    );
}

async fn an_expired_lease_returns_the_item_to_the_queue(backend: Backend) {
    let app = TestApp::with_limits_on(
        backend,
        Limits {
            lease: Duration::from_millis(50),
            ..Limits::default()
        },
    );
    let (id, tokens) = app.campaign("c", 1, &["ana", "ben"]).await;
    app.upload(id, &app.admin, &items_jsonl(1)).await;
    for token in &tokens {
        app.consent(token).await;
    }
    let held = app.next(&tokens[0]).await;
    let held_id = held.json["assignment"]["assignment_id"]
        .as_i64()
        .expect("ana holds the only item");
    let none = app.next(&tokens[1]).await;
    assert!(none.json["assignment"].is_null(), "{}", none.text);

    // Coming back within the lease keeps it; after the lease someone else gets it.
    tokio::time::sleep(Duration::from_millis(120)).await;
    let taken = app.next(&tokens[1]).await;
    let ben_id = taken.json["assignment"]["assignment_id"]
        .as_i64()
        .expect("ben gets the item ana left");
    assert_ne!(ben_id, held_id);

    // Ana's stale page votes: refused, the item is full again.
    let late = app
        .post(
            "/api/me/votes",
            &tokens[0],
            json!({"assignment_id": held_id, "choice": "A", "strength": "clear"}),
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.text);
    assert!(late.text.contains("expired"), "{}", late.text);
    let progress = app
        .get(&format!("/api/admin/campaigns/{id}/progress"), &app.admin)
        .await;
    assert_eq!(
        progress.json["items"][0]["assigned"], 1,
        "{}",
        progress.text
    );
    app.assert_progress_counters_agree();
}

async fn a_vote_on_an_expired_lease_counts_while_the_item_has_room(backend: Backend) {
    let app = TestApp::with_limits_on(
        backend,
        Limits {
            lease: Duration::from_millis(50),
            ..Limits::default()
        },
    );
    let (id, tokens) = app.campaign("c", 1, &["ana", "ben"]).await;
    app.upload(id, &app.admin, &items_jsonl(2)).await;
    for token in &tokens {
        app.consent(token).await;
    }
    let held = app.next(&tokens[0]).await;
    let held_id = held.json["assignment"]["assignment_id"]
        .as_i64()
        .expect("an item");
    let bens = app.next(&tokens[1]).await.json["assignment"]["item_id"].clone();
    tokio::time::sleep(Duration::from_millis(120)).await;
    // Ben comes back: his own item stays his, ana's expired lease is released.
    let again = app.next(&tokens[1]).await;
    assert_eq!(again.json["assignment"]["item_id"], bens, "{}", again.text);
    let vote = app
        .post(
            "/api/me/votes",
            &tokens[0],
            json!({"assignment_id": held_id, "choice": "B", "strength": "slight"}),
        )
        .await;
    assert_eq!(vote.status, StatusCode::CREATED, "{}", vote.text);
    app.assert_progress_counters_agree();
}

async fn a_rationale_with_a_nul_character_is_refused_by_field(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, tokens) = app.campaign("c", 1, &["ana"]).await;
    app.upload(id, &app.admin, &items_jsonl(1)).await;
    app.consent(&tokens[0]).await;
    let next = app.next(&tokens[0]).await;
    let assignment = next.json["assignment"]["assignment_id"].clone();
    let refused = app
        .post(
            "/api/me/votes",
            &tokens[0],
            json!({"assignment_id": assignment, "choice": "A", "strength": "clear", "rationale": "a\u{0}b"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    let message = refused.json["error"].as_str().expect("message");
    assert!(
        message.contains("`rationale`") && message.contains("NUL"),
        "{message}"
    );
    // Nothing was written and the assignment still takes a vote.
    let vote = app
        .post(
            "/api/me/votes",
            &tokens[0],
            json!({"assignment_id": assignment, "choice": "A", "strength": "clear", "rationale": "ab"}),
        )
        .await;
    assert_eq!(vote.status, StatusCode::CREATED, "{}", vote.text);
    assert_eq!(
        app.sql("SELECT rationale FROM votes"),
        vec![vec!["ab".to_string()]]
    );
}

on_both_backends!(
    the_bearer_scheme_is_case_insensitive,
    names_are_limited_in_characters_not_bytes,
    uploads_skip_a_bom_and_name_the_wrongly_typed_field,
    rotating_the_admin_token_revokes_the_old_one,
    an_expired_lease_returns_the_item_to_the_queue,
    a_vote_on_an_expired_lease_counts_while_the_item_has_room,
    a_rationale_with_a_nul_character_is_refused_by_field,
);
