//! Assignment under concurrency: many annotators pulling and voting at once never get
//! an item twice, and no item gets more than `overlap` votes. The schema enforces the
//! same invariants on its own, which the raw-SQL tests check. On PostgreSQL, two
//! server processes on one database keep them too (the last test).

mod common;

#[path = "common/server.rs"]
mod server;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::http::StatusCode;
use common::{items_jsonl, pg::Cluster, Backend, TestApp};
use serde_json::{json, Value};

const ANNOTATORS: usize = 24;
const ITEMS: usize = 40;
const OVERLAP: i64 = 3;

/// Checks what the annotators saw: nobody got an item twice, and every item got
/// exactly `OVERLAP` votes.
fn assert_every_slot_filled_once(seen_by_annotator: Vec<Vec<i64>>) {
    let mut votes_per_item: HashMap<i64, i64> = HashMap::new();
    let mut total = 0;
    for seen in seen_by_annotator {
        let unique: HashSet<i64> = seen.iter().copied().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "an annotator got an item twice: {seen:?}"
        );
        for item in seen {
            *votes_per_item.entry(item).or_default() += 1;
            total += 1;
        }
    }
    assert_eq!(
        total,
        ITEMS as i64 * OVERLAP,
        "every slot filled exactly once"
    );
    assert!(
        votes_per_item.values().all(|&v| v == OVERLAP),
        "{votes_per_item:?}"
    );
}

async fn concurrent_annotators_respect_overlap_and_never_repeat(backend: Backend) {
    let app = std::sync::Arc::new(TestApp::on(backend));
    let names: Vec<String> = (0..ANNOTATORS).map(|i| format!("ann{i}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (id, tokens) = app.campaign("load", OVERLAP as u32, &name_refs).await;
    app.upload(id, &app.admin, &items_jsonl(ITEMS)).await;

    let mut tasks = Vec::new();
    for token in tokens {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.consent(&token).await;
            let mut seen = Vec::new();
            loop {
                let next = app.next(&token).await;
                assert_eq!(next.status, StatusCode::OK, "{}", next.text);
                let Some(assignment) = next.json["assignment"].as_object() else { break };
                let item = assignment["item_id"].as_i64().expect("item");
                let body = json!({"assignment_id": assignment["assignment_id"], "choice": "A", "strength": "slight"});
                let vote = app.post("/api/me/votes", &token, body).await;
                assert_eq!(vote.status, StatusCode::CREATED, "{}", vote.text);
                seen.push(item);
            }
            seen
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.expect("task"));
    }
    assert_every_slot_filled_once(seen);
    let progress = app
        .get(&format!("/api/admin/campaigns/{id}/progress"), &app.admin)
        .await;
    for item in progress.json["items"].as_array().expect("items") {
        assert_eq!(item["votes"].as_i64(), Some(OVERLAP));
        assert_eq!(item["assigned"].as_i64(), Some(OVERLAP));
    }
}

async fn simultaneous_requests_of_one_annotator_share_one_assignment(backend: Backend) {
    let app = std::sync::Arc::new(TestApp::on(backend));
    let (id, tokens) = app.campaign("burst", 1, &["solo", "other"]).await;
    app.upload(id, &app.admin, &items_jsonl(50)).await;
    app.consent(&tokens[0]).await;
    let token = std::sync::Arc::new(tokens[0].clone());
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (app, token) = (app.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            app.next(&token).await.json["assignment"]["assignment_id"]
                .as_i64()
                .expect("assignment")
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.expect("task"));
    }
    assert_eq!(ids.len(), 1, "one pending item at a time: {ids:?}");
    // The same vote sent 16 times at once is accepted exactly once.
    let assignment = *ids.iter().next().expect("one id");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (app, token) = (app.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"assignment_id": assignment, "choice": "B", "strength": "clear"});
            app.post("/api/me/votes", &token, body).await.status
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("task"));
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT));
}

