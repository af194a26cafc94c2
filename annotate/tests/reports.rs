//! Agreement, leaderboard and export through the API and the library's `export`.

mod common;

use axum::http::StatusCode;
use common::{items_jsonl, Backend, TestApp};
use serde_json::{json, Value};
use tiller_annotate::{export, Aggregation, ExportOptions, TiePolicy};

/// Votes for the answer written by `model` (`"alpha"`/`"beta"`), whichever side it is on.
async fn vote_for(app: &TestApp, token: &str, model: &str, strength: &str) -> bool {
    let next = app.next(token).await;
    let Some(assignment) = next.json["assignment"].as_object() else {
        return false;
    };
    let on_left = assignment["answer_a"]
        .as_str()
        .expect("text")
        .starts_with(model);
    let choice = if on_left { "A" } else { "B" };
    let body = json!({"assignment_id": assignment["assignment_id"], "choice": choice, "strength": strength});
    assert_eq!(
        app.post("/api/me/votes", token, body).await.status,
        StatusCode::CREATED
    );
    true
}

async fn vote_choice(app: &TestApp, token: &str, choice: &str) {
    let next = app.next(token).await;
    let body = json!({"assignment_id": next.json["assignment"]["assignment_id"], "choice": choice});
    assert_eq!(
        app.post("/api/me/votes", token, body).await.status,
        StatusCode::CREATED
    );
}

fn jsonl_rows(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("json row"))
        .collect()
}

