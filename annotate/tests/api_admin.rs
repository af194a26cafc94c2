//! Admin API, pages, health, limits and authorization boundaries, through `oneshot`.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::{items_jsonl, Backend, TestApp};
use serde_json::json;
use tiller_annotate::Limits;

async fn health_pages_and_static_files_carry_a_strict_csp(backend: Backend) {
    let app = TestApp::on(backend);
    let health = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json["status"], "ok");
    assert_eq!(
        health.json["schema_version"],
        health.json["supported_schema_version"]
    );

    for (path, content_type) in [
        ("/", "text/html"),
        ("/annotate", "text/html"),
        ("/admin", "text/html"),
        ("/static/style.css", "text/css"),
        ("/static/common.js", "text/javascript"),
        ("/static/annotate.js", "text/javascript"),
        ("/static/admin.js", "text/javascript"),
    ] {
        let reply = app.send(Method::GET, path, None, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let got = reply.headers[header::CONTENT_TYPE].to_str().expect("ascii");
        assert!(got.starts_with(content_type), "{path}: {got}");
        let csp = reply.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert_eq!(reply.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    // No page carries inline script or inline style attributes (the CSP would block them).
    for path in ["/", "/annotate", "/admin"] {
        let html = app.send(Method::GET, path, None, None).await.text;
        for script in html.match_indices("<script") {
            let tag_end = html[script.0..].find('>').expect("closed tag") + script.0;
            assert!(
                html[script.0..tag_end].contains("src="),
                "{path} has an inline script"
            );
        }
        assert!(
            !html.contains("style=") && !html.contains("onclick"),
            "{path} has inline style or handlers"
        );
    }
    let missing = app.send(Method::GET, "/nope", None, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.json["error"]
        .as_str()
        .expect("message")
        .contains("GET /nope"));
}

async fn admin_endpoints_refuse_missing_unknown_and_annotator_tokens(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, tokens) = app.campaign("c1", 1, &["ann"]).await;
    let paths = [
        "/api/admin/campaigns".to_string(),
        format!("/api/admin/campaigns/{id}/progress"),
        format!("/api/admin/campaigns/{id}/agreement"),
        format!("/api/admin/campaigns/{id}/leaderboard"),
        format!("/api/admin/campaigns/{id}/export"),
    ];
    for path in &paths {
        let none = app.send(Method::GET, path, None, None).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(none.json["error"]
            .as_str()
            .expect("msg")
            .contains("Authorization"));
        let unknown = app.get(path, "not-a-token").await;
        assert_eq!(unknown.status, StatusCode::UNAUTHORIZED, "{path}");
        let annotator = app.get(path, &tokens[0]).await;
        assert_eq!(annotator.status, StatusCode::FORBIDDEN, "{path}");
        assert!(annotator.json["error"]
            .as_str()
            .expect("msg")
            .contains("admin token"));
    }
    let post = app
        .post(
            "/api/admin/campaigns",
            &tokens[0],
            json!({"name": "x", "overlap": 1}),
        )
        .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN);
    let upload = app.upload(id, &tokens[0], &items_jsonl(1)).await;
    assert_eq!(upload.status, StatusCode::FORBIDDEN);
    let add = app
        .post(
            &format!("/api/admin/campaigns/{id}/annotators"),
            &tokens[0],
            json!({"names": ["x"]}),
        )
        .await;
    assert_eq!(add.status, StatusCode::FORBIDDEN);
    // Nothing was created by the refused requests.
    let list = app.get("/api/admin/campaigns", &app.admin).await;
    assert_eq!(list.json["campaigns"].as_array().expect("list").len(), 1);
    assert_eq!(list.json["campaigns"][0]["items"], 0);
    assert_eq!(list.json["campaigns"][0]["annotators"], 1);
    // The admin does not vote.
    let me = app.get("/api/me", &app.admin).await;
    assert_eq!(me.status, StatusCode::FORBIDDEN);
}