#[test]
fn the_schema_itself_rejects_overfilled_items_and_repeats() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("db.sqlite");
    let store = tiller_annotate::Store::open(&path).expect("store");
    let new = tiller_annotate::NewCampaign {
        name: "raw".into(),
        guidelines: String::new(),
        consent: None,
        overlap: 1,
        annotators: vec!["a".into(), "b".into()],
        policy: Default::default(),
    };
    let (campaign, links) = store.create_campaign(new).expect("campaign");
    let items = tiller_annotate::store::parse_items_jsonl(&items_jsonl(1)).expect("items");
    let added = store.add_items(campaign.id, items).expect("add");
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("raw connection");
    let item = added.item_ids[0];
    let insert = "INSERT INTO assignments (item_id, annotator_id, swapped, status, assigned_at) VALUES (?1, ?2, 0, 'pending', 0)";
    conn.execute(insert, (item, links[0].annotator_id))
        .expect("first assignment fits");
    let over = conn.execute(insert, (item, links[1].annotator_id));
    assert!(
        over.expect_err("overlap 1").to_string().contains("CHECK"),
        "overlap enforced by the schema"
    );
    let again = conn.execute(insert, (item, links[0].annotator_id));
    assert!(again.expect_err("repeat").to_string().contains("UNIQUE"));
}

#[test]
fn the_open_item_counter_matches_a_full_count() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("db.sqlite");
    let store = tiller_annotate::Store::open(&path).expect("store");
    let new = tiller_annotate::NewCampaign {
        name: "count".into(),
        guidelines: String::new(),
        consent: None,
        overlap: 1,
        annotators: vec!["a".into()],
        policy: Default::default(),
    };
    let (campaign, _) = store.create_campaign(new).expect("campaign");
    let mut jsonl = items_jsonl(3);
    jsonl.push_str("{\"prompt\": \"waiting\"}\n");
    store
        .add_items(
            campaign.id,
            tiller_annotate::store::parse_items_jsonl(&jsonl).expect("items"),
        )
        .expect("add");
    let pending = store.pending_prompts(campaign.id).expect("pending");
    assert_eq!(pending.len(), 1);
    let answers = [
        tiller_annotate::Answer {
            model: "x".into(),
            text: "1".into(),
        },
        tiller_annotate::Answer {
            model: "y".into(),
            text: "2".into(),
        },
    ];
    store
        .set_answers(pending[0].item_id, answers.clone())
        .expect("answers");
    assert!(
        store.set_answers(pending[0].item_id, answers).is_err(),
        "answers are set once"
    );
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("raw");
    let counter = |conn: &rusqlite::Connection| -> (i64, i64) {
        let kept: i64 = conn
            .query_row("SELECT open_items FROM campaigns", [], |r| r.get(0))
            .expect("kept");
        let full: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM items WHERE answer_1 IS NOT NULL AND assigned < overlap",
                [],
                |r| r.get(0),
            )
            .expect("full");
        (kept, full)
    };
    assert_eq!(counter(&conn), (4, 4));
    conn.execute("UPDATE items SET assigned = 1 WHERE id IN (1, 2)", [])
        .expect("fill");
    assert_eq!(counter(&conn), (2, 2));
    conn.execute("UPDATE items SET assigned = 0 WHERE id = 1", [])
        .expect("free");
    assert_eq!(counter(&conn), (3, 3));
}

