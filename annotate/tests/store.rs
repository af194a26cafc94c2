//! The store and server plumbing: migrations, hashed tokens, timeouts, loopback
//! default, graceful shutdown.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::json;
use tiller_annotate::serve::serve_on;
use tiller_annotate::store::schema::SCHEMA_VERSION;
use tiller_annotate::{AppState, Limits, NewCampaign, ServeOptions, Store};

#[test]
fn migrations_are_versioned_idempotent_and_refuse_newer_databases() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("m.db");
    drop(Store::open(&path).expect("create"));
    drop(Store::open(&path).expect("reopen applies nothing twice"));
    let conn = rusqlite::Connection::open(&path).expect("raw");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
    conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .expect("bump");
    drop(conn);
    let error = Store::open(&path).err().expect("newer schema refused");
    assert!(
        error.to_string().contains("newer than this build"),
        "{error}"
    );
}

#[test]
fn tokens_are_stored_only_as_sha256() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("t.db");
    let store = Store::open(&path).expect("store");
    let admin = store.create_admin_token().expect("admin");
    let new = NewCampaign {
        name: "t".into(),
        guidelines: String::new(),
        consent: None,
        overlap: 1,
        annotators: vec!["a".into()],
        policy: Default::default(),
    };
    let (_, links) = store.create_campaign(new).expect("campaign");
    assert_eq!(
        links[0].url("http://127.0.0.1:8080/"),
        format!("http://127.0.0.1:8080/annotate#token={}", links[0].token)
    );
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("raw");
    let hashes: Vec<String> = conn
        .prepare("SELECT token_hash FROM annotators UNION ALL SELECT token_hash FROM admin_tokens")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(hashes.len(), 2);
    for token in [&admin, &links[0].token] {
        assert_eq!(token.len(), 64, "256-bit tokens");
        assert!(!hashes.contains(token), "raw token stored");
        let expected = {
            use sha2::{Digest, Sha256};
            Sha256::digest(token.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert!(hashes.contains(&expected));
    }
    // Nothing in the database files contains a raw token.
    drop(conn);
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(admin.as_str()) && !text.contains(links[0].token.as_str()));
    }
}

/// A request body that never delivers a byte.
struct StalledBody;

impl http_body::Body for StalledBody {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

#[tokio::test]
async fn a_request_that_stalls_gets_408() {
    let limits = Limits {
        request_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let app = TestApp::with_limits(limits);
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/api/admin/campaigns")
        .header("authorization", format!("Bearer {}", app.admin))
        .header("content-type", "application/json")
        .body(axum::body::Body::new(StalledBody))
        .expect("request");
    let reply = app.raw(request).await;
    assert_eq!(reply.status, StatusCode::REQUEST_TIMEOUT);
    let list = app.get("/api/admin/campaigns", &app.admin).await;
    assert_eq!(
        list.json["campaigns"],
        serde_json::json!([]),
        "nothing was created"
    );
}

#[tokio::test]
async fn serves_on_loopback_by_default_and_shuts_down_gracefully() {
    assert!(ServeOptions::default().bind.ip().is_loopback());
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("s.db")).expect("store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on(listener, AppState::new(store), async move {
        let _ = stopped.await;
    }));
    let health = reqwest::get(format!("{base}/healthz"))
        .await
        .expect("health");
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    stop.send(()).expect("signal");
    let finished = tokio::time::timeout(Duration::from_secs(10), server).await;
    assert!(
        matches!(finished, Ok(Ok(Ok(())))),
        "server returned after the shutdown signal"
    );
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "no longer listening"
    );
}

#[test]
fn opening_a_database_in_a_missing_directory_names_the_path() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("no/such/dir/a.db");
    let error = Store::open(&path).err().expect("cannot open");
    assert!(error.to_string().contains("no/such/dir/a.db"), "{error}");
}

#[test]
fn postgres_migrations_are_versioned_idempotent_and_refuse_newer_databases() {
    let cluster = common::pg::Cluster::get();
    let name = cluster.create_database();
    let url = cluster.url(&name);
    drop(Store::open(url.as_ref()).expect("create"));
    drop(Store::open(url.as_ref()).expect("reopen applies nothing twice"));
    assert_eq!(
        cluster.query(&name, "SELECT version FROM schema_version"),
        SCHEMA_VERSION.to_string()
    );
    assert_eq!(
        cluster.query(&name, "SELECT COUNT(*) FROM schema_version"),
        "1"
    );
    assert!(cluster.psql(
        &name,
        &format!("UPDATE schema_version SET version = {}", SCHEMA_VERSION + 1)
    ));
    let error = Store::open(url.as_ref())
        .err()
        .expect("newer schema refused");
    assert!(
        error.to_string().contains("newer than this build"),
        "{error}"
    );
}

