//! Consent that can be withdrawn and is versioned: withdrawal by the annotator or the
//! admin, "keep" and "erase" policies, exports without withdrawn votes, asking again
//! after the statement changes, the lineage check, and migrating a version-1 database.

mod common;

use axum::http::StatusCode;
use common::{items_jsonl, Backend, TestApp};
use serde_json::{json, Value};
use tiller_annotate::store::schema::{migrate_to, SCHEMA_VERSION};
use tiller_annotate::{Aggregation, ExportOptions, Store};

/// Has every token vote "A, clear" on everything it is offered.
async fn vote_all(app: &TestApp, tokens: &[String]) {
    for token in tokens {
        loop {
            let next = app.next(token).await;
            let Some(id) = next.json["assignment"]["assignment_id"].as_i64() else {
                break;
            };
            let vote = app
                .post(
                    "/api/me/votes",
                    token,
                    json!({"assignment_id": id, "choice": "A", "strength": "clear"}),
                )
                .await;
            assert_eq!(vote.status, StatusCode::CREATED, "{}", vote.text);
        }
    }
}

fn every_vote(campaign: &str) -> ExportOptions {
    ExportOptions {
        campaign: Some(campaign.into()),
        aggregation: Aggregation::EveryVote,
        ..ExportOptions::default()
    }
}

async fn a_withdrawn_annotator_leaves_every_export_and_their_items_reopen(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, tokens) = app.campaign("c", 2, &["ana", "ben", "chen"]).await;
    app.upload(id, &app.admin, &items_jsonl(2)).await;
    for token in &tokens[..2] {
        app.consent(token).await;
    }
    vote_all(&app, &tokens[..2]).await;
    let before = app.store.export_rows(&every_vote("c")).expect("export");
    assert_eq!(before.counts.votes, 4);

    let refused = app
        .post("/api/me/withdraw", &tokens[0], json!({"confirm": false}))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let reply = app
        .post("/api/me/withdraw", &tokens[0], json!({"confirm": true}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let record = &reply.json["withdrawal"];
    assert_eq!(record["recorded_by"], "annotator");
    assert_eq!(record["votes"], 2);
    assert_eq!(record["erased"], false);
    let pseudonym = record["pseudonym"].as_str().expect("pseudonym").to_string();

    let after = app.store.export_rows(&every_vote("c")).expect("export");
    assert_eq!(after.counts.votes, 2, "ana's votes are out");
    assert!(after
        .pairs
        .iter()
        .all(|row| row["annotator"].as_str() != Some(pseudonym.as_str())));
    assert!(after
        .provenance
        .annotators
        .iter()
        .all(|a| a.pseudonym != pseudonym));
    let bundle = app
        .get(
            &format!("/api/admin/campaigns/{id}/export?aggregation=every_vote"),
            &app.admin,
        )
        .await;
    assert!(!bundle.json["pairs"]
        .as_str()
        .expect("pairs")
        .contains(&pseudonym));

    // The link no longer takes work, and says why.
    let next = app.next(&tokens[0]).await;
    assert_eq!(next.status, StatusCode::FORBIDDEN);
    assert!(next.text.contains("withdrawn"), "{}", next.text);
    let me = app.get("/api/me", &tokens[0]).await;
    assert!(me.json["withdrawn_at"].is_i64(), "{}", me.text);

    // Ana's two slots went back to the queue: chen can fill them.
    app.consent(&tokens[2]).await;
    vote_all(&app, &tokens[2..]).await;
    let progress = app
        .get(&format!("/api/admin/campaigns/{id}/progress"), &app.admin)
        .await;
    let chen = &progress.json["annotators"][2];
    assert_eq!(chen["done"], 2, "{}", progress.text);

    // The lineage question: which listed votes and pseudonyms are withdrawn now.
    let ids: Vec<i64> = before.provenance.vote_ids.clone();
    let names: Vec<String> = before
        .provenance
        .annotators
        .iter()
        .map(|a| a.pseudonym.clone())
        .collect();
    let found = app.store.withdrawn_among(&ids, &names).expect("check");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].pseudonym, pseudonym);
    assert_eq!(found[0].vote_ids.len(), 2);
    let clean = app
        .store
        .withdrawn_among(&after.provenance.vote_ids, &[])
        .expect("check");
    assert!(clean.is_empty(), "{clean:?}");
    app.assert_progress_counters_agree();
}