/// After a random mix of next / vote / skip / undo by several annotators, the
/// trigger-kept counters equal a recount from scratch.
async fn trigger_kept_counters_match_a_recount_after_random_traffic(backend: Backend) {
    let app = std::sync::Arc::new(TestApp::on(backend));
    let (id, tokens) = app.campaign("mix", 2, &["a", "b", "c", "d"]).await;
    app.upload(id, &app.admin, &items_jsonl(12)).await;
    let mut tasks = Vec::new();
    for (index, token) in tokens.into_iter().enumerate() {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.consent(&token).await;
            for step in 0..30usize {
                let next = app.next(&token).await;
                let Some(assignment) = next.json["assignment"].as_object() else {
                    break;
                };
                let assignment_id = assignment["assignment_id"].clone();
                match (step * 7 + index) % 5 {
                    0 => {
                        app.post(
                            "/api/me/skip",
                            &token,
                            json!({"assignment_id": assignment_id}),
                        )
                        .await;
                    }
                    1 => {
                        app.post("/api/me/undo", &token, json!({})).await;
                    }
                    _ => {
                        app.post(
                            "/api/me/votes",
                            &token,
                            json!({"assignment_id": assignment_id, "choice": "tie"}),
                        )
                        .await;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_counters_match_a_recount(&|sql| app.sql(sql)[0][0].clone());
}

/// The trigger-kept counters (`open_held`, `open_items`, `assigned`) equal a recount;
/// `scalar` runs a one-value query on the database.
fn assert_counters_match_a_recount(scalar: &dyn Fn(&str) -> String) {
    let drift = scalar(
        "SELECT COUNT(*) FROM annotators n WHERE n.open_held != (
             SELECT COUNT(*) FROM assignments a JOIN items i ON i.id = a.item_id
             WHERE a.annotator_id = n.id AND i.answer_1 IS NOT NULL AND i.assigned < i.overlap)",
    );
    assert_eq!(drift, "0", "open_held drifted from the recount");
    let drift = scalar(
        "SELECT COUNT(*) FROM campaigns c WHERE c.open_items != (SELECT COUNT(*) FROM items i
             WHERE i.campaign_id = c.id AND i.answer_1 IS NOT NULL AND i.assigned < i.overlap)",
    );
    assert_eq!(drift, "0", "open_items drifted from the recount");
    let drift = scalar(
        "SELECT COUNT(*) FROM items i WHERE i.assigned != (
             SELECT COUNT(*) FROM assignments a WHERE a.item_id = i.id AND a.status != 'skipped')",
    );
    assert_eq!(drift, "0", "assigned drifted from the recount");
}

#[test]
fn the_postgres_schema_itself_rejects_overfilled_items_and_repeats() {
    let cluster = Cluster::get();
    let name = cluster.create_database();
    let store = tiller_annotate::Store::open(cluster.url(&name).as_ref()).expect("store");
    let new = tiller_annotate::NewCampaign {
        name: "raw".into(),
        guidelines: String::new(),
        consent: None,
        overlap: 1,
        annotators: vec!["a".into(), "b".into()],
        policy: Default::default(),
    };
    let (campaign, links) = store.create_campaign(new).expect("campaign");
    let items = tiller_annotate::store::parse_items_jsonl(&items_jsonl(1)).expect("items");
    let item = store.add_items(campaign.id, items).expect("add").item_ids[0];
    drop(store);
    let insert = |annotator: i64| {
        format!(
            "INSERT INTO assignments (item_id, annotator_id, swapped, status, assigned_at) \
             VALUES ({item}, {annotator}, false, 'pending', 0)"
        )
    };
    assert!(
        cluster.psql(&name, &insert(links[0].annotator_id)),
        "first assignment fits"
    );
    assert!(
        !cluster.psql(&name, &insert(links[1].annotator_id)),
        "overlap enforced by the schema"
    );
    assert!(
        !cluster.psql(&name, &insert(links[0].annotator_id)),
        "no repeat"
    );
    assert_eq!(cluster.query(&name, "SELECT assigned FROM items"), "1");
}

/// Two server processes on one PostgreSQL database, every annotator's requests spread
/// over both: the same invariants as in one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_postgres_servers_respect_overlap_and_never_repeat() {
    let cluster = Cluster::get();
    let name = cluster.create_database();
    let db = std::path::PathBuf::from(cluster.url(&name));
    let store = tiller_annotate::Store::open(&db).expect("store");
    let names: Vec<String> = (0..ANNOTATORS).map(|i| format!("ann{i}")).collect();
    let new = tiller_annotate::NewCampaign {
        name: "two".into(),
        guidelines: String::new(),
        consent: None,
        overlap: OVERLAP as u32,
        annotators: names,
        policy: Default::default(),
    };
    let (campaign, links) = store.create_campaign(new).expect("campaign");
    let items = tiller_annotate::store::parse_items_jsonl(&items_jsonl(ITEMS)).expect("items");
    store.add_items(campaign.id, items).expect("items");
    let admin = store.create_admin_token().expect("admin");
    drop(store);
    let servers = [
        server::Server::start(&db).await,
        server::Server::start(&db).await,
    ];
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let mut tasks = Vec::new();
    for (index, link) in links.iter().enumerate() {
        let (bases, token) = (bases.clone(), link.token.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            let auth = format!("Bearer {token}");
            let post = |turn: usize, path: &str, body: Value| {
                client
                    .post(format!("{}{path}", bases[(index + turn) % 2]))
                    .header("Authorization", &auth)
                    .json(&body)
                    .send()
            };
            let consent = post(0, "/api/me/consent", json!({"accept": true}))
                .await
                .expect("consent");
            assert!(consent.status().is_success(), "consent");
            let mut seen = Vec::new();
            for turn in 0.. {
                let next = post(turn, "/api/me/next", json!({})).await.expect("next");
                assert_eq!(next.status(), StatusCode::OK);
                let next: Value = next.json().await.expect("json");
                let Some(assignment) = next["assignment"].as_object() else { break };
                let item = assignment["item_id"].as_i64().expect("item");
                let body = json!({"assignment_id": assignment["assignment_id"], "choice": "A", "strength": "slight"});
                // The vote goes to the other process than the one that assigned it.
                let vote = post(turn + 1, "/api/me/votes", body).await.expect("vote");
                assert_eq!(vote.status(), StatusCode::CREATED);
                seen.push(item);
            }
            seen
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.expect("task"));
    }
    assert_every_slot_filled_once(seen);
    let progress: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/admin/campaigns/{}/progress",
            bases[1], campaign.id
        ))
        .header("Authorization", format!("Bearer {admin}"))
        .send()
        .await
        .expect("progress")
        .json()
        .await
        .expect("json");
    for item in progress["items"].as_array().expect("items") {
        assert_eq!(item["votes"].as_i64(), Some(OVERLAP));
        assert_eq!(item["assigned"].as_i64(), Some(OVERLAP));
    }
    assert_counters_match_a_recount(&|sql| cluster.query(&name, sql));
}

