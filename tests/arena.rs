//! The live arena end to end, as a team runs it: two `tiller serve` processes on tiny
//! random models, an arena campaign made with `tiller annotate campaign --arena`, `tiller
//! annotate serve`, and a real headless Chromium (annotate's browser driver) in which an
//! annotator consents, types a prompt (with HTML in it), watches both answers stream in,
//! votes and sees the names revealed; then `tiller annotate export` writes that vote as a
//! pair and `tiller dpo` trains a step on it.

#[allow(dead_code)] // the arena uses some of the browser tests' steps
#[path = "../annotate/tests/browser/driver.rs"]
mod driver;
mod loop_support;
mod pipeline_support;
mod serve_support;

use std::path::{Path, PathBuf};
use std::process::Output;

use driver::Browser;
use loop_support::Serve;
use pipeline_support::{ok, tiller};
use serde_json::{json, Value};
use serve_support::{serve, KEY};
use tiller_model::testing::write_tiny_checkpoint;

const PROMPT: &str = "Hello <img src=x onerror=\"window.__xss=1\"> <b>there</b>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arena_vote_in_chromium_against_two_tiller_serves_trains_dpo() {
    let dir = tempfile::tempdir().expect("dir");
    let (base_a, base_b) = (dir.path().join("a"), dir.path().join("b"));
    write_tiny_checkpoint(&base_a, 7).expect("model a");
    write_tiny_checkpoint(&base_b, 8).expect("model b");
    let server_a = serve(&format!("tiny-a={}", base_a.display()), &[]);
    let server_b = serve(&format!("tiny-b={}", base_b.display()), &[]);

    // The arena's models, as an admin writes them (sampled: greedy tiny random models
    // repeat one token).
    let arena = dir.path().join("arena.json");
    let model = |name: &str, url: &str| json!({"name": name, "base_url": url, "model": name, "api_key": KEY});
    let config = json!({"models": [model("tiny-a", &server_a.url), model("tiny-b", &server_b.url)],
                        "max_tokens": 12, "temperature": 1.0});
    std::fs::write(&arena, config.to_string()).expect("write arena.json");
    let db = dir.path().join("arena.db");
    // A bad file is refused naming it and the field, and creates nothing.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        json!({"models": [model("tiny-a", &server_a.url)]}).to_string(),
    )
    .expect("write bad.json");
    let refused = arena_campaign(&db, &bad);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("bad.json")
            && stderr.contains("invalid field `models`: an arena needs at least 2 models"),
        "{stderr}"
    );
    let created = ok(&arena_campaign(&db, &arena));
    assert!(
        created.contains("campaign arena is an arena of 2 models"),
        "{created}"
    );
    let token = created
        .split("#token=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no link in {created}"))
        .to_string();

    let app = Serve::start(&db);
    let browser = Browser::start().await;
    let page = format!("http://{}/annotate#token={token}", app.addr);
    browser.open(&page, "the annotator's page").await;
    browser.consent_and_compose(PROMPT).await;
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    browser.screenshot(&tmp.join("arena-compose.png")).await;
    browser.click("#arena-send").await;
    browser
        .wait_until(
            "return !!document.body.dataset.assignment && document.getElementById('arena-waiting').hidden",
            "both answers",
        )
        .await;
    // textContent: exactly the text the page was sent (WebDriver's visible text trims).
    let shown = browser
        .execute("return ['a', 'b'].map((s) => document.getElementById('answer-' + s).textContent)")
        .await;
    let (answer_a, answer_b) = (
        shown[0].as_str().unwrap_or_default().to_string(),
        shown[1].as_str().unwrap_or_default().to_string(),
    );
    assert!(
        !answer_a.is_empty() && !answer_b.is_empty(),
        "{answer_a:?} {answer_b:?}"
    );
    assert_ne!(answer_a, answer_b, "two different models answered");
    assert!(
        browser.text("#prompt").await.contains(PROMPT),
        "the prompt is shown as text"
    );
    assert_eq!(
        browser.execute("return [typeof window.__xss, document.querySelectorAll('#work img, #work b').length]").await,
        json!(["undefined", 0]),
        "no element was injected and no script ran"
    );
    assert_eq!(browser.text("#model-a").await, "", "hidden before the vote");

    browser.click("#choice-A").await;
    browser.click("#strength-clear").await;
    browser
        .type_into("#rationale", "A answers, B rambles")
        .await;
    browser.click("#submit").await;
    browser
        .wait_until(
            "return !document.getElementById('arena-reveal').hidden",
            "the reveal",
        )
        .await;
    let reveal = browser.text("#arena-reveal").await;
    let winner = if reveal.contains("A was tiny-a") {
        "tiny-a"
    } else {
        "tiny-b"
    };
    let loser = if winner == "tiny-a" {
        "tiny-b"
    } else {
        "tiny-a"
    };
    assert!(
        reveal.contains(&format!("A was {winner}, B was {loser}")),
        "{reveal}"
    );
    let shot = tmp.join("arena-revealed.png");
    let png = browser.screenshot(&shot).await;
    assert!(
        png.starts_with(b"\x89PNG"),
        "a screenshot for a person: {}",
        shot.display()
    );
    browser.set_window_size(390, 844).await; // a phone: the answers stack
    browser.screenshot(&tmp.join("arena-phone.png")).await;

    // The vote leaves as a TRL pair, with the answers the page showed.
    let pairs = dir.path().join("pairs.jsonl");
    ok(&tiller(
        &[
            "annotate",
            "export",
            "--db",
            db.to_str().expect("utf-8 path"),
            "--campaign",
            "arena",
            "--out",
            pairs.to_str().expect("utf-8"),
        ],
        &[],
    ));
    let text = std::fs::read_to_string(&pairs).expect("pairs");
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(rows.len(), 1, "{text}");
    let row = &rows[0];
    assert_eq!(row["prompt"], json!([{"role": "user", "content": PROMPT}]));
    assert_eq!(row["chosen_model"], winner);
    assert_eq!(row["rejected_model"], loser);
    // The page renders text with newlines kept; WebDriver's text trims the ends.
    assert_eq!(
        row["chosen"][0]["content"].as_str().map(str::trim),
        Some(answer_a.trim())
    );
    assert_eq!(
        row["rejected"][0]["content"].as_str().map(str::trim),
        Some(answer_b.trim())
    );

    // ... and `tiller dpo` trains on it.
    let out = dir.path().join("dpo");
    let config = dir.path().join("dpo.toml");
    std::fs::write(
        &config,
        format!(
            "model = \"{}\"\nout = \"{}\"\nseed = 1\n\n[data]\ntrain = \"{}\"\nmax_seq_len = 256\n\n\
             [train]\nbatch_size = 1\nmax_steps = 1\nlog_every = 1\n\n[optim]\nlr = 1e-3\n",
            base_a.display(),
            out.display(),
            pairs.display()
        ),
    )
    .expect("dpo.toml");
    ok(&tiller(
        &["dpo", "--config", config.to_str().expect("utf-8")],
        &[],
    ));
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics.jsonl");
    let steps: Vec<Value> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        steps
            .iter()
            .any(|m| m["step"] == 1 && m["loss"].as_f64().is_some_and(f64::is_finite)),
        "{metrics}"
    );
}

/// `tiller annotate campaign` making campaign `arena` (annotator `ana`) in `db` with the
/// models in the arena file `models`.
fn arena_campaign(db: &Path, models: &Path) -> Output {
    tiller(
        &[
            "annotate",
            "campaign",
            "--db",
            db.to_str().expect("utf-8 path"),
            "--name",
            "arena",
            "--annotator",
            "ana",
            "--arena",
            models.to_str().expect("utf-8 path"),
        ],
        &[],
    )
}
