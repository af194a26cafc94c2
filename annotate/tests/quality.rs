//! Votes that carry what people said: gold items and the accuracy threshold, disputed
//! items flagged and re-queued, ties kept as ties, both-bad as undesirable KTO rows.

mod common;

use axum::http::StatusCode;
use common::{items_jsonl, Backend, TestApp};
use serde_json::json;
use tiller_annotate::store::Outcome;
use tiller_annotate::{Aggregation, ExportFormat, ExportOptions, TiePolicy};

/// The annotator's current assignment: (assignment id, item id, whether answer A is
/// the uploaded first answer).
async fn current(app: &TestApp, token: &str) -> Option<(i64, i64, bool)> {
    let next = app.next(token).await;
    let assignment = &next.json["assignment"];
    let id = assignment["assignment_id"].as_i64()?;
    let item = assignment["item_id"].as_i64()?;
    let first_shown_as_a = assignment["answer_a"]
        .as_str()
        .is_some_and(|a| a.starts_with("alpha"));
    Some((id, item, first_shown_as_a))
}

/// Votes on every offered item: `pick(item_index)` says "first", "second", "tie" or
/// "both_bad" in terms of the uploaded answers.
async fn vote_all(app: &TestApp, token: &str, pick: impl Fn(i64) -> &'static str) {
    while let Some((id, item, first_is_a)) = current(app, token).await {
        let body = match (pick(item), first_is_a) {
            ("first", true) | ("second", false) => {
                json!({"assignment_id": id, "choice": "A", "strength": "clear"})
            }
            ("first", false) | ("second", true) => {
                json!({"assignment_id": id, "choice": "B", "strength": "clear"})
            }
            (other, _) => json!({"assignment_id": id, "choice": other}),
        };
        let vote = app.post("/api/me/votes", token, body).await;
        assert_eq!(vote.status, StatusCode::CREATED, "{}", vote.text);
    }
}