/// A withdrawal sent to one server stops the annotator on the other at once, though
/// the other still has their identity cached: the write transaction checks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_withdrawal_through_one_postgres_server_stops_work_on_the_other() {
    let cluster = Cluster::get();
    let db = std::path::PathBuf::from(cluster.fresh_url());
    let store = tiller_annotate::Store::open(&db).expect("store");
    let new = tiller_annotate::NewCampaign {
        name: "withdraw".into(),
        guidelines: String::new(),
        consent: None,
        overlap: 1,
        annotators: vec!["a".into()],
        policy: Default::default(),
    };
    let (campaign, links) = store.create_campaign(new).expect("campaign");
    let items = tiller_annotate::store::parse_items_jsonl(&items_jsonl(3)).expect("items");
    store.add_items(campaign.id, items).expect("items");
    drop(store);
    let (one, two) = (
        server::Server::start(&db).await,
        server::Server::start(&db).await,
    );
    let client = reqwest::Client::new();
    let auth = format!("Bearer {}", links[0].token);
    let post = |base: &str, path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .header("Authorization", &auth)
            .json(&body)
            .send()
    };
    let consent = post(&one.base, "/api/me/consent", json!({"accept": true}));
    assert!(consent.await.expect("consent").status().is_success());
    let next = post(&one.base, "/api/me/next", json!({}))
        .await
        .expect("next");
    assert_eq!(
        next.status(),
        StatusCode::OK,
        "the identity is now cached on one"
    );
    let withdraw = post(&two.base, "/api/me/withdraw", json!({"confirm": true}));
    assert_eq!(withdraw.await.expect("withdraw").status(), StatusCode::OK);
    let after = post(&one.base, "/api/me/next", json!({}))
        .await
        .expect("next");
    assert_eq!(after.status(), StatusCode::FORBIDDEN);
    let text = after.text().await.expect("body");
    assert!(text.contains("withdrawn"), "{text}");
}

on_both_backends!(
    concurrent_annotators_respect_overlap_and_never_repeat,
    simultaneous_requests_of_one_annotator_share_one_assignment,
    trigger_kept_counters_match_a_recount_after_random_traffic,
);