async fn agreement_leaderboard_and_export_of_a_three_annotator_campaign(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, tokens) = app.campaign("c", 3, &["ann1", "ann2", "ann3"]).await;
    app.upload(id, &app.admin, &items_jsonl(6)).await;
    for (index, token) in tokens.iter().enumerate() {
        app.consent(token).await;
        let model = if index == 2 { "beta" } else { "alpha" };
        while vote_for(&app, token, model, "clear").await {}
    }

    // Each item: labels [first, first, second]. Raw agreement 1/3 per item.
    // alpha = 1 - (n-1) * sum_{c!=k} o_ck / sum_{c!=k} n_c n_k
    //       = 1 - 17 * 12 / (2 * 12 * 6) = 1 - 204/144.
    let agreement = app
        .get(&format!("/api/admin/campaigns/{id}/agreement"), &app.admin)
        .await;
    assert_eq!(agreement.status, StatusCode::OK);
    let raw = agreement.json["raw_agreement"].as_f64().expect("raw");
    assert!((raw - 1.0 / 3.0).abs() < 1e-9);
    let alpha = agreement.json["krippendorff_alpha"]
        .as_f64()
        .expect("alpha");
    assert!((alpha - (1.0 - 204.0 / 144.0)).abs() < 1e-9, "{alpha}");
    let pairs = agreement.json["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 3);
    assert_eq!(
        pairs[0]["kappa"],
        Value::Null,
        "ann1 and ann2 always agree on one label"
    );
    assert_eq!(pairs[1]["kappa"].as_f64(), Some(0.0));
    let flagged: Vec<&Value> = agreement.json["raters"]
        .as_array()
        .expect("raters")
        .iter()
        .filter(|r| r["flagged"] == true)
        .collect();
    assert_eq!(flagged.len(), 1);
    let flagged_id = flagged[0]["rater"].to_string();
    assert_eq!(agreement.json["names"][flagged_id], "ann3");

    let board = app
        .get(
            &format!("/api/admin/campaigns/{id}/leaderboard?bootstrap=50&seed=1"),
            &app.admin,
        )
        .await;
    let models = board.json["models"].as_array().expect("models");
    assert_eq!(models[0]["model"], "alpha");
    assert_eq!(
        (models[0]["wins"].as_f64(), models[0]["losses"].as_f64()),
        (Some(12.0), Some(6.0))
    );
    assert!(models[0]["score"].as_f64() > models[1]["score"].as_f64());
    let bad = app
        .get(
            &format!("/api/admin/campaigns/{id}/leaderboard?bootstrap=lots"),
            &app.admin,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json["error"]
        .as_str()
        .expect("message")
        .contains("bootstrap"));

    let majority = app
        .get(&format!("/api/admin/campaigns/{id}/export"), &app.admin)
        .await;
    let rows = jsonl_rows(majority.json["pairs"].as_str().expect("pairs"));
    assert_eq!(rows.len(), 6);
    for row in &rows {
        assert_eq!(row["chosen_model"], "alpha");
        assert!(row["chosen"]
            .as_str()
            .expect("chosen")
            .starts_with("alpha answer"));
        assert!(row["rejected"]
            .as_str()
            .expect("rejected")
            .starts_with("beta answer"));
        assert_eq!(
            (row["votes"].as_i64(), row["agreeing"].as_i64()),
            (Some(3), Some(2))
        );
        assert_eq!(
            row["annotator"]
                .as_str()
                .expect("pseudonyms")
                .split(',')
                .count(),
            2
        );
        assert!(
            row["annotator"]
                .as_str()
                .expect("pseudonyms")
                .starts_with("ann-"),
            "pseudonymized"
        );
        assert_eq!(row["consent"], true);
        assert_eq!(row["strength"], "clear");
        assert!(row["voted_at"].as_str().expect("time").ends_with('Z'));
    }
    assert_eq!(majority.json["manifest"]["counts"]["votes"], 18);

    let every = app
        .get(
            &format!("/api/admin/campaigns/{id}/export?aggregation=every_vote"),
            &app.admin,
        )
        .await;
    let rows = jsonl_rows(every.json["pairs"].as_str().expect("pairs"));
    assert_eq!(rows.len(), 18);
    assert_eq!(
        rows.iter().filter(|r| r["chosen_model"] == "alpha").count(),
        12
    );
    let bad = app
        .get(
            &format!("/api/admin/campaigns/{id}/export?aggregation=mean"),
            &app.admin,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

async fn tie_policies_counts_manifest_and_files(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, tokens) = app.campaign("ties", 1, &["solo"]).await;
    app.upload(id, &app.admin, &items_jsonl(4)).await;
    let token = &tokens[0];
    app.consent(token).await;
    vote_for(&app, token, "alpha", "slight").await;
    vote_choice(&app, token, "tie").await;
    vote_choice(&app, token, "both_bad").await;
    vote_for(&app, token, "beta", "strong").await;

    let dropped = app
        .get(
            &format!("/api/admin/campaigns/{id}/export?ties=drop"),
            &app.admin,
        )
        .await;
    let counts = &dropped.json["manifest"]["counts"];
    assert_eq!(
        counts,
        &json!({"votes": 4, "items": 4, "pairs": 2, "ties": 1, "both_bad": 1, "no_majority": 0, "dropped": 2, "excluded_low_gold": 0})
    );
    assert_eq!(dropped.json["ties"], Value::Null);
    let separate = app
        .get(
            &format!("/api/admin/campaigns/{id}/export?ties=separate"),
            &app.admin,
        )
        .await;
    let ties = jsonl_rows(separate.json["ties"].as_str().expect("ties"));
    let outcomes: Vec<&str> = ties
        .iter()
        .map(|r| r["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(outcomes, ["tie", "both_bad"]);
    assert!(ties[0]["completion_1"]
        .as_str()
        .expect("text")
        .starts_with("alpha answer"));
    assert_eq!(separate.json["manifest"]["counts"]["dropped"], 0);

    // The library export: files, manifest and content hash.
    let out = app.dir.path().join("pairs.jsonl");
    let db = app.store.path().to_path_buf();
    let options = ExportOptions {
        campaign: Some("ties".into()),
        ties: TiePolicy::Separate,
        aggregation: Aggregation::EveryVote,
        ..ExportOptions::default()
    };
    let summary = export(&db, &out, options).expect("export");
    assert_eq!(summary.counts.pairs, 2);
    let pairs_text = std::fs::read_to_string(&out).expect("pairs file");
    let ties_text =
        std::fs::read_to_string(app.dir.path().join("pairs.ties.jsonl")).expect("ties file");
    assert_eq!(
        (pairs_text.lines().count(), ties_text.lines().count()),
        (2, 2)
    );
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(app.dir.path().join("pairs.manifest.json")).expect("manifest"),
    )
    .expect("json");
    let expected_hash = sha256_hex(format!("{pairs_text}{ties_text}").as_bytes());
    assert_eq!(manifest["content_sha256"], expected_hash);
    assert_eq!(summary.content_sha256, expected_hash);
    assert_eq!(
        manifest["files"],
        json!([{"file": "pairs.jsonl", "rows": 2}, {"file": "pairs.ties.jsonl", "rows": 2}])
    );
    let preferred: Vec<&str> = pairs_text
        .lines()
        .map(|l| {
            if l.contains("\"chosen_model\":\"alpha\"") {
                "alpha"
            } else {
                "beta"
            }
        })
        .collect();
    assert_eq!(preferred, ["alpha", "beta"]);

    let missing = export(
        &app.dir.path().join("typo.db"),
        &out,
        ExportOptions::default(),
    );
    assert!(missing
        .expect_err("missing db")
        .to_string()
        .contains("typo.db"));
    assert!(
        !app.dir.path().join("typo.db").exists(),
        "export does not create a database"
    );
    let unknown = export(
        &db,
        &out,
        ExportOptions {
            campaign: Some("nope".into()),
            ..Default::default()
        },
    );
    assert!(unknown
        .expect_err("unknown campaign")
        .to_string()
        .contains("nope"));
    let bad_ext = export(
        &db,
        &app.dir.path().join("pairs.csv"),
        ExportOptions::default(),
    );
    assert!(bad_ext
        .expect_err("csv")
        .to_string()
        .contains(".jsonl or .parquet"));
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn parquet_export_round_trips_through_tiller_data(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, tokens) = app.campaign("pq", 1, &["solo"]).await;
    app.upload(id, &app.admin, &items_jsonl(3)).await;
    app.consent(&tokens[0]).await;
    while vote_for(&app, &tokens[0], "beta", "strong").await {}
    let out = app.dir.path().join("pairs.parquet");
    let summary = export(app.store.path(), &out, ExportOptions::default()).expect("parquet export");
    assert_eq!(summary.counts.pairs, 3);
    let rows = tiller_data::read_table(&out).expect("read back");
    assert_eq!(rows.len(), 3);
    for (_, row) in &rows {
        assert_eq!(row["chosen_model"], "beta");
        assert!(row["chosen"]
            .as_str()
            .expect("chosen")
            .starts_with("beta answer"));
        assert!(row["prompt"]
            .as_str()
            .expect("prompt")
            .starts_with("Question"));
    }
    // The content hash names the rows, not the container: JSONL gives the same hash.
    let jsonl = export(
        app.store.path(),
        &app.dir.path().join("pairs.jsonl"),
        ExportOptions::default(),
    )
    .expect("jsonl");
    assert_eq!(jsonl.content_sha256, summary.content_sha256);
    assert!(app.dir.path().join("pairs.manifest.json").exists());
}

on_both_backends!(
    agreement_leaderboard_and_export_of_a_three_annotator_campaign,
    tie_policies_counts_manifest_and_files,
    parquet_export_round_trips_through_tiller_data,
);