async fn gold_accuracy_is_reported_and_a_threshold_excludes_from_export(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, tokens) = app.campaign("g", 2, &["good", "bad"]).await;
    let upload = app.upload(id, &app.admin, &items_jsonl(4)).await;
    assert_eq!(upload.status, StatusCode::CREATED);
    let campaign = app.store.campaign_by_name("g").expect("campaign");
    let first_item = app.store.item_progress(campaign.id).expect("items")[0].item_id;
    let marks = json!({"items": [
        {"item_id": first_item, "answer": "first"},
        {"item_id": first_item + 1, "answer": "first"}]});
    let set = app
        .post(
            &format!("/api/admin/campaigns/{id}/gold"),
            &app.admin,
            marks,
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.json["updated"], 2);
    let foreign = app
        .post(
            &format!("/api/admin/campaigns/{id}/gold"),
            &app.admin,
            json!({"items": [{"item_id": 999, "answer": "first"}]}),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::BAD_REQUEST);
    assert!(
        foreign.text.contains("items[0].item_id"),
        "{}",
        foreign.text
    );

    for token in &tokens {
        app.consent(token).await;
    }
    vote_all(&app, &tokens[0], |_| "first").await;
    vote_all(&app, &tokens[1], |item| {
        if item == first_item {
            "first"
        } else {
            "second"
        }
    })
    .await;

    let progress = app
        .get(&format!("/api/admin/campaigns/{id}/progress"), &app.admin)
        .await;
    let (good, bad) = (
        &progress.json["annotators"][0],
        &progress.json["annotators"][1],
    );
    assert_eq!(
        (
            good["gold_answered"].as_i64(),
            good["gold_correct"].as_i64()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(good["gold_accuracy"], 1.0);
    assert_eq!(bad["gold_accuracy"], 0.5, "{}", progress.text);
    assert_eq!(progress.json["items"][0]["gold"], "first");

    let options = ExportOptions {
        campaign: Some("g".into()),
        aggregation: Aggregation::EveryVote,
        ..ExportOptions::default()
    };
    let all = app.store.export_rows(&options).expect("export");
    assert_eq!(all.counts.votes, 8);
    let listed: Vec<(String, Option<f64>, bool)> = all
        .provenance
        .annotators
        .iter()
        .map(|a| (a.pseudonym.clone(), a.gold_accuracy, a.excluded))
        .collect();
    assert!(
        listed.iter().any(|(_, acc, ex)| *acc == Some(0.5) && !ex),
        "{listed:?}"
    );

    let policy = app
        .post(
            &format!("/api/admin/campaigns/{id}/policy"),
            &app.admin,
            json!({"min_gold_accuracy": 0.75}),
        )
        .await;
    assert_eq!(policy.status, StatusCode::OK, "{}", policy.text);
    let bad_range = app
        .post(
            &format!("/api/admin/campaigns/{id}/policy"),
            &app.admin,
            json!({"min_gold_accuracy": 2}),
        )
        .await;
    assert_eq!(bad_range.status, StatusCode::BAD_REQUEST);
    let strict = app.store.export_rows(&options).expect("export");
    assert_eq!(
        strict.counts.votes, 4,
        "only the accurate annotator's votes"
    );
    assert_eq!(strict.counts.excluded_low_gold, 4);
    let excluded: Vec<bool> = strict
        .provenance
        .annotators
        .iter()
        .map(|a| a.excluded)
        .collect();
    assert_eq!(
        excluded.iter().filter(|e| **e).count(),
        1,
        "{:?}",
        strict.provenance
    );
    let bundle = app
        .get(
            &format!("/api/admin/campaigns/{id}/export?aggregation=every_vote"),
            &app.admin,
        )
        .await;
    assert_eq!(
        bundle.json["manifest"]["counts"]["excluded_low_gold"], 4,
        "{}",
        bundle.text
    );
    assert_eq!(
        bundle.json["manifest"]["provenance"]["vote_ids"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
}

async fn an_upload_can_mark_gold_items_and_names_a_bad_gold_field(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, _) = app.campaign("u", 1, &[]).await;
    let lines = concat!(
        r#"{"prompt": "p", "answers": [{"model": "a", "text": "x"}, {"model": "b", "text": "y"}], "gold": "second"}"#,
        "\n",
        r#"{"prompt": "q", "answers": [{"model": "a", "text": "x"}, {"model": "b", "text": "y"}]}"#,
        "\n"
    );
    let reply = app.upload(id, &app.admin, lines).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let campaign = app.store.campaign_by_name("u").expect("campaign");
    let gold: Vec<Option<Outcome>> = app
        .store
        .item_progress(campaign.id)
        .expect("items")
        .iter()
        .map(|i| i.gold)
        .collect();
    assert_eq!(gold, vec![Some(Outcome::Second), None]);
    for (line, message) in [
        (
            r#"{"prompt": "p", "gold": "first"}"#,
            "field `gold` needs `answers`",
        ),
        (
            r#"{"prompt": "p", "answers": [{"model": "a", "text": "x"}, {"model": "b", "text": "y"}], "gold": "left"}"#,
            "field `gold`: unknown variant `left`",
        ),
    ] {
        let reply = app.upload(id, &app.admin, line).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{line}");
        let error = reply.json["error"].as_str().expect("message");
        assert!(
            error.starts_with("line 1: ") && error.contains(message),
            "{error}"
        );
    }
}

async fn disputed_items_are_flagged_and_requeued_for_another_vote(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, tokens) = app.campaign("d", 2, &["ana", "ben", "chen"]).await;
    app.upload(id, &app.admin, &items_jsonl(2)).await;
    for token in &tokens {
        app.consent(token).await;
    }
    let campaign = app.store.campaign_by_name("d").expect("campaign");
    let first_item = app.store.item_progress(campaign.id).expect("items")[0].item_id;
    vote_all(&app, &tokens[0], |_| "first").await;
    vote_all(&app, &tokens[1], |item| {
        if item == first_item {
            "second"
        } else {
            "first"
        }
    })
    .await;
    assert!(
        current(&app, &tokens[2]).await.is_none(),
        "both items are full"
    );

    let agreement = app
        .get(&format!("/api/admin/campaigns/{id}/agreement"), &app.admin)
        .await;
    let items = agreement.json["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{}", agreement.text);
    let flagged: Vec<i64> = items
        .iter()
        .filter(|i| i["flagged"] == true)
        .map(|i| i["unit"].as_i64().expect("id"))
        .collect();
    assert_eq!(flagged, vec![first_item]);
    assert_eq!(items[0]["agreement"], 0.0);
    assert_eq!(items[0]["majority"], serde_json::Value::Null);

    let bad = app
        .post(
            &format!("/api/admin/campaigns/{id}/items/{first_item}/requeue"),
            &app.admin,
            json!({"extra": 0}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let requeued = app
        .post(
            &format!("/api/admin/campaigns/{id}/items/{first_item}/requeue"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_eq!(requeued.status, StatusCode::OK, "{}", requeued.text);
    assert_eq!(requeued.json["overlap"], 3);
    let me = app.get("/api/me", &tokens[2]).await;
    assert_eq!(me.json["progress"]["remaining"], 1, "{}", me.text);
    let next = app.next(&tokens[2]).await;
    assert_eq!(
        next.json["assignment"]["item_id"], first_item,
        "{}",
        next.text
    );
}

async fn ties_can_be_kept_and_both_bad_becomes_undesirable_kto_rows(backend: Backend) {
    let app = TestApp::on(backend);
    let (id, tokens) = app.campaign("t", 1, &["ana"]).await;
    app.upload(id, &app.admin, &items_jsonl(3)).await;
    app.consent(&tokens[0]).await;
    let campaign = app.store.campaign_by_name("t").expect("campaign");
    let first_item = app.store.item_progress(campaign.id).expect("items")[0].item_id;
    let picks = ["first", "tie", "both_bad"];
    vote_all(&app, &tokens[0], |item| picks[(item - first_item) as usize]).await;
    let options = |format, ties| ExportOptions {
        campaign: Some("t".into()),
        format,
        ties,
        aggregation: Aggregation::Majority,
    };

    let dropped = app
        .store
        .export_rows(&options(ExportFormat::Pairs, TiePolicy::Drop))
        .expect("drop");
    assert_eq!((dropped.counts.pairs, dropped.counts.dropped), (1, 2));
    let kept = app
        .store
        .export_rows(&options(ExportFormat::Pairs, TiePolicy::Keep))
        .expect("keep");
    assert_eq!(kept.pairs.len(), 3);
    let tie = kept
        .pairs
        .iter()
        .find(|r| r["outcome"] == "tie")
        .expect("a tie row");
    assert_eq!(tie["chosen"], "alpha answer 1");
    assert_eq!(tie["rejected"], "beta answer 1");

    let kto = app
        .store
        .export_rows(&options(ExportFormat::Kto, TiePolicy::Drop))
        .expect("kto");
    let rows: Vec<(String, bool, String)> = kto
        .pairs
        .iter()
        .map(|r| {
            (
                r["completion"].as_str().expect("completion").to_string(),
                r["label"].as_bool().expect("label"),
                r["outcome"].as_str().expect("outcome").to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("alpha answer 0".to_string(), true, "first".to_string()),
            ("beta answer 0".to_string(), false, "first".to_string()),
            ("alpha answer 2".to_string(), false, "both_bad".to_string()),
            ("beta answer 2".to_string(), false, "both_bad".to_string()),
        ]
    );
    assert_eq!(kto.counts.dropped, 1, "the tie carries no label");
    let refused = app
        .store
        .export_rows(&options(ExportFormat::Kto, TiePolicy::Keep));
    assert!(refused.is_err_and(|e| e.to_string().contains("`ties`")));

    let api = app
        .get(
            &format!("/api/admin/campaigns/{id}/export?format=kto"),
            &app.admin,
        )
        .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.text);
    assert_eq!(
        api.json["pairs"].as_str().map(|p| p.lines().count()),
        Some(4)
    );
}

on_both_backends!(
    gold_accuracy_is_reported_and_a_threshold_excludes_from_export,
    an_upload_can_mark_gold_items_and_names_a_bad_gold_field,
    disputed_items_are_flagged_and_requeued_for_another_vote,
    ties_can_be_kept_and_both_bad_becomes_undesirable_kto_rows,
);
