//! Arena campaigns through the HTTP API, against the scripted OpenAI-compatible endpoint
//! in `endpoint.rs`: a battle streams both answers and becomes an item whose vote reaches
//! the leaderboard and the export; the models are revealed only after the vote; a down,
//! slow or failing endpoint fails the battle with a message and stores nothing, without
//! holding up other annotators; prompts are checked (length, consent) before any model is
//! called; the admin's config is validated and its keys never shown; withdrawal takes an
//! author's prompts out of the queue.

#[path = "../common/mod.rs"]
mod common;
mod endpoint;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{Backend, TestApp};
use endpoint::{answer, down_url, Endpoint, KEY};
use serde_json::{json, Value};

const XSS: &str = "Hi <script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">";

/// An arena campaign with annotators ana and ben (consented) over `models`.
async fn arena(backend: Backend, models: Value, extra: Value) -> (TestApp, i64, Vec<String>) {
    arena_on(TestApp::on(backend), models, extra).await
}

/// [`arena`] on `app`.
async fn arena_on(app: TestApp, models: Value, extra: Value) -> (TestApp, i64, Vec<String>) {
    let (id, tokens) = app.campaign("arena", 1, &["ana", "ben"]).await;
    let mut config = json!({ "models": models, "max_tokens": 64 });
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let reply = app
        .post(
            &format!("/api/admin/campaigns/{id}/arena"),
            &app.admin,
            config,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    for token in &tokens {
        app.consent(token).await;
    }
    (app, id, tokens)
}

fn model(name: &str, url: &str) -> Value {
    json!({ "name": name, "base_url": url, "model": name })
}

/// Runs a battle; returns the reply and its events (one JSON value per line).
async fn battle(app: &TestApp, token: &str, prompt: &str) -> (common::Reply, Vec<Value>) {
    let reply = app
        .post("/api/me/arena/battles", token, json!({ "prompt": prompt }))
        .await;
    let events = reply
        .text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    (reply, events)
}

/// The streamed text of `side`.
fn streamed(events: &[Value], side: &str) -> String {
    events
        .iter()
        .filter(|e| e["event"] == "delta" && e["side"] == side)
        .map(|e| e["text"].as_str().unwrap())
        .collect()
}

fn last(events: &[Value]) -> &Value {
    events.last().expect("at least one event")
}

async fn a_battle_streams_both_answers_and_its_vote_is_an_item_like_any_other(backend: Backend) {
    let endpoint = Endpoint::start().await;
    let models = json!([model("alpha", &endpoint.url), model("beta", &endpoint.url)]);
    let (app, id, tokens) = arena(backend, models, json!({})).await;
    let (reply, events) = battle(&app, &tokens[0], &format!("  {XSS}  ")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.headers["content-type"], "application/x-ndjson");
    let ready = last(&events);
    assert_eq!(ready["event"], "ready", "{events:?}");
    let assignment = &ready["assignment"];
    let (a, b) = (streamed(&events, "A"), streamed(&events, "B"));
    assert_eq!(assignment["answer_a"], a.as_str());
    assert_eq!(assignment["answer_b"], b.as_str());
    let mut both = [a.clone(), b.clone()];
    both.sort();
    assert_eq!(
        both,
        [answer("alpha", XSS), answer("beta", XSS)],
        "the prompt is sent trimmed, verbatim"
    );
    assert!(
        events.iter().filter(|e| e["event"] == "delta").count() >= 6,
        "streamed in pieces: {events:?}"
    );
    for side in ["A", "B"] {
        assert!(
            events.contains(&json!({"event": "done", "side": side, "finish": "stop"})),
            "{events:?}"
        );
    }
    assert_eq!(
        assignment["prompt"],
        json!([{"role": "user", "content": XSS}])
    );
    for request in endpoint.requests() {
        assert_eq!(request["stream"], true);
        assert_eq!(request["max_tokens"], 64);
        assert_eq!(
            request["messages"],
            json!([{"role": "user", "content": XSS}])
        );
    }
    assert_eq!(endpoint.requests().len(), 2);

    // Nothing is revealed before the vote, and no second battle starts before it.
    let assignment_id = assignment["assignment_id"].as_i64().unwrap();
    let reveal = format!("/api/me/arena/reveal/{assignment_id}");
    assert_eq!(
        app.get(&reveal, &tokens[0]).await.status,
        StatusCode::CONFLICT
    );
    let (again, _) = battle(&app, &tokens[0], "another").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.json["error"]
        .as_str()
        .unwrap()
        .contains("vote on your current comparison"));
    assert_eq!(
        app.get(&reveal, &tokens[1]).await.status,
        StatusCode::NOT_FOUND,
        "not ben's"
    );
    assert!(
        app.next(&tokens[1]).await.json["assignment"].is_null(),
        "ana's battle is hers alone"
    );

    let vote = json!({"assignment_id": assignment_id, "choice": "A", "strength": "strong", "rationale": "<b>A</b>"});
    assert_eq!(
        app.post("/api/me/votes", &tokens[0], vote).await.status,
        StatusCode::CREATED
    );
    let revealed = app.get(&reveal, &tokens[0]).await.json;
    let winner = revealed["model_a"].as_str().unwrap().to_string();
    let loser = revealed["model_b"].as_str().unwrap().to_string();
    assert_eq!(
        a,
        answer(&winner, XSS),
        "A's answer came from the model named A"
    );
    assert_eq!(b, answer(&loser, XSS));

    // The leaderboard and the export see it as any other vote.
    let board = app
        .get(
            &format!("/api/admin/campaigns/{id}/leaderboard"),
            &app.admin,
        )
        .await
        .json;
    let row = |name: &str| {
        board["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        (row(&winner)["wins"].clone(), row(&loser)["losses"].clone()),
        (json!(1.0), json!(1.0)),
        "{board}"
    );
    assert!(
        row(&winner)["score"].as_f64() > row(&loser)["score"].as_f64(),
        "{board}"
    );
    let export = app
        .get(&format!("/api/admin/campaigns/{id}/export"), &app.admin)
        .await
        .json;
    let pair: Value =
        serde_json::from_str(export["pairs"].as_str().unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(pair["prompt"], json!([{"role": "user", "content": XSS}]));
    assert_eq!(pair["chosen"], json!([{"role": "assistant", "content": a}]));
    assert_eq!(
        pair["rejected"],
        json!([{"role": "assistant", "content": b}])
    );
    assert_eq!(
        (
            pair["chosen_model"].as_str(),
            pair["rejected_model"].as_str()
        ),
        (Some(&*winner), Some(&*loser))
    );
    let list = app.get("/api/admin/campaigns", &app.admin).await.json;
    assert_eq!(list["campaigns"][0]["kind"], "arena");
    assert_eq!(list["campaigns"][0]["votes"], 1);
    // A new battle is allowed once voted.
    assert_eq!(
        last(&battle(&app, &tokens[0], "next one").await.1)["event"],
        "ready"
    );
}

async fn withdrawing_takes_an_authors_prompts_out_of_the_queue(backend: Backend) {
    let endpoint = Endpoint::start().await;
    let models = json!([model("alpha", &endpoint.url), model("beta", &endpoint.url)]);
    let (app, id, tokens) = arena(backend, models, json!({})).await;
    let policy = json!({"on_withdrawal": "erase", "min_gold_accuracy": null});
    assert_eq!(
        app.post(
            &format!("/api/admin/campaigns/{id}/policy"),
            &app.admin,
            policy
        )
        .await
        .status,
        StatusCode::OK
    );
    let first = battle(&app, &tokens[0], "my secret question").await.1;
    let assignment_id = last(&first)["assignment"]["assignment_id"].clone();
    let vote = json!({"assignment_id": assignment_id, "choice": "tie"});
    assert_eq!(
        app.post("/api/me/votes", &tokens[0], vote).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        last(&battle(&app, &tokens[0], "my unvoted question").await.1)["event"],
        "ready"
    );
    let withdraw = app
        .post("/api/me/withdraw", &tokens[0], json!({"confirm": true}))
        .await;
    assert_eq!(withdraw.status, StatusCode::OK, "{}", withdraw.text);
    assert!(
        app.next(&tokens[1]).await.json["assignment"].is_null(),
        "nothing of ana's reaches ben"
    );
    let prompts = app.sql("SELECT prompt_json FROM items ORDER BY id");
    assert_eq!(prompts.len(), 1, "the unvoted battle is gone: {prompts:?}");
    assert!(prompts[0][0].contains("erased"), "{prompts:?}");
    app.assert_progress_counters_agree();
}

async fn a_battle_whose_lease_ran_out_stays_its_authors(backend: Backend) {
    let endpoint = Endpoint::start().await;
    let models = json!([model("alpha", &endpoint.url), model("beta", &endpoint.url)]);
    let limits = tiller_annotate::Limits {
        lease: Duration::from_millis(50),
        ..tiller_annotate::Limits::default()
    };
    let app = TestApp::with_limits_on(backend, limits);
    let (app, _, tokens) = arena_on(app, models, json!({})).await;
    let events = battle(&app, &tokens[0], "my private question").await.1;
    let assignment_id = last(&events)["assignment"]["assignment_id"].clone();
    tokio::time::sleep(Duration::from_millis(120)).await;
    // Ben's `next` releases ana's expired lease, but her prompt is never his to see.
    let next = app.next(&tokens[1]).await;
    assert!(next.json["assignment"].is_null(), "{}", next.text);
    let vote = json!({"assignment_id": assignment_id, "choice": "tie"});
    let late = app.post("/api/me/votes", &tokens[0], vote).await;
    assert_eq!(late.status, StatusCode::CREATED, "{}", late.text);
    app.assert_progress_counters_agree();
}

on_both_backends!(
    a_battle_streams_both_answers_and_its_vote_is_an_item_like_any_other,
    withdrawing_takes_an_authors_prompts_out_of_the_queue,
    a_battle_whose_lease_ran_out_stays_its_authors,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn down_slow_and_failing_endpoints_fail_the_battle_and_store_nothing() {
    let endpoint = Endpoint::start().await;
    let cases = [
        ("down", down_url(), "cannot connect to the model's endpoint"),
        (
            "slow",
            endpoint.url.clone(),
            "did not start answering within 0.5 s",
        ),
        (
            "broken",
            endpoint.url.clone(),
            "answered 500 Internal Server Error: the GPU caught fire",
        ),
    ];
    for (name, url, expected) in cases {
        let models = json!([model("alpha", &endpoint.url), model(name, &url)]);
        let (app, _, tokens) = arena(
            Backend::Sqlite,
            models,
            json!({"first_token_timeout_secs": 0.5}),
        )
        .await;
        let started = Instant::now();
        let (reply, events) = battle(&app, &tokens[0], "hello").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name}: the timeout held"
        );
        let failed = last(&events);
        assert_eq!(failed["event"], "failed", "{name}: {events:?}");
        let message = failed["message"].as_str().unwrap();
        assert!(
            message.contains(expected) && message.contains("Retry"),
            "{name}: {message}"
        );
        assert!(
            !message.contains(&url) && !message.contains(name),
            "the model stays hidden: {message}"
        );
        assert!(
            app.sql("SELECT id FROM items").is_empty(),
            "{name}: nothing stored"
        );
        assert!(app.next(&tokens[0]).await.json["assignment"].is_null());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_are_cut_at_the_limit_and_keys_are_sent_but_never_shown() {
    let endpoint = Endpoint::start().await;
    let keyed =
        json!({"name": "keyed", "base_url": endpoint.url, "model": "keyed", "api_key": KEY});
    let models = json!([keyed, model("long", &endpoint.url)]);
    let (app, id, tokens) = arena(Backend::Sqlite, models, json!({"max_answer_chars": 25})).await;
    let shown = app
        .get(&format!("/api/admin/campaigns/{id}/arena"), &app.admin)
        .await;
    assert!(!shown.text.contains(KEY), "{}", shown.text);
    assert_eq!(shown.json["arena"]["models"][0]["api_key"], "***");
    // Sent back as shown, the stored key is kept.
    let again = app
        .post(
            &format!("/api/admin/campaigns/{id}/arena"),
            &app.admin,
            shown.json["arena"].clone(),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let events = battle(&app, &tokens[0], "count").await.1;
    assert_eq!(last(&events)["event"], "ready", "{events:?}");
    let side = |name: &str| {
        let a = streamed(&events, "A");
        if (name == "long") == a.starts_with('0') {
            "A"
        } else {
            "B"
        }
    };
    assert_eq!(
        streamed(&events, side("long")),
        "0123456789".repeat(3)[..25]
    );
    assert!(
        events.contains(&json!({"event": "done", "side": side("long"), "finish": "length"})),
        "{events:?}"
    );
    assert_eq!(
        streamed(&events, side("keyed")),
        answer("keyed", "count"),
        "the key was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_endpoint_does_not_hold_up_other_annotators() {
    let endpoint = Endpoint::start().await;
    let slow = |name: &str| json!({"name": name, "base_url": endpoint.url, "model": "slow"});
    let models = json!([slow("slow-1"), slow("slow-2")]);
    let (app, id, tokens) = arena(
        Backend::Sqlite,
        models,
        json!({"first_token_timeout_secs": 30, "connect_timeout_secs": 30}),
    )
    .await;
    let fast = json!([model("alpha", &endpoint.url), model("beta", &endpoint.url)]);
    let app = std::sync::Arc::new(app);
    let waiting = {
        let (app, token) = (app.clone(), tokens[0].clone());
        tokio::spawn(async move { battle(&app, &token, "wait for me").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile: the admin swaps the models, and ben's battle runs and is voted on.
    let swap = app
        .post(
            &format!("/api/admin/campaigns/{id}/arena"),
            &app.admin,
            json!({"models": fast}),
        )
        .await;
    assert_eq!(swap.status, StatusCode::OK, "{}", swap.text);
    let events = battle(&app, &tokens[1], "quick").await.1;
    let assignment_id = last(&events)["assignment"]["assignment_id"].clone();
    let vote = json!({"assignment_id": assignment_id, "choice": "both_bad"});
    assert_eq!(
        app.post("/api/me/votes", &tokens[1], vote).await.status,
        StatusCode::CREATED
    );
    assert!(
        !waiting.is_finished(),
        "ana's battle still waits on the slow endpoint"
    );
    waiting.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prompts_and_configs_are_checked_before_any_model_is_called() {
    let endpoint = Endpoint::start().await;
    let models = json!([model("alpha", &endpoint.url), model("beta", &endpoint.url)]);
    let (app, id, tokens) = arena(Backend::Sqlite, models, json!({})).await;
    let (long, _) = battle(&app, &tokens[0], &"é".repeat(4001)).await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        long.json["error"],
        "invalid field `prompt`: is longer than 4000 characters (got 4001)"
    );
    let (empty, _) = battle(&app, &tokens[0], "  \n ").await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert!(empty.json["error"]
        .as_str()
        .unwrap()
        .contains("`prompt`: is empty"));
    let unknown = app
        .post(
            "/api/me/arena/battles",
            &tokens[0],
            json!({"prompt": "x", "model": "alpha"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.text);
    let (_, more) = app.campaign("pairwise", 1, &["cy"]).await;
    app.consent(&more[0]).await;
    let (pairwise, _) = battle(&app, &more[0], "hi").await;
    assert_eq!(pairwise.status, StatusCode::CONFLICT, "{}", pairwise.text);
    let (_, shy) = app.campaign("shy", 1, &["dee"]).await;
    assert_eq!(
        battle(&app, &shy[0], "hi").await.0.status,
        StatusCode::FORBIDDEN,
        "no consent, no call"
    );
    assert!(endpoint.requests().is_empty(), "no model was asked");

    let path = format!("/api/admin/campaigns/{id}/arena");
    let refused = [
        (
            json!({"models": [model("alpha", &endpoint.url)]}),
            "invalid field `models`: an arena needs at least 2 models (got 1)",
        ),
        (
            json!({"models": [model("a", &endpoint.url), model("b", "https://api.example.com")]}),
            "invalid field `models[1].base_url`: https is not supported",
        ),
        (
            json!({"models": [model("a", &endpoint.url), model("a", &endpoint.url)]}),
            "invalid field `models[1].name`",
        ),
        (
            json!({"models": [model("a", &endpoint.url), {"name": "b", "base_url": endpoint.url, "model": "b", "api_key": "***"}]}),
            "invalid field `models[1].api_key`",
        ),
        (
            json!({"models": [model("a", &endpoint.url), {"name": "b", "base_url": endpoint.url, "model": "b", "api_key": "two\nlines"}]}),
            "invalid field `models[1].api_key`: must be printable ASCII",
        ),
        (
            json!({"models": [model("a", &endpoint.url), model("b", &endpoint.url)], "answer_timeout_secs": 0}),
            "invalid field `answer_timeout_secs`",
        ),
        (json!({"models": [], "top_k": 3}), "unknown field `top_k`"),
    ];
    for (body, expected) in refused {
        let reply = app.post(&path, &app.admin, body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
        assert!(
            reply.json["error"].as_str().unwrap().contains(expected),
            "{} lacks {expected}",
            reply.text
        );
    }
    assert_eq!(
        app.get(&path, &tokens[0]).await.status,
        StatusCode::FORBIDDEN,
        "admins only"
    );
    let me = app.get("/api/me", &tokens[0]).await.json;
    assert_eq!(
        (
            me["campaign"]["kind"].as_str(),
            me["campaign"]["max_prompt_chars"].as_u64()
        ),
        (Some("arena"), Some(4000))
    );
}
