//! The real pages in headless Chromium over WebDriver: an annotator accepts consent,
//! votes with the mouse and the keyboard, undoes, finishes the queue, on a desktop and
//! a phone-width window; untrusted HTML stays text; an admin creates a campaign,
//! uploads items and downloads the export; an admin sees gold accuracy and disputed
//! items and re-queues one; an annotator is asked again after the consent text changes
//! and withdraws consent from their page.

mod common;

#[path = "common/webdriver.rs"]
mod webdriver;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tiller_annotate::serve::serve_on;
use tiller_annotate::{AppState, NewCampaign, Store};
use webdriver::Browser;

const ENTER: &str = "\u{E007}";

/// Serves `store` on a free loopback port until the returned sender is dropped.
async fn start_server(store: &Store) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(store.clone());
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        serve_on(listener, state, shutdown).await.expect("serve");
    });
    (base, stop)
}

fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

const XSS_PROMPT: &str = "Explain this: <script>window.__xss = 'script'</script>\n\
<img src=x onerror=\"window.__xss = 'img'\"> and <b>bold?</b>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotator_consents_votes_by_mouse_and_keyboard_undoes_and_finishes() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("browser.db")).expect("store");
    let new = NewCampaign {
        name: "browser".into(),
        guidelines: "Prefer correct answers.\nThen shorter ones.".into(),
        consent: Some("I agree to the <b>terms</b>.".into()),
        overlap: 1,
        annotators: vec!["alice".into()],
        policy: Default::default(),
    };
    let (campaign, links) = store.create_campaign(new).expect("campaign");
    let lines = [
        json!({"prompt": XSS_PROMPT, "answers": [
            {"model": "m1", "text": "Answer with <img src=x onerror=\"window.__xss='answer'\">"},
            {"model": "m2", "text": "Code:\n```python\nprint('<script>')\n```\nDone."}]}),
        json!({"prompt": "Second?", "answers": [{"model": "m1", "text": "one"}, {"model": "m2", "text": "two"}]}),
        json!({"messages": [{"role": "user", "content": "Third?"}], "answers": [{"model": "m1", "text": "x"}, {"model": "m2", "text": "y"}]}),
    ];
    let jsonl: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let items = tiller_annotate::store::parse_items_jsonl(&jsonl).expect("items");
    store.add_items(campaign.id, items).expect("add");
    let (base, _stop) = start_server(&store).await;
    let browser = Browser::start().await;

    browser.goto(&format!("{base}{}", links[0].path)).await;
    browser
        .wait_until(
            "return document.body.dataset.ready === 'true'",
            "the page to load",
        )
        .await;
    assert!(
        browser.text("#consent-text").await.contains("<b>terms</b>"),
        "consent shown as text"
    );
    assert!(browser
        .text("#guidelines")
        .await
        .contains("Prefer correct answers.\nThen shorter ones."));
    assert!(
        browser.text("#accept-consent").await.contains("Enter"),
        "the shortcut is shown"
    );
    browser.press(ENTER).await; // accept the consent with the keyboard
    browser
        .wait_until(
            "return !document.getElementById('work').hidden",
            "the first item",
        )
        .await;

    // Untrusted text is literal and nothing ran.
    let prompt = browser.text("#prompt").await;
    assert!(
        prompt.contains("<script>window.__xss = 'script'</script>"),
        "{prompt}"
    );
    assert!(
        prompt.contains("<img src=x onerror=\"window.__xss = 'img'\">"),
        "{prompt}"
    );
    let injected = browser
        .execute("return [typeof window.__xss, document.querySelectorAll('#work img, #work script, #work b').length]")
        .await;
    assert_eq!(
        injected,
        json!(["undefined", 0]),
        "no injected element exists and no script ran"
    );
    let code = browser.execute("return Array.from(document.querySelectorAll('#work pre code')).map(c => c.textContent)").await;
    assert_eq!(
        code,
        json!(["print('<script>')"]),
        "code blocks kept as code"
    );
    let help = browser.text("#work .help").await;
    assert!(
        help.contains("A") && help.contains("Enter") && help.contains("undo"),
        "shortcuts shown: {help}"
    );
    let shot = browser.screenshot(&artifact("annotate-desktop.png")).await;
    assert_eq!(&shot[..8], b"\x89PNG\r\n\x1a\n", "a PNG screenshot");

    // 1. Mouse: A, clearly, submit.
    browser.click("#choice-A").await;
    assert_eq!(
        browser
            .execute("return document.getElementById('submit').disabled")
            .await,
        json!(true),
        "strength missing"
    );
    browser.click("#strength-clear").await;
    browser.click("#submit").await;
    browser
        .wait_until(
            "return document.getElementById('progress-text').textContent === '1 / 3'",
            "progress 1 / 3",
        )
        .await;
    let second = browser
        .execute("return document.body.dataset.assignment")
        .await;

    // 2. Keyboard: B, strongly, Enter.
    browser.press(&format!("b3{ENTER}")).await;
    browser
        .wait_until(
            "return document.getElementById('progress-text').textContent === '2 / 3'",
            "progress 2 / 3",
        )
        .await;

    // 3. Undo with the keyboard: the second item comes back.
    browser.press("u").await;
    browser
        .wait_until(
            "return document.getElementById('progress-text').textContent === '1 / 3'",
            "undo",
        )
        .await;
    assert_eq!(
        browser
            .execute("return document.body.dataset.assignment")
            .await,
        second
    );

    // 4. Keyboard again: tie (no strength needed), with a rationale typed in the box.
    browser.press("tr").await;
    browser.press("both feel fine").await;
    assert_eq!(
        browser
            .execute("return document.getElementById('rationale').value")
            .await,
        json!("both feel fine")
    );
    browser
        .execute("document.getElementById('rationale').blur(); return true")
        .await;
    browser.press(ENTER).await;
    browser
        .wait_until(
            "return document.getElementById('progress-text').textContent === '2 / 3'",
            "tie recorded",
        )
        .await;

    // 5. Phone width: answers stack; finish with the mouse (both bad).
    browser.set_window_size(390, 844).await;
    browser
        .wait_until("return window.innerWidth < 500", "a phone-width window")
        .await;
    let stacked = browser
        .execute(
            "const [a, b] = document.querySelectorAll('.answer'); \
             return b.getBoundingClientRect().top >= a.getBoundingClientRect().bottom \
                 && document.documentElement.scrollWidth <= window.innerWidth + 1",
        )
        .await;
    assert_eq!(
        stacked,
        json!(true),
        "answers stack without horizontal scrolling at phone width"
    );
    browser.screenshot(&artifact("annotate-phone.png")).await;
    browser.click("#choice-both_bad").await;
    browser.click("#submit").await;
    browser
        .wait_until(
            "return !document.getElementById('done').hidden",
            "the done page",
        )
        .await;
    assert_eq!(browser.text("#progress-text").await, "3 / 3");

    // The done page asks again: an item added since (or a lease that ran out) shows up.
    let more = tiller_annotate::store::parse_items_jsonl(
        r#"{"prompt": "Fourth?", "answers": [{"model": "m1", "text": "late"}, {"model": "m2", "text": "later"}]}"#,
    )
    .expect("item");
    store.add_items(campaign.id, more).expect("add");
    browser.click("#check-again").await;
    browser
        .wait_until(
            "return !document.getElementById('work').hidden && document.getElementById('prompt').textContent.includes('Fourth?')",
            "the reopened queue",
        )
        .await;
    assert_eq!(browser.text("#progress-text").await, "3 / 4");

    // The store holds exactly the three live votes: one preference, one tie, one both-bad,
    // with the rationale; the undone vote is not among them.
    let options = tiller_annotate::ExportOptions {
        campaign: None,
        ties: tiller_annotate::TiePolicy::Separate,
        aggregation: tiller_annotate::Aggregation::EveryVote,
        ..Default::default()
    };
    let rows = store.export_rows(&options).expect("rows");
    assert_eq!(
        (
            rows.counts.votes,
            rows.counts.pairs,
            rows.counts.ties,
            rows.counts.both_bad
        ),
        (3, 1, 1, 1)
    );
    assert_eq!(rows.pairs[0]["strength"], "clear");
    assert_eq!(rows.ties[0]["rationale"], "both feel fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_a_campaign_uploads_items_and_downloads_the_export() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("admin.db")).expect("store");
    let admin = store.create_admin_token().expect("admin token");
    let (base, _stop) = start_server(&store).await;
    let browser = Browser::start().await;

    browser.goto(&format!("{base}/admin#token={admin}")).await;
    browser
        .wait_until(
            "return document.body.dataset.ready === 'true'",
            "the admin page",
        )
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
    let file_input = browser.find("#items-file").await;
    browser
        .command(
            "POST",
            &format!("/element/{file_input}/value"),
            json!({"text": items.display().to_string()}),
        )
        .await;
    browser.click("#upload").await;
    browser
        .wait_until(
            "return document.getElementById('status').textContent.startsWith('Uploaded 4 items')",
            "upload",
        )
        .await;

    // alice votes for the "good" model on every item, through the API.
    let http = reqwest::Client::new();
    let auth = format!("Bearer {token}");
    http.post(format!("{base}/api/me/consent"))
        .header("Authorization", &auth)
        .json(&json!({"accept": true}))
        .send()
        .await
        .expect("consent");
    loop {
        let next: Value = http
            .post(format!("{base}/api/me/next"))
            .header("Authorization", &auth)
            .send()
            .await
            .expect("next")
            .json()
            .await
            .expect("json");
        let Some(a) = next["assignment"].as_object() else {
            break;
        };
        let choice = if a["answer_a"].as_str().expect("text").starts_with("good") {
            "A"
        } else {
            "B"
        };
        let vote =
            json!({"assignment_id": a["assignment_id"], "choice": choice, "strength": "strong"});
        let reply = http
            .post(format!("{base}/api/me/votes"))
            .header("Authorization", &auth)
            .json(&vote)
            .send()
            .await
            .expect("vote");
        assert_eq!(reply.status(), reqwest::StatusCode::CREATED);
    }

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

/// Votes through the HTTP API: `pick(answer_a)` returns the choice ("A" or "B").
async fn vote_over_http(base: &str, token: &str, pick: impl Fn(&str, i64) -> &'static str) {
    let http = reqwest::Client::new();
    let auth = format!("Bearer {token}");
    let consent = http
        .post(format!("{base}/api/me/consent"))
        .header("Authorization", &auth)
        .json(&json!({"accept": true}))
        .send()
        .await
        .expect("consent");
    assert!(consent.status().is_success());
    loop {
        let next: Value = http
            .post(format!("{base}/api/me/next"))
            .header("Authorization", &auth)
            .send()
            .await
            .expect("next")
            .json()
            .await
            .expect("json");
        let Some(a) = next["assignment"].as_object() else {
            break;
        };
        let choice = pick(
            a["answer_a"].as_str().expect("text"),
            a["item_id"].as_i64().expect("item"),
        );
        let vote =
            json!({"assignment_id": a["assignment_id"], "choice": choice, "strength": "clear"});
        let reply = http
            .post(format!("{base}/api/me/votes"))
            .header("Authorization", &auth)
            .json(&vote)
            .send()
            .await
            .expect("vote");
        assert_eq!(reply.status(), reqwest::StatusCode::CREATED);
    }
}

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
    vote_over_http(&base, &links[0].token, good).await;
    // Bob agrees except on the gold item: a gold miss and a disputed item.
    let first = ids[0];
    vote_over_http(&base, &links[1].token, move |a, item| {
        if a.starts_with("good") == (item == first) {
            "B"
        } else {
            "A"
        }
    })
    .await;

    let browser = Browser::start().await;
    browser.goto(&format!("{base}/admin#token={admin}")).await;
    browser
        .wait_until(
            "return document.body.dataset.ready === 'true'",
            "the admin page",
        )
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
    browser.goto(&format!("{base}{}", links[0].path)).await;
    browser
        .wait_until(
            "return document.body.dataset.ready === 'true'",
            "the annotator page",
        )
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
