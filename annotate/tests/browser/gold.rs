//! Quality and consent: the admin sees gold accuracy and disputed items and re-queues one;
//! an annotator is asked again after the consent text changes and withdraws consent from
//! their page.

use serde_json::json;
use tiller_annotate::{NewCampaign, Store};

use crate::driver::Browser;
use crate::{artifact, start_server, vote_over_http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_sees_gold_and_disputes_and_an_annotator_withdraws_consent() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("quality.db")).expect("store");
    let admin = store.create_admin_token().expect("admin token");
    let (campaign, links) = store
        .create_campaign(NewCampaign {
            name: "quality".into(),
            guidelines: "Pick the better answer.".into(),
            consent: Some("Terms, first version.".into()),
            overlap: 2,
            annotators: vec!["alice".into(), "bob".into(), "carol".into()],
            policy: Default::default(),
        })
        .expect("campaign");
    let jsonl: String = (0..3)
        .map(|i| json!({"prompt": format!("Q{i}"), "answers": [{"model": "good", "text": format!("good {i}")}, {"model": "bad", "text": format!("bad {i}")}]}).to_string() + "\n")
        .collect();
    let items = tiller_annotate::store::parse_items_jsonl(&jsonl).expect("items");
    let ids = store.add_items(campaign.id, items).expect("add").item_ids;
    let gold = tiller_annotate::store::GoldMark {
        item_id: ids[0],
        answer: Some(tiller_annotate::store::Outcome::First),
    };
    store.set_gold(campaign.id, vec![gold]).expect("gold");
    let (base, _stop) = start_server(&store).await;
    let good = |a: &str, _: i64| if a.starts_with("good") { "A" } else { "B" };
    vote_over_http(&base, &links[0].token, "clear", good).await;
    // Bob agrees except on the gold item: a gold miss and a disputed item.
    let first = ids[0];
    vote_over_http(&base, &links[1].token, "clear", move |a, item| {
        if a.starts_with("good") == (item == first) {
            "B"
        } else {
            "A"
        }
    })
    .await;

    let browser = Browser::start().await;
    browser
        .open(&format!("{base}/admin#token={admin}"), "the admin page")
        .await;
    browser
        .wait_until(
            "return document.querySelectorAll('#disputed tbody tr').length === 1",
            "one disputed item",
        )
        .await;
    let gold_cells = browser
        .execute("return Array.from(document.querySelectorAll('#annotator-progress tbody tr')).map(r => r.cells[6].textContent)")
        .await;
    assert_eq!(gold_cells, json!(["1.00 (1/1)", "0.00 (0/1)", "—"]));
    browser
        .execute("document.getElementById('annotator-progress').scrollIntoView(); return true")
        .await;
    browser
        .screenshot(&artifact("annotate-admin-gold.png"))
        .await;
    browser.click(&format!("#requeue-{first}")).await;
    browser
        .wait_until(
            "return document.getElementById('status').textContent.includes('now wants 3 votes')",
            "the re-queue",
        )
        .await;
    browser
        .screenshot(&artifact("annotate-admin-quality.png"))
        .await;

    // A gold threshold and a new consent text, from the admin page: alice is asked
    // again, then withdraws from her page.
    browser.type_into("#policy-gold", "0.75").await;
    browser.click("#save-policy").await;
    browser
        .wait_until(
            "return document.getElementById('status').textContent === 'Policy saved.'",
            "the policy",
        )
        .await;
    assert_eq!(
        store
            .campaign_by_name("quality")
            .expect("campaign")
            .policy
            .min_gold_accuracy,
        Some(0.75)
    );
    browser
        .type_into("#consent-new", "Terms, second version.")
        .await;
    browser.click("#publish-consent").await;
    browser
        .wait_until(
            "return document.getElementById('status').textContent.includes('now version 2')",
            "the new consent version",
        )
        .await;
    browser
        .open(&format!("{base}{}", links[0].path), "the annotator page")
        .await;
    assert_eq!(
        browser.execute("return [document.getElementById('consent').hidden, document.getElementById('consent-changed').hidden]").await,
        json!([false, false]),
        "the changed statement is shown and asked for again"
    );
    assert!(browser
        .text("#consent-text")
        .await
        .contains("second version"));
    assert!(browser
        .text("#consent-version")
        .await
        .starts_with("Version 2"));
    browser.click("#accept-consent").await;
    browser
        .wait_until(
            "return !document.getElementById('done').hidden",
            "the done page",
        )
        .await;
    browser.click("#withdraw-bar summary").await;
    browser.click("#withdraw-confirm").await;
    browser.click("#withdraw").await;
    browser
        .wait_until(
            "return !document.getElementById('withdrawn').hidden",
            "the withdrawn page",
        )
        .await;
    browser
        .screenshot(&artifact("annotate-withdrawn.png"))
        .await;

    let rows = store
        .export_rows(&tiller_annotate::ExportOptions {
            campaign: Some("quality".into()),
            aggregation: tiller_annotate::Aggregation::EveryVote,
            ..Default::default()
        })
        .expect("export");
    // Alice withdrew; bob missed the gold item (0 < 0.75), so nobody is exported.
    assert_eq!(rows.counts.votes, 0, "{:?}", rows.counts);
    assert_eq!(rows.counts.excluded_low_gold, 3);
    assert_eq!(rows.provenance.annotators.len(), 1, "bob, marked excluded");
    assert!(rows.provenance.annotators[0].excluded);
}
