//! The annotator's API: consent, the queue, votes, skips, undo, and every way a vote
//! can be refused.

mod common;

use axum::http::StatusCode;
use common::{items_jsonl, Backend, TestApp};
use serde_json::{json, Value};

fn assignment_id(next: &common::Reply) -> i64 {
    next.json["assignment"]["assignment_id"]
        .as_i64()
        .expect("an assignment")
}

async fn consent_is_required_and_recorded_once(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, tokens) = app.campaign("c", 1, &["a"]).await;
    app.upload(id, &app.admin, &items_jsonl(2)).await;
    let me = app.get("/api/me", &tokens[0]).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json["consent_at"], Value::Null);
    assert_eq!(
        me.json["campaign"]["guidelines"],
        "Pick the more helpful answer."
    );
    assert_eq!(
        me.json["progress"],
        json!({"done": 0, "skipped": 0, "remaining": 2})
    );

    for (method_path, body) in [(
        "/api/me/votes",
        json!({"assignment_id": 1, "choice": "A", "strength": "clear"}),
    )] {
        let reply = app.post(method_path, &tokens[0], body).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
    }
    let next = app.next(&tokens[0]).await;
    assert_eq!(next.status, StatusCode::FORBIDDEN);
    assert!(next.json["error"]
        .as_str()
        .expect("message")
        .contains("consent"));

    let decline = app
        .post("/api/me/consent", &tokens[0], json!({"accept": false}))
        .await;
    assert_eq!(decline.status, StatusCode::BAD_REQUEST);
    assert!(decline.json["error"]
        .as_str()
        .expect("message")
        .contains("`accept`"));

    let first = app
        .post("/api/me/consent", &tokens[0], json!({"accept": true}))
        .await;
    let first_at = first.json["consent_at"].as_i64().expect("time");
    let second = app
        .post("/api/me/consent", &tokens[0], json!({"accept": true}))
        .await;
    assert_eq!(
        second.json["consent_at"].as_i64(),
        Some(first_at),
        "the first consent time is kept"
    );
    let progress = app
        .get(&format!("/api/admin/campaigns/{id}/progress"), &app.admin)
        .await;
    assert_eq!(
        progress.json["annotators"][0]["consent_at"].as_i64(),
        Some(first_at)
    );
}