async fn erase_deletes_the_votes_but_keeps_the_record_and_the_admin_can_record_it(
    backend: Backend,
) {
    let app = TestApp::on(backend);
    let reply = app
        .post(
            "/api/admin/campaigns",
            &app.admin,
            json!({"name": "e", "overlap": 1, "annotators": ["ana"],
                   "policy": {"on_withdrawal": "erase"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let id = reply.json["campaign"]["id"].as_i64().expect("id");
    let annotator = reply.json["annotators"][0]["annotator_id"]
        .as_i64()
        .expect("id");
    let token = reply.json["annotators"][0]["token"]
        .as_str()
        .expect("token")
        .to_string();
    app.upload(id, &app.admin, &items_jsonl(1)).await;
    app.consent(&token).await;
    let next = app.next(&token).await;
    let assignment = next.json["assignment"]["assignment_id"]
        .as_i64()
        .expect("item");
    app.post(
        "/api/me/votes",
        &token,
        json!({"assignment_id": assignment, "choice": "B", "strength": "strong", "rationale": "private words"}),
    )
    .await;

    let wrong = app
        .post(
            &format!(
                "/api/admin/campaigns/{}/annotators/{annotator}/withdraw",
                id + 1
            ),
            &app.admin,
            json!({}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND, "{}", wrong.text);
    let recorded = app
        .post(
            &format!("/api/admin/campaigns/{id}/annotators/{annotator}/withdraw"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_eq!(recorded.status, StatusCode::OK, "{}", recorded.text);
    assert_eq!(recorded.json["withdrawal"]["recorded_by"], "admin");
    assert_eq!(recorded.json["withdrawal"]["erased"], true);
    assert_eq!(recorded.json["withdrawal"]["votes"], 1);

    assert_eq!(
        app.sql("SELECT COUNT(*) FROM votes"),
        [["0"]],
        "the content is gone"
    );
    let record = app.sql(
        "SELECT n.name, w.vote_ids FROM annotators n JOIN withdrawals w ON w.annotator_id = n.id",
    );
    let (name, ids) = (&record[0][0], &record[0][1]);
    assert!(name.starts_with("withdrawn ann-"), "{name}");
    assert_eq!(ids.matches(',').count(), 0, "one vote id kept: {ids}");
    assert_eq!(
        app.sql("SELECT COUNT(*) FROM votes WHERE rationale = 'private words'"),
        [["0"]]
    );
    app.assert_progress_counters_agree();
}

async fn a_new_consent_text_asks_every_annotator_again(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, tokens) = app.campaign("v", 1, &["ana"]).await;
    app.upload(id, &app.admin, &items_jsonl(3)).await;
    let me = app.get("/api/me", &tokens[0]).await;
    assert_eq!(me.json["campaign"]["consent_version"], 1);
    let accepted = app
        .post(
            "/api/me/consent",
            &tokens[0],
            json!({"accept": true, "version": 1}),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(accepted.json["version"], 1);
    assert_eq!(app.next(&tokens[0]).await.status, StatusCode::OK);

    let changed = app
        .post(
            &format!("/api/admin/campaigns/{id}/consent"),
            &app.admin,
            json!({"text": "New terms: votes are kept for two years."}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.json["campaign"]["consent_version"], 2);
    let sha = changed.json["campaign"]["consent_sha256"]
        .as_str()
        .expect("sha")
        .to_string();
    assert_eq!(sha.len(), 64);

    let next = app.next(&tokens[0]).await;
    assert_eq!(next.status, StatusCode::FORBIDDEN);
    assert!(next.text.contains("changed"), "{}", next.text);
    let me = app.get("/api/me", &tokens[0]).await;
    assert_eq!(me.json["consent_current"], false);
    assert_eq!(me.json["campaign"]["consent_version"], 2);

    let stale = app
        .post(
            "/api/me/consent",
            &tokens[0],
            json!({"accept": true, "version": 1}),
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.text);
    let again = app
        .post(
            "/api/me/consent",
            &tokens[0],
            json!({"accept": true, "version": 2}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.json["sha256"], Value::String(sha.clone()));
    assert_eq!(app.next(&tokens[0]).await.status, StatusCode::OK);

    let history = app.sql("SELECT version, sha256 FROM consent_acceptances ORDER BY id");
    assert_eq!(history.len(), 2);
    assert_eq!(history[1], ["2".to_string(), sha]);
}

#[test]
fn a_version_1_database_migrates_with_its_votes_and_consent() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("v1.db");
    {
        let mut conn = rusqlite::Connection::open(&path).expect("raw");
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")
            .expect("pragmas");
        migrate_to(&mut conn, 1).expect("version 1");
        conn.execute_batch(
            "INSERT INTO campaigns (id, name, guidelines, consent, overlap, created_at) VALUES (1, 'old', '', 'Old terms.', 1, 1000);
             INSERT INTO annotators (id, campaign_id, name, token_hash, pseudonym, consent_at, created_at)
                 VALUES (1, 1, 'ana', 'h', 'ann-000001', 2000, 1000);
             INSERT INTO items (id, campaign_id, prompt_json, model_1, answer_1, model_2, answer_2, overlap, created_at)
                 VALUES (1, 1, '\"Q?\"', 'm1', 'a1', 'm2', 'a2', 1, 1000);
             INSERT INTO assignments (id, item_id, annotator_id, swapped, status, assigned_at) VALUES (1, 1, 1, 0, 'voted', 3000);
             INSERT INTO votes (assignment_id, item_id, annotator_id, choice, shown_choice, strength, created_at)
                 VALUES (1, 1, 1, 'first', 'A', 'clear', 4000);",
        )
        .expect("version-1 rows");
    }
    let store = Store::open(&path).expect("migrates");
    let rows = store.export_rows(&every_vote("old")).expect("export");
    assert_eq!(rows.counts.pairs, 1);
    assert_eq!(rows.pairs[0]["consent_version"], 1);
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("raw");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION);
    let (sha, accepted_sha, touched): (String, String, i64) = conn
        .query_row(
            "SELECT v.sha256, n.consent_sha256, a.touched_at FROM consent_versions v, annotators n, assignments a",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("migrated values");
    assert_eq!(sha.len(), 64);
    assert_eq!(accepted_sha, sha, "the old acceptance is of version 1");
    assert_eq!(touched, 3000, "leases start from the assignment time");
}

on_both_backends!(
    a_withdrawn_annotator_leaves_every_export_and_their_items_reopen,
    erase_deletes_the_votes_but_keeps_the_record_and_the_admin_can_record_it,
    a_new_consent_text_asks_every_annotator_again,
);
