//! Crash safety: under concurrent load, SIGKILL the server process and restart it.
//! Every vote that got a success response must be in the export, and none twice.
//! On PostgreSQL, two server processes share the database and every client sends its
//! requests to both in turn (as behind a load balancer); both are killed.

mod common;

#[path = "common/server.rs"]
mod server;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Backend;
use serde_json::{json, Value};
use server::Server;
use tiller_annotate::{export, Aggregation, ExportOptions, NewCampaign, Store, TiePolicy};

const CLIENTS: usize = 32;

/// One annotator's loop: next, vote, repeat, until told to stop or a server dies; the
/// requests go to `bases` in turn. Records the item ids of the votes acknowledged
/// with 201.
async fn annotate(
    bases: Vec<String>,
    token: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, i64)>>>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let auth = format!("Bearer {token}");
    let mut turn = 0usize;
    let mut base = || {
        turn += 1;
        bases[turn % bases.len()].clone()
    };
    let _ = client
        .post(format!("{}/api/me/consent", base()))
        .header("Authorization", &auth)
        .json(&json!({"accept": true}))
        .send()
        .await;
    while !stop.load(Ordering::Relaxed) {
        let Ok(reply) = client
            .post(format!("{}/api/me/next", base()))
            .header("Authorization", &auth)
            .send()
            .await
        else {
            return;
        };
        let Ok(next) = reply.json::<Value>().await else {
            return;
        };
        let Some(assignment) = next["assignment"].as_object() else {
            return;
        };
        let item = assignment["item_id"].as_i64().expect("item id");
        let body = json!({"assignment_id": assignment["assignment_id"], "choice": "A", "strength": "clear"});
        let Ok(reply) = client
            .post(format!("{}/api/me/votes", base()))
            .header("Authorization", &auth)
            .json(&body)
            .send()
            .await
        else {
            return;
        };
        if reply.status() == reqwest::StatusCode::CREATED {
            acked.lock().expect("lock").push((token.clone(), item));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_vote_survives_sigkill() {
    survives_sigkill(Backend::Sqlite, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_vote_survives_sigkill_of_two_postgres_servers() {
    survives_sigkill(Backend::Postgres, 2).await;
}

async fn survives_sigkill(backend: Backend, processes: usize) {
    let dir = tempfile::tempdir().expect("dir");
    let db = backend.location(dir.path());
    let store = Store::open(&db).expect("store");
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("ann{i}")).collect();
    let new = NewCampaign {
        name: "crash".into(),
        guidelines: String::new(),
        consent: None,
        overlap: 2,
        annotators: names,
        policy: Default::default(),
    };
    let (campaign, links) = store.create_campaign(new).expect("campaign");
    let items =
        tiller_annotate::store::parse_items_jsonl(&common::items_jsonl(5000)).expect("items");
    store.add_items(campaign.id, items).expect("items");
    store.create_admin_token().expect("admin token");
    let pseudonyms: HashMap<String, String> = store
        .annotator_progress(campaign.id)
        .expect("progress")
        .into_iter()
        .map(|a| (a.name, a.pseudonym))
        .collect();
    let token_to_pseudonym: HashMap<String, String> = links
        .iter()
        .map(|l| (l.token.clone(), pseudonyms[&l.name].clone()))
        .collect();
    drop(store);

    let acked = Arc::new(Mutex::new(Vec::new()));
    for round in 0..3 {
        let mut servers = Vec::new();
        for _ in 0..processes {
            servers.push(Server::start(&db).await);
        }
        let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = links
            .iter()
            .map(|link| {
                tokio::spawn(annotate(
                    bases.clone(),
                    link.token.clone(),
                    stop.clone(),
                    acked.clone(),
                ))
            })
            .collect();
        // Let the load build up, then kill the process mid-flight.
        let before = acked.lock().expect("lock").len();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while acked.lock().expect("lock").len() < before + 300
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for server in &mut servers {
            server.kill();
        }
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.expect("client task");
        }
        let after = acked.lock().expect("lock").len();
        assert!(
            after > before + 100,
            "round {round}: load did not run ({before} -> {after})"
        );
    }

    // Restart once more and check the database and the export.
    let server = Server::start(&db).await;
    drop(server);
    if backend == Backend::Sqlite {
        let conn = rusqlite::Connection::open(&db).expect("raw");
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("check");
        assert_eq!(integrity, "ok");
    }
    let out = dir.path().join("pairs.jsonl");
    let options = ExportOptions {
        campaign: None,
        ties: TiePolicy::Separate,
        aggregation: Aggregation::EveryVote,
        ..ExportOptions::default()
    };
    let summary = export(&db, &out, options).expect("export");
    let text = std::fs::read_to_string(&out).expect("export file");
    let mut exported: HashSet<(String, i64)> = HashSet::new();
    for line in text.lines() {
        let row: Value = serde_json::from_str(line).expect("row");
        let key = (
            row["annotator"].as_str().expect("annotator").to_string(),
            row["item_id"].as_i64().expect("item"),
        );
        assert!(exported.insert(key.clone()), "vote exported twice: {key:?}");
    }
    let acked = acked.lock().expect("lock");
    assert!(
        acked.len() >= 300,
        "only {} acknowledged votes",
        acked.len()
    );
    for (token, item) in acked.iter() {
        let key = (token_to_pseudonym[token].clone(), *item);
        assert!(exported.contains(&key), "acknowledged vote lost: {key:?}");
    }
    // Committed-but-unacknowledged votes (the response died with the process) may exist;
    // there can be at most one per client per kill.
    assert!(exported.len() >= acked.len() && exported.len() <= acked.len() + 3 * CLIENTS);
    assert_eq!(summary.counts.pairs, exported.len());
}