async fn campaign_creation_validates_every_field(backend: Backend) {
    let app = TestApp::on(backend);
    let created = app
        .post(
            "/api/admin/campaigns",
            &app.admin,
            json!({"name": "c", "overlap": 2, "annotators": ["a", "b"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let links = created.json["annotators"].as_array().expect("links");
    assert_eq!(links.len(), 2);
    let token = links[0]["token"].as_str().expect("token");
    assert_eq!(links[0]["path"], format!("/annotate#token={token}"));
    assert!(created.json["campaign"]["consent"]
        .as_str()
        .expect("consent")
        .contains("pseudonym"));

    let cases = [
        (
            json!({"name": "c", "overlap": 1}),
            StatusCode::CONFLICT,
            "already exists",
        ),
        (
            json!({"name": "d", "overlap": 0}),
            StatusCode::BAD_REQUEST,
            "`overlap`",
        ),
        (
            json!({"name": " ", "overlap": 1}),
            StatusCode::BAD_REQUEST,
            "`name`",
        ),
        (json!({"name": "d"}), StatusCode::BAD_REQUEST, "overlap"),
        (
            json!({"name": "d", "overlap": "two"}),
            StatusCode::BAD_REQUEST,
            "overlap",
        ),
        (
            json!({"name": "d", "overlap": 1, "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (
            json!({"name": "d", "overlap": 1, "annotators": ["x", "x"]}),
            StatusCode::CONFLICT,
            "\"x\"",
        ),
        (
            json!({"name": "d", "overlap": 1, "annotators": [""]}),
            StatusCode::BAD_REQUEST,
            "annotators[0]",
        ),
    ];
    for (body, status, needle) in cases {
        let reply = app
            .post("/api/admin/campaigns", &app.admin, body.clone())
            .await;
        assert_eq!(reply.status, status, "{body}: {}", reply.text);
        let message = reply.json["error"].as_str().expect("message");
        assert!(message.contains(needle), "{body}: {message}");
    }
    // A failed creation with duplicate annotators created no campaign "d".
    let list = app.get("/api/admin/campaigns", &app.admin).await;
    assert_eq!(list.json["campaigns"].as_array().expect("list").len(), 1);

    let malformed = Request::builder()
        .method(Method::POST)
        .uri("/api/admin/campaigns")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.admin))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"name\": \"e\", "))
        .expect("request");
    let reply = app.raw(malformed).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.json["error"]
        .as_str()
        .expect("message")
        .contains("bad request body"));

    let no_type = Request::builder()
        .method(Method::POST)
        .uri("/api/admin/campaigns")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.admin))
        .body(Body::from("{\"name\": \"e\", \"overlap\": 1}"))
        .expect("request");
    let reply = app.raw(no_type).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.json["error"]
        .as_str()
        .expect("message")
        .contains("Content-Type"));
}

