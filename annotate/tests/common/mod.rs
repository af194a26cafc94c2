//! Shared helpers for the integration tests: a temporary store, the app, and requests
//! through `tower::ServiceExt::oneshot`.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tempfile::TempDir;
use tiller_annotate::{app, AppState, Limits, Store};
use tower::ServiceExt;

pub mod pg;

/// Where a test's store lives; store tests run on both (see [`on_both_backends!`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// A fresh database on the test process's throwaway cluster ([`pg::Cluster`]).
    Postgres,
}

impl Backend {
    /// A new, empty store location: a file in `dir`, or a new PostgreSQL database's URL.
    pub fn location(self, dir: &std::path::Path) -> std::path::PathBuf {
        match self {
            Backend::Sqlite => dir.join("annotations.db"),
            Backend::Postgres => pg::Cluster::get().fresh_url().into(),
        }
    }
}

/// Runs each listed `async fn name(backend: Backend)` as two tests, `sqlite::name` and
/// `postgres::name`, on a multi-threaded runtime.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

pub struct TestApp {
    pub dir: TempDir,
    pub backend: Backend,
    pub store: Store,
    pub admin: String,
    limits: Limits,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub json: Value,
    pub text: String,
}

impl TestApp {
    pub fn new() -> TestApp {
        TestApp::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> TestApp {
        TestApp::with_limits_on(Backend::Sqlite, limits)
    }

    /// A new app on a fresh store of `backend`.
    pub fn on(backend: Backend) -> TestApp {
        TestApp::with_limits_on(backend, Limits::default())
    }

    pub fn with_limits_on(backend: Backend, limits: Limits) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&backend.location(dir.path())).expect("open store");
        let admin = store.create_admin_token().expect("admin token");
        TestApp {
            dir,
            backend,
            store,
            admin,
            limits,
        }
    }

    /// Asserts that each annotator's status counters, which triggers keep (schema
    /// migration 4), equal a count of their assignments: what progress would have been
    /// had it been counted.
    pub fn assert_progress_counters_agree(&self) {
        let rows = self.sql(
            "SELECT n.name, n.voted_count, n.skipped_count, n.pending_count,
                    (SELECT COUNT(*) FROM assignments a WHERE a.annotator_id = n.id AND a.status = 'voted'),
                    (SELECT COUNT(*) FROM assignments a WHERE a.annotator_id = n.id AND a.status = 'skipped'),
                    (SELECT COUNT(*) FROM assignments a WHERE a.annotator_id = n.id AND a.status = 'pending')
             FROM annotators n ORDER BY n.id",
        );
        assert!(!rows.is_empty(), "no annotators");
        for row in rows {
            assert_eq!(
                row[1..4],
                row[4..7],
                "{}: counters (voted, skipped, pending) against counts",
                row[0]
            );
        }
    }

    /// Runs `sql` straight on the store's database (no API), every value as text
    /// (NULL as ""), so a test can look at what is stored on either backend.
    pub fn sql(&self, sql: &str) -> Vec<Vec<String>> {
        match self.backend {
            Backend::Sqlite => {
                use rusqlite::types::ValueRef;
                let conn = rusqlite::Connection::open(self.store.path()).expect("raw");
                let mut stmt = conn.prepare(sql).expect("prepare");
                let columns = stmt.column_count();
                let rows = stmt
                    .query_map([], |row| {
                        (0..columns)
                            .map(|i| {
                                Ok(match row.get_ref(i)? {
                                    ValueRef::Null => String::new(),
                                    ValueRef::Integer(v) => v.to_string(),
                                    ValueRef::Real(v) => v.to_string(),
                                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                                        String::from_utf8_lossy(t).into_owned()
                                    }
                                })
                            })
                            .collect::<rusqlite::Result<Vec<String>>>()
                    })
                    .expect("query")
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .expect("rows");
                rows
            }
            Backend::Postgres => {
                let url = self.store.path().to_string_lossy().into_owned();
                let name = url.rsplit('/').next().expect("database name");
                let text = pg::Cluster::get().query(name, sql);
                text.lines()
                    .filter(|line| !line.is_empty())
                    .map(|line| line.split('|').map(str::to_string).collect())
                    .collect()
            }
        }
    }

    pub fn router(&self) -> Router {
        app(AppState {
            store: self.store.clone(),
            limits: self.limits,
        })
    }

    /// Sends a request; `body` is JSON unless `raw` is given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(value) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(value.to_string())
            }
            None => Body::empty(),
        };
        self.raw(builder.body(body).expect("request")).await
    }

    pub async fn raw(&self, request: Request<Body>) -> Reply {
        let response = self
            .router()
            .oneshot(request)
            .await
            .expect("infallible router");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
            text,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(Method::GET, path, Some(token), None).await
    }

    /// `POST /api/me/next` (it assigns, so it is not a GET).
    pub async fn next(&self, token: &str) -> Reply {
        self.send(Method::POST, "/api/me/next", Some(token), None)
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(token), Some(body)).await
    }

    /// Uploads JSONL text as a campaign's items.
    pub async fn upload(&self, campaign_id: i64, token: &str, jsonl: &str) -> Reply {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("/api/admin/campaigns/{campaign_id}/items"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .body(Body::from(jsonl.to_string()))
            .expect("request");
        self.raw(request).await
    }

    /// Creates a campaign through the API; returns its id and the annotator tokens.
    pub async fn campaign(
        &self,
        name: &str,
        overlap: u32,
        annotators: &[&str],
    ) -> (i64, Vec<String>) {
        let reply = self
            .post(
                "/api/admin/campaigns",
                &self.admin,
                json!({ "name": name, "guidelines": "Pick the more helpful answer.", "overlap": overlap, "annotators": annotators }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let id = reply.json["campaign"]["id"].as_i64().expect("campaign id");
        let tokens = reply.json["annotators"]
            .as_array()
            .expect("annotators")
            .iter()
            .map(|a| a["token"].as_str().expect("token").to_string())
            .collect();
        (id, tokens)
    }

    /// Accepts consent for an annotator.
    pub async fn consent(&self, token: &str) {
        let reply = self
            .post("/api/me/consent", token, json!({ "accept": true }))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
}

/// `n` JSONL items with answers from models "alpha" and "beta".
pub fn items_jsonl(n: usize) -> String {
    (0..n)
        .map(|i| {
            json!({
                "id": format!("p{i}"),
                "prompt": format!("Question {i}?"),
                "answers": [{ "model": "alpha", "text": format!("alpha answer {i}") },
                            { "model": "beta", "text": format!("beta answer {i}") }]
            })
            .to_string()
                + "\n"
        })
        .collect()
}