async fn queue_vote_replay_skip_undo_and_finish(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, tokens) = app.campaign("c", 1, &["a"]).await;
    app.upload(id, &app.admin, &items_jsonl(3)).await;
    let token = &tokens[0];
    app.consent(token).await;

    let first = app.next(token).await;
    let again = app.next(token).await;
    assert_eq!(
        assignment_id(&first),
        assignment_id(&again),
        "the current item stays until voted"
    );
    let shown = [
        first.json["assignment"]["answer_a"].clone(),
        first.json["assignment"]["answer_b"].clone(),
    ];
    assert!(shown.contains(&json!("alpha answer 0")) && shown.contains(&json!("beta answer 0")));
    assert!(
        first.json["assignment"].get("model_1").is_none(),
        "annotators judge blind"
    );

    let a1 = assignment_id(&first);
    let bad_votes = [
        (
            json!({"assignment_id": a1, "choice": "A"}),
            StatusCode::BAD_REQUEST,
            "`strength`",
        ),
        (
            json!({"assignment_id": a1, "choice": "C", "strength": "clear"}),
            StatusCode::BAD_REQUEST,
            "choice",
        ),
        (
            json!({"assignment_id": a1, "choice": "A", "strength": "huge"}),
            StatusCode::BAD_REQUEST,
            "strength",
        ),
        (
            json!({"assignment_id": "one", "choice": "tie"}),
            StatusCode::BAD_REQUEST,
            "assignment_id",
        ),
        (
            json!({"choice": "tie"}),
            StatusCode::BAD_REQUEST,
            "assignment_id",
        ),
        (
            json!({"assignment_id": a1, "choice": "tie", "extra": 1}),
            StatusCode::BAD_REQUEST,
            "extra",
        ),
        (
            json!({"assignment_id": a1, "choice": "tie", "rationale": "x".repeat(5001)}),
            StatusCode::BAD_REQUEST,
            "`rationale`",
        ),
        (
            json!({"assignment_id": 424242, "choice": "tie"}),
            StatusCode::NOT_FOUND,
            "assignment 424242",
        ),
    ];
    for (body, status, needle) in bad_votes {
        let reply = app.post("/api/me/votes", token, body.clone()).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.text);
        assert!(
            reply.json["error"]
                .as_str()
                .expect("message")
                .contains(needle),
            "{body}: {}",
            reply.text
        );
    }

    let vote = json!({"assignment_id": a1, "choice": "A", "strength": "strong", "rationale": "more precise"});
    let ok = app.post("/api/me/votes", token, vote.clone()).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let replay = app.post("/api/me/votes", token, vote.clone()).await;
    assert_eq!(replay.status, StatusCode::CONFLICT);
    assert!(replay.json["error"]
        .as_str()
        .expect("message")
        .contains("already has a vote"));

    let second = app.next(token).await;
    let a2 = assignment_id(&second);
    assert_ne!(a1, a2);
    assert_eq!(
        second.json["progress"],
        json!({"done": 1, "skipped": 0, "remaining": 2})
    );
    let skipped = app
        .post("/api/me/skip", token, json!({"assignment_id": a2}))
        .await;
    assert_eq!(skipped.status, StatusCode::OK);
    let skip_again = app
        .post("/api/me/skip", token, json!({"assignment_id": a2}))
        .await;
    assert_eq!(skip_again.status, StatusCode::CONFLICT);
    let vote_skipped = app
        .post(
            "/api/me/votes",
            token,
            json!({"assignment_id": a2, "choice": "tie"}),
        )
        .await;
    assert_eq!(vote_skipped.status, StatusCode::CONFLICT);
    assert!(vote_skipped.json["error"]
        .as_str()
        .expect("message")
        .contains("skipped"));

    let third = app.next(token).await;
    let a3 = assignment_id(&third);
    assert!(
        a3 != a1 && a3 != a2,
        "a skipped item never comes back to the same annotator"
    );
    assert_eq!(
        app.post(
            "/api/me/votes",
            token,
            json!({"assignment_id": a3, "choice": "both_bad"})
        )
        .await
        .status,
        StatusCode::CREATED
    );

    // Undo brings the last voted item back as the current one; voting again works.
    let undo = app.post("/api/me/undo", token, json!({})).await;
    assert_eq!(undo.status, StatusCode::OK, "{}", undo.text);
    assert_eq!(undo.json["undone"]["assignment_id"], a3);
    let back = app.next(token).await;
    assert_eq!(assignment_id(&back), a3);
    assert_eq!(
        app.post(
            "/api/me/votes",
            token,
            json!({"assignment_id": a3, "choice": "tie"})
        )
        .await
        .status,
        StatusCode::CREATED
    );

    let done = app.next(token).await;
    assert_eq!(done.json["assignment"], Value::Null);
    assert_eq!(
        done.json["progress"],
        json!({"done": 2, "skipped": 1, "remaining": 0})
    );

    // Undo twice walks back through the votes; with none left it is a conflict.
    assert_eq!(
        app.post("/api/me/undo", token, json!({})).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.post("/api/me/undo", token, json!({})).await.status,
        StatusCode::OK
    );
    let nothing = app.post("/api/me/undo", token, json!({})).await;
    assert_eq!(nothing.status, StatusCode::CONFLICT);
    app.assert_progress_counters_agree();
    assert!(nothing.json["error"]
        .as_str()
        .expect("message")
        .contains("no vote to undo"));
}

