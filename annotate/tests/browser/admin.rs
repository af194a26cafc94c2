//! The admin's page: a campaign created, items uploaded from a file, votes cast over the
//! API, and the export downloaded by the browser.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tiller_annotate::Store;

use crate::driver::Browser;
use crate::{artifact, start_server, vote_over_http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_a_campaign_uploads_items_and_downloads_the_export() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("admin.db")).expect("store");
    let admin = store.create_admin_token().expect("admin token");
    let (base, _stop) = start_server(&store).await;
    let browser = Browser::start().await;

    browser
        .open(&format!("{base}/admin#token={admin}"), "the admin page")
        .await;
    browser.type_into("#new-name", "web campaign").await;
    browser
        .type_into("#new-guidelines", "Pick the better answer.")
        .await;
    browser.type_into("#new-overlap", "1").await;
    browser.type_into("#new-annotators", "alice\nbob").await;
    browser.click("#create").await;
    browser
        .wait_until(
            "return document.querySelectorAll('#links .annotator-link').length === 2",
            "annotator links",
        )
        .await;
    let link = browser.text("#links .annotator-link").await;
    let token = link
        .split("#token=")
        .nth(1)
        .expect("token in link")
        .to_string();
    assert!(link.starts_with(&base), "{link}");

    let items = dir.path().join("items.jsonl");
    let jsonl: String = (0..4)
        .map(|i| json!({"prompt": format!("Q{i}"), "answers": [{"model": "good", "text": format!("good {i}")}, {"model": "bad", "text": format!("bad {i}")}]}).to_string() + "\n")
        .collect();
    std::fs::write(&items, jsonl).expect("items file");
    browser.choose_file("#items-file", &items).await;
    browser.click("#upload").await;
    browser
        .wait_until(
            "return document.getElementById('status').textContent.startsWith('Uploaded 4 items')",
            "upload",
        )
        .await;

    // alice votes for the "good" model on every item, through the API.
    vote_over_http(&base, &token, "strong", |answer_a, _| {
        if answer_a.starts_with("good") {
            "A"
        } else {
            "B"
        }
    })
    .await;

    browser.click("#refresh").await;
    browser
        .wait_until(
            "return document.querySelector('#leaderboard tbody tr td')?.textContent === 'good'",
            "leaderboard",
        )
        .await;
    let item_rows = browser
        .execute("return document.querySelectorAll('#item-progress tbody tr').length")
        .await;
    assert_eq!(item_rows, json!(4), "per-item progress");
    browser.type_into("#more-annotators", "carol").await;
    browser.click("#add-annotators").await;
    browser
        .wait_until(
            "return document.querySelector('#links .link-name')?.textContent === 'carol: '",
            "a link for the added annotator",
        )
        .await;
    browser.click("#export").await;
    browser.wait_until("return document.getElementById('export-summary').textContent.startsWith('Exported 4 rows')", "export").await;
    browser.screenshot(&artifact("admin.png")).await;

    let pairs = browser.downloads.join("pairs.jsonl");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(pairs.exists() && browser.downloads.join("pairs.manifest.json").exists()) {
        assert!(
            Instant::now() < deadline,
            "the export was not downloaded to {}",
            browser.downloads.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(&pairs).expect("downloaded pairs");
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("row"))
        .collect();
    assert_eq!(rows.len(), 4);
    assert!(rows
        .iter()
        .all(|r| r["chosen_model"] == "good" && r["strength"] == "strong"));
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(browser.downloads.join("pairs.manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["counts"]["pairs"], 4);
}