#[test]
fn an_unreachable_postgres_server_is_an_error_naming_the_url_without_its_password() {
    // Port 1 on loopback: nothing listens there.
    let error = Store::open("postgres://tiller:secret@127.0.0.1:1/nothing".as_ref())
        .err()
        .expect("refused");
    let message = error.to_string();
    assert!(
        message.contains("postgres://tiller:***@127.0.0.1:1/nothing"),
        "{message}"
    );
    assert!(!message.contains("secret"), "{message}");
}

#[test]
fn a_postgres_database_that_cannot_hold_every_text_is_refused_naming_its_encoding() {
    let cluster = common::pg::Cluster::get();
    let name = format!("latin_{}", std::process::id());
    assert!(cluster.psql(
        "postgres",
        &format!("CREATE DATABASE {name} ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
    ));
    let error = Store::open(cluster.url(&name).as_ref())
        .err()
        .expect("refused");
    assert!(error.to_string().contains("encoding LATIN1"), "{error}");
}

/// A vote is one statement without a savepoint on PostgreSQL; when that statement fails
/// anyway (here: its function was dropped under the server), its batch is rolled back,
/// nothing is acknowledged, and the writer goes on with the next batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_postgres_queue_call_rolls_back_its_batch_and_the_writer_goes_on() {
    let app = TestApp::on(common::Backend::Postgres);
    let (id, tokens) = app.campaign("c", 1, &["ana"]).await;
    app.upload(id, &app.admin, &common::items_jsonl(2)).await;
    app.consent(&tokens[0]).await;
    let first = app.next(&tokens[0]).await;
    let assignment = first.json["assignment"]["assignment_id"].clone();
    assert!(assignment.is_i64(), "{}", first.text);

    let url = app.store.path().to_string_lossy().into_owned();
    let name = url.rsplit('/').next().expect("database name").to_string();
    let cluster = common::pg::Cluster::get();
    assert!(cluster.psql(
        &name,
        "DO $$ DECLARE f regprocedure; BEGIN
           FOR f IN SELECT oid::regprocedure FROM pg_proc WHERE proname LIKE 'tiller_vote_v%' LOOP
             EXECUTE 'DROP FUNCTION ' || f;
           END LOOP; END $$"
    ));
    let vote = json!({"assignment_id": assignment, "choice": "A", "strength": "clear"});
    let failed = app.post("/api/me/votes", &tokens[0], vote.clone()).await;
    assert!(
        failed.status.is_server_error(),
        "{}: {}",
        failed.status,
        failed.text
    );
    assert_eq!(cluster.query(&name, "SELECT COUNT(*) FROM votes"), "0");

    // The writer's next batch runs on a clean connection: the same item is still shown.
    let again = app.next(&tokens[0]).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.json["assignment"]["assignment_id"], assignment);

    // Opening a store installs the functions again; the vote then counts.
    drop(Store::open(url.as_ref()).expect("reopen"));
    let counted = app.post("/api/me/votes", &tokens[0], vote).await;
    assert_eq!(counted.status, StatusCode::CREATED, "{}", counted.text);
    assert_eq!(cluster.query(&name, "SELECT COUNT(*) FROM votes"), "1");

    // A call that fails while it runs (its vote's INSERT breaks a constraint), with the
    // batch's COMMIT already sent behind it: nothing is committed or acknowledged.
    let second = app.next(&tokens[0]).await;
    let assignment = second.json["assignment"]["assignment_id"].clone();
    assert!(cluster.psql(
        &name,
        "ALTER TABLE votes ADD CONSTRAINT no_votes CHECK (false) NOT VALID"
    ));
    let vote = json!({"assignment_id": assignment, "choice": "B", "strength": "slight"});
    let failed = app.post("/api/me/votes", &tokens[0], vote.clone()).await;
    assert!(failed.status.is_server_error(), "{}", failed.text);
    assert_eq!(cluster.query(&name, "SELECT COUNT(*) FROM votes"), "1");
    assert!(cluster.psql(&name, "ALTER TABLE votes DROP CONSTRAINT no_votes"));
    let counted = app.post("/api/me/votes", &tokens[0], vote).await;
    assert_eq!(counted.status, StatusCode::CREATED, "{}", counted.text);
    assert_eq!(cluster.query(&name, "SELECT COUNT(*) FROM votes"), "2");
}