async fn uploads_are_all_or_nothing_and_name_the_bad_line(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, _) = app.campaign("c", 1, &["a"]).await;
    let ok = app.upload(id, &app.admin, &items_jsonl(3)).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    assert_eq!(ok.json["added"], 3);
    assert_eq!(ok.json["ready"], 3);

    let messages = r#"{"messages": [{"role": "user", "content": "hi"}], "answers": [{"model": "m", "text": "a"}, {"model": "n", "text": "b"}]}
{"prompt": "only a prompt"}"#;
    let mixed = app.upload(id, &app.admin, messages).await;
    assert_eq!(mixed.status, StatusCode::CREATED, "{}", mixed.text);
    assert_eq!(
        (mixed.json["ready"].as_i64(), mixed.json["pending"].as_i64()),
        (Some(1), Some(1))
    );

    let good = items_jsonl(1);
    let cases = [
        (format!("{good}{{\"prompt\": \"x\", \"answers\": [{{\"model\": \"a\", \"text\": \"b\"}}]}}\n"), "line 2", "exactly 2"),
        (format!("{good}not json\n"), "line 2", ""),
        ("{\"answers\": []}\n".to_string(), "line 1", "prompt"),
        ("{\"prompt\": \"p\", \"messages\": []}\n".to_string(), "line 1", "not both"),
        ("{\"prompt\": \"p\", \"answerz\": []}\n".to_string(), "line 1", "answerz"),
        ("{\"prompt\": \"  \"}\n".to_string(), "line 1", "`prompt`"),
        (
            "{\"prompt\": \"p\", \"answers\": [{\"model\": \"\", \"text\": \"a\"}, {\"model\": \"b\", \"text\": \"c\"}]}\n".to_string(),
            "line 1",
            "answers[0].model",
        ),
        ("\n\n".to_string(), "no items", ""),
    ];
    for (body, line, needle) in cases {
        let reply = app.upload(id, &app.admin, &body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        let message = reply.json["error"].as_str().expect("message");
        assert!(
            message.contains(line) && message.contains(needle),
            "{body}: {message}"
        );
    }
    let summary = app.get("/api/admin/campaigns", &app.admin).await;
    assert_eq!(
        summary.json["campaigns"][0]["items"], 5,
        "failed uploads added nothing"
    );

    let unknown = app.upload(999, &app.admin, &good).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.json["error"]
        .as_str()
        .expect("message")
        .contains("campaign 999"));
    let bad_id = app
        .get("/api/admin/campaigns/abc/progress", &app.admin)
        .await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);
    assert!(bad_id.json["error"]
        .as_str()
        .expect("message")
        .contains("campaign id"));
    for path in ["progress", "agreement", "leaderboard", "export"] {
        let reply = app
            .get(&format!("/api/admin/campaigns/77/{path}"), &app.admin)
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn oversize_bodies_get_413_and_change_nothing() {
    let limits = Limits {
        json_body_bytes: 1024,
        upload_bytes: 4096,
        ..Limits::default()
    };
    let app = TestApp::with_limits(limits);
    let (id, tokens) = app.campaign("c", 1, &["a"]).await;
    let big_upload = items_jsonl(200);
    assert!(big_upload.len() > 4096);
    let reply = app.upload(id, &app.admin, &big_upload).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text
    );
    assert!(reply.json["error"]
        .as_str()
        .expect("message")
        .contains("limit"));
    // The upload route's own limit is larger than the JSON limit.
    let small_upload = items_jsonl(10);
    assert!(small_upload.len() > 1024 && small_upload.len() < 4096);
    assert_eq!(
        app.upload(id, &app.admin, &small_upload).await.status,
        StatusCode::CREATED
    );

    app.consent(&tokens[0]).await;
    let next = app.next(&tokens[0]).await;
    let assignment_id = next.json["assignment"]["assignment_id"]
        .as_i64()
        .expect("assignment");
    let vote = json!({"assignment_id": assignment_id, "choice": "A", "strength": "clear", "rationale": "x".repeat(2000)});
    let reply = app.post("/api/me/votes", &tokens[0], vote).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let progress = app
        .get(&format!("/api/admin/campaigns/{id}/progress"), &app.admin)
        .await;
    assert_eq!(progress.json["annotators"][0]["done"], 0);
}

async fn annotators_can_be_added_later(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, _) = app.campaign("c", 1, &["a"]).await;
    let reply = app
        .post(
            &format!("/api/admin/campaigns/{id}/annotators"),
            &app.admin,
            json!({"names": ["b", "c"]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.json["annotators"].as_array().expect("links").len(), 2);
    let token = reply.json["annotators"][1]["token"]
        .as_str()
        .expect("token");
    let me = app.get("/api/me", token).await;
    assert_eq!(me.json["name"], "c");
    let dup = app
        .post(
            &format!("/api/admin/campaigns/{id}/annotators"),
            &app.admin,
            json!({"names": ["a"]}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let unknown = app
        .post(
            "/api/admin/campaigns/42/annotators",
            &app.admin,
            json!({"names": ["z"]}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

on_both_backends!(
    health_pages_and_static_files_carry_a_strict_csp,
    admin_endpoints_refuse_missing_unknown_and_annotator_tokens,
    campaign_creation_validates_every_field,
    uploads_are_all_or_nothing_and_name_the_bad_line,
    annotators_can_be_added_later,
);
