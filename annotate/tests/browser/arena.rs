//! The arena in the browser against the scripted endpoint of `tests/arena/endpoint.rs`:
//! the admin makes an arena campaign on the admin page (its key never reaches the page);
//! the annotator's battle against a down endpoint shows the failure and a Retry button;
//! once the admin points the arena at a live endpoint, Retry streams both answers, the
//! keyboard vote is cast and the names are revealed.

use serde_json::json;
use tiller_annotate::Store;

use crate::driver::Browser;
use crate::endpoint::{answer, down_url, Endpoint};
use crate::{artifact, start_server, ENTER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arena_made_on_the_admin_page_fails_clearly_then_retries_and_reveals() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("arena.db")).expect("store");
    let admin = store.create_admin_token().expect("admin token");
    let (base, _stop) = start_server(&store).await;
    let browser = Browser::start().await;

    // The admin page: a new campaign with two arena models, one with a key.
    browser
        .open(&format!("{base}/admin#token={admin}"), "the admin page")
        .await;
    browser.type_into("#new-name", "arena").await;
    browser.type_into("#new-overlap", "1").await;
    browser.type_into("#new-annotators", "ana").await;
    let down = down_url();
    let lines = format!("alpha {down} alpha sekret\nbeta {down} beta");
    browser.type_into("#new-arena", &lines).await;
    browser.click("#create").await;
    browser
        .wait_until(
            "return document.querySelectorAll('#arena-models tbody tr').length === 2",
            "the arena's models",
        )
        .await;
    let table = browser.text("#arena-models").await;
    assert!(table.contains("alpha") && table.contains("set"), "{table}");
    assert_eq!(
        browser
            .execute("return document.documentElement.outerHTML.includes('sekret') || document.getElementById('arena-lines').value.includes('sekret')")
            .await,
        json!(false),
        "the key never reaches the page"
    );
    let link = browser.text("#links .annotator-link").await;
    let campaign = store.campaign_by_name("arena").expect("campaign").id;

    // The annotator: a down endpoint fails the battle with a message and a retry.
    browser.open(&link, "the annotator's page").await;
    browser.consent_and_compose("Why is the sky blue?").await;
    browser.press(ENTER).await; // a newline in the box, not a send
    browser.click("#arena-send").await;
    browser
        .wait_until(
            "return !document.getElementById('arena-failed').hidden",
            "the failure",
        )
        .await;
    let status = browser.text("#status").await;
    assert!(
        status.contains("cannot connect to the model's endpoint") && status.contains("Retry"),
        "{status}"
    );
    assert!(
        !status.contains(&down),
        "the endpoint stays hidden: {status}"
    );
    browser.screenshot(&artifact("arena-failed.png")).await;

    // The admin points the arena at a live endpoint; Retry asks again.
    let endpoint = Endpoint::start().await;
    let models = json!({"models": [
        {"name": "alpha", "base_url": endpoint.url, "model": "alpha"},
        {"name": "beta", "base_url": endpoint.url, "model": "beta"}]});
    let reply = reqwest::Client::new()
        .post(format!("{base}/api/admin/campaigns/{campaign}/arena"))
        .bearer_auth(&admin)
        .json(&models)
        .send()
        .await
        .expect("set the arena");
    assert!(reply.status().is_success());
    browser.click("#arena-retry").await;
    browser
        .wait_until(
            "return !!document.body.dataset.assignment && document.getElementById('arena-waiting').hidden",
            "both answers",
        )
        .await;
    let prompt = "Why is the sky blue?";
    let a = browser.text("#answer-a").await;
    let b = browser.text("#answer-b").await;
    let mut both = [a.clone(), b.clone()];
    both.sort();
    assert_eq!(both, [answer("alpha", prompt), answer("beta", prompt)]);

    browser.press("b1").await; // B is better, slightly
    browser.press(ENTER).await;
    browser
        .wait_until(
            "return !document.getElementById('arena-reveal').hidden",
            "the reveal",
        )
        .await;
    let a_model = if a.starts_with("alpha") {
        "alpha"
    } else {
        "beta"
    };
    let b_model = if a_model == "alpha" { "beta" } else { "alpha" };
    assert_eq!(
        browser.text("#arena-reveal").await,
        format!("Thank you! A was {a_model}, B was {b_model}.")
    );
    assert_eq!(browser.text("#model-b").await, format!("— {b_model}"));
    let votes = store.campaigns().expect("campaigns")[0].votes;
    assert_eq!(votes, 1);
    browser.press("n").await; // a new prompt
    browser
        .wait_until("return !document.getElementById('compose').hidden && document.getElementById('arena-prompt').value === ''", "a fresh prompt box")
        .await;
}
