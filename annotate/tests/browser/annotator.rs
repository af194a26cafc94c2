//! The annotator's page: consent accepted with the keyboard, votes by mouse and keyboard,
//! undo, the end of the queue, on a desktop and a phone-width window; untrusted HTML in
//! prompts and answers stays text.

use serde_json::json;
use tiller_annotate::{NewCampaign, Store};

use crate::driver::Browser;
use crate::{artifact, start_server, ENTER};

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

    browser
        .open(&format!("{base}{}", links[0].path), "the page to load")
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