async fn annotators_touch_only_their_own_assignments(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, tokens) = app.campaign("c", 2, &["a", "b"]).await;
    app.upload(id, &app.admin, &items_jsonl(2)).await;
    for token in &tokens {
        app.consent(token).await;
    }
    let a_next = app.next(&tokens[0]).await;
    let a_assignment = assignment_id(&a_next);
    let steal = app
        .post(
            "/api/me/votes",
            &tokens[1],
            json!({"assignment_id": a_assignment, "choice": "tie"}),
        )
        .await;
    assert_eq!(
        steal.status,
        StatusCode::NOT_FOUND,
        "someone else's assignment is invisible"
    );
    let skip = app
        .post(
            "/api/me/skip",
            &tokens[1],
            json!({"assignment_id": a_assignment}),
        )
        .await;
    assert_eq!(skip.status, StatusCode::NOT_FOUND);
    // b's undo cannot withdraw a's vote.
    app.post(
        "/api/me/votes",
        &tokens[0],
        json!({"assignment_id": a_assignment, "choice": "tie"}),
    )
    .await;
    let undo = app.post("/api/me/undo", &tokens[1], json!({})).await;
    assert_eq!(undo.status, StatusCode::CONFLICT);
    let progress = app
        .get(&format!("/api/admin/campaigns/{id}/progress"), &app.admin)
        .await;
    assert_eq!(progress.json["annotators"][0]["done"], 1);
    assert_eq!(progress.json["annotators"][1]["done"], 0);
}

async fn overlap_caps_how_many_annotators_see_an_item(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, tokens) = app.campaign("c", 2, &["a", "b", "c"]).await;
    app.upload(id, &app.admin, &items_jsonl(1)).await;
    let mut got = Vec::new();
    for token in &tokens {
        app.consent(token).await;
        let next = app.next(token).await;
        got.push(next.json["assignment"].clone());
    }
    assert!(got[0].is_object() && got[1].is_object());
    assert_eq!(
        got[2],
        Value::Null,
        "the third annotator gets nothing: overlap is 2"
    );
    // A skip frees the slot for the third annotator.
    let first = got[0]["assignment_id"].as_i64().expect("id");
    app.post("/api/me/skip", &tokens[0], json!({"assignment_id": first}))
        .await;
    let third = app.next(&tokens[2]).await;
    assert!(third.json["assignment"].is_object());
    let items = app
        .get(&format!("/api/admin/campaigns/{id}/progress"), &app.admin)
        .await;
    assert_eq!(items.json["items"][0]["assigned"], 2);
}

async fn conversations_render_as_messages_and_export_conversationally(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, tokens) = app.campaign("c", 1, &["a"]).await;
    let line = r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}], "answers": [{"model": "m1", "text": "4"}, {"model": "m2", "text": "5"}]}"#;
    app.upload(id, &app.admin, line).await;
    app.consent(&tokens[0]).await;
    let next = app.next(&tokens[0]).await;
    assert_eq!(next.json["assignment"]["prompt"][1]["content"], "2+2?");
    let a = assignment_id(&next);
    let choice = if next.json["assignment"]["answer_a"] == "4" {
        "A"
    } else {
        "B"
    };
    app.post(
        "/api/me/votes",
        &tokens[0],
        json!({"assignment_id": a, "choice": choice, "strength": "clear"}),
    )
    .await;
    let export = app
        .get(&format!("/api/admin/campaigns/{id}/export"), &app.admin)
        .await;
    let row: Value =
        serde_json::from_str(export.json["pairs"].as_str().expect("jsonl").trim()).expect("row");
    assert_eq!(row["prompt"][0]["role"], "system");
    assert_eq!(
        row["chosen"],
        json!([{"role": "assistant", "content": "4"}])
    );
    assert_eq!(
        row["rejected"],
        json!([{"role": "assistant", "content": "5"}])
    );
    assert_eq!(row["chosen_model"], "m1");
}

on_both_backends!(
    consent_is_required_and_recorded_once,
    queue_vote_replay_skip_undo_and_finish,
    annotators_touch_only_their_own_assignments,
    overlap_caps_how_many_annotators_see_an_item,
    conversations_render_as_messages_and_export_conversationally,
);
