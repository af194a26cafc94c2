//! An annotation database as a pipeline's data source: the export joins the lineage, and
//! new votes rerun training while unchanged votes leave it cached.

mod pipeline_support;

use pipeline_support::*;
use serde_json::json;

mod votes {
    //! Votes cast through the annotation app's own API (consent, next, vote).
    use std::path::Path;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use serde_json::{json, Value};
    use tiller_annotate::{app, Answer, AppState, Limits, NewCampaign, NewItem, Prompt, Store};
    use tower::ServiceExt;

    async fn call(
        router: &axum::Router,
        method: &str,
        path: &str,
        token: &str,
        body: Value,
    ) -> Value {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(if method == "GET" {
                Body::empty()
            } else {
                Body::from(body.to_string())
            })
            .expect("request");
        let reply = router.clone().oneshot(request).await.expect("reply");
        let bytes = reply.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    /// Adds `items` prompts to campaign `name` (created with annotators ana and ben, each
    /// item judged by both) and has both vote on everything they are offered.
    pub fn add_and_vote(db: &Path, name: &str, first: usize, items: usize) {
        let store = Store::open(db).expect("store");
        let (campaign, links) = match store.campaign_by_name(name) {
            Ok(c) => (c, Vec::new()),
            Err(_) => store
                .create_campaign(NewCampaign {
                    name: name.into(),
                    guidelines: String::new(),
                    consent: None,
                    overlap: 2,
                    annotators: vec!["ana".into(), "ben".into()],
                    policy: Default::default(),
                })
                .expect("campaign"),
        };
        if !links.is_empty() {
            let tokens: Vec<String> = links.iter().map(|l| l.token.clone()).collect();
            std::fs::write(db.with_extension("tokens"), tokens.join("\n")).expect("tokens");
        }
        let tokens = std::fs::read_to_string(db.with_extension("tokens")).expect("tokens");
        let new: Vec<NewItem> = (first..first + items)
            .map(|i| NewItem {
                external_id: Some(format!("p{i}")),
                prompt: Prompt::Text(format!("Say {i}.")),
                answers: Some([
                    Answer {
                        model: "good".into(),
                        text: format!("{i}."),
                    },
                    Answer {
                        model: "bad".into(),
                        text: "No.".into(),
                    },
                ]),
                gold: None,
            })
            .collect();
        store.add_items(campaign.id, new).expect("items");
        let router = app(AppState {
            store,
            limits: Limits::default(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            for token in tokens.lines() {
                call(
                    &router,
                    "POST",
                    "/api/me/consent",
                    token,
                    json!({"accept": true}),
                )
                .await;
                loop {
                    let next = call(&router, "POST", "/api/me/next", token, json!({})).await;
                    let Some(id) = next["assignment"]["assignment_id"].as_i64() else {
                        break;
                    };
                    let vote = json!({"assignment_id": id, "choice": "A", "strength": "clear"});
                    call(&router, "POST", "/api/me/votes", token, vote).await;
                }
            }
        });
    }
}

#[test]
fn annotation_export_joins_the_lineage_and_new_votes_rerun_training() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _, _) = setup(dir.path());
    let db = dir.path().join("votes.db");
    votes::add_and_vote(&db, "round-1", 0, 3);
    let run = dir.path().join("run");
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        format!(
            r#"out = "{run}"

[[stages]]
name = "votes"
kind = "annotate-export"
database = "{db}"
campaign = "round-1"
aggregation = "every_vote"

[[stages]]
name = "dpo"
kind = "dpo"
model = "{model}"
[stages.data]
train = "stages.votes"
max_seq_len = 32
[stages.train]
batch_size = 2
max_steps = 2
"#,
            run = run.display(),
            db = db.display(),
            model = model.display()
        ),
    )
    .unwrap();
    let config_s = config.to_str().unwrap();
    ok(&tiller(&["run", config_s], &[]));
    let m_votes = manifest(&run.join("votes"));
    let m_dpo = manifest(&run.join("dpo"));
    let a = &m_dpo["annotations"][0];
    assert_eq!(a["campaigns"], json!(["round-1"]), "{a}");
    assert_eq!(a["annotators"], 2, "{a}");
    assert_eq!(a["votes"], 6, "{a}");
    assert_eq!(a["pairs"], 6, "{a}");
    assert_eq!(a["consented_rows"], 6, "{a}");
    assert!(
        a["first_vote"].is_string() && a["last_vote"].is_string(),
        "{a}"
    );
    assert_eq!(m_dpo["parents"][0]["stage"], "votes");
    assert_eq!(
        m_dpo["datasets"][0]["path"],
        run.join("votes/pairs.jsonl").display().to_string()
    );
    assert_eq!(m_dpo["datasets"][0]["rows"], 6);
    assert_eq!(m_votes["annotations"][0], *a);

    // No new votes: the export runs, finds the same content, and training stays cached.
    let again = ok(&tiller(&["run", config_s], &[]));
    assert!(again.contains("no new votes"), "{again}");
    assert_eq!(status_of(&statuses(&again), "dpo"), "cached", "{again}");

    // New votes arrive: the export changes and DPO trains again on them.
    votes::add_and_vote(&db, "round-1", 3, 1);
    let next = ok(&tiller(&["run", config_s], &[]));
    assert_eq!(status_of(&statuses(&next), "dpo"), "ran", "{next}");
    assert_eq!(manifest(&run.join("dpo"))["annotations"][0]["votes"], 8);
    let lineage = ok(&tiller(
        &["lineage", run.join("dpo").to_str().unwrap()],
        &[],
    ));
    assert!(
        lineage.contains("human votes from")
            && lineage.contains("2 annotators, 8 votes, 8 pairs (8 with consent)"),
        "{lineage}"
    );

    // Consent: nothing withdrawn yet; then ana withdraws and the check names the
    // checkpoints trained on her votes (the export stage and DPO) and her pseudonym.
    let dpo = run.join("dpo");
    let clean = ok(&tiller(
        &["lineage", "--check-consent", dpo.to_str().unwrap()],
        &[],
    ));
    assert!(
        clean.contains("no annotator in its lineage has withdrawn consent"),
        "{clean}"
    );
    let db_s = db.to_str().unwrap();
    let withdrawn = ok(&tiller(
        &[
            "annotate",
            "withdraw",
            "--db",
            db_s,
            "--campaign",
            "round-1",
            "--annotator",
            "ana",
        ],
        &[],
    ));
    assert!(withdrawn.contains("4 votes covered"), "{withdrawn}");
    let pseudonym = withdrawn
        .split(['(', ')'])
        .nth(1)
        .expect("pseudonym in the message")
        .to_string();
    let check = tiller(&["lineage", "--check-consent", dpo.to_str().unwrap()], &[]);
    assert!(!check.status.success(), "a withdrawal makes the check fail");
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("2 checkpoint(s)")
            && text.contains(&format!("{}: {pseudonym} (withdrawn ", dpo.display()))
            && text.contains("4 listed votes"),
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("consent withdrawn"),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // An export manifest from before vote provenance: the lineage still reads, the
    // consent check says what is missing instead of passing.
    let export_manifest = run.join("votes/pairs.manifest.json");
    let mut old: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export_manifest).unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("provenance");
    std::fs::write(&export_manifest, old.to_string()).unwrap();
    ok(&tiller(&["lineage", dpo.to_str().unwrap()], &[]));
    let unknown = tiller(&["lineage", "--check-consent", dpo.to_str().unwrap()], &[]);
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("pairs.manifest.json") && stderr.contains("field `provenance` missing"),
        "{stderr}"
    );
}
