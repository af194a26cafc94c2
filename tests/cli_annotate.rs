//! `tiller annotate campaign` and `generate` as a user runs them: model answers are queued
//! as items, both for new prompts and for prompts that wait in the campaign.

use std::process::{Command, Output};

use tiller_annotate::{NewItem, Prompt, Store};
use tiller_model::testing::write_tiny_checkpoint;

fn tiller(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tiller"))
        .args(args)
        .output()
        .expect("run tiller")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "tiller failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn generate_queues_two_answers_per_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    write_tiny_checkpoint(&model, 2).unwrap();
    let db = dir.path().join("a.db");
    let (db_s, model_s) = (db.to_str().unwrap(), model.to_str().unwrap());
    let links = ok(&tiller(&[
        "annotate",
        "campaign",
        "--db",
        db_s,
        "--name",
        "round-1",
        "--annotator",
        "ana",
        "--annotator",
        "ben",
    ]));
    assert!(
        links.contains("ana\thttp://127.0.0.1:8080/annotate#token="),
        "{links}"
    );
    assert!(links.contains("ben\t"), "{links}");

    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"hi\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"yo\"}]}\n",
    )
    .unwrap();
    let out = ok(&tiller(&[
        "annotate",
        "generate",
        "--db",
        db_s,
        "--campaign",
        "round-1",
        "--prompts",
        prompts.to_str().unwrap(),
        "--model",
        model_s,
        "--max-new-tokens",
        "4",
    ]));
    assert!(out.contains("2 items queued"), "{out}");

    // A prompt queued without answers is filled by a generate without --prompts.
    let store = Store::open(&db).unwrap();
    let campaign = store.campaign_by_name("round-1").unwrap();
    store
        .add_items(
            campaign.id,
            vec![NewItem {
                external_id: Some("w".into()),
                prompt: Prompt::Text("wait".into()),
                answers: None,
                gold: None,
            }],
        )
        .unwrap();
    assert_eq!(store.pending_prompts(campaign.id).unwrap().len(), 1);
    drop(store);
    let out = ok(&tiller(&[
        "annotate",
        "generate",
        "--db",
        db_s,
        "--campaign",
        "round-1",
        "--model",
        model_s,
        "--max-new-tokens",
        "4",
    ]));
    assert!(out.contains("1 waiting items filled"), "{out}");
    let store = Store::open(&db).unwrap();
    assert!(store.pending_prompts(campaign.id).unwrap().is_empty());
    let items = store.item_progress(campaign.id).unwrap();
    assert_eq!(items.len(), 3);
    assert!(
        items.iter().all(|i| i.ready),
        "every item has its two answers"
    );

    let err = tiller(&[
        "annotate",
        "generate",
        "--db",
        db_s,
        "--campaign",
        "nope",
        "--model",
        model_s,
    ]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("nope"));
}

#[test]
fn admin_token_rotates_campaign_policy_is_set_and_export_refuses_ties_keep_for_kto() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let store = Store::open(&db).unwrap();
    let old = store.create_admin_token().unwrap();
    drop(store);
    let db_s = db.to_str().unwrap();
    let out = ok(&tiller(&["annotate", "admin-token", "--db", db_s]));
    let token = out
        .trim()
        .rsplit("#token=")
        .next()
        .expect("a link with a token")
        .to_string();
    assert!(out.contains("http://127.0.0.1:8080/admin#token="), "{out}");
    assert_eq!(token.len(), 64, "{out}");
    assert_ne!(token, old);
    let store = Store::open(&db).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let identify = |t: &str| runtime.block_on(store.identify(t.to_string()));
    assert!(identify(&token).is_ok(), "the new admin link works");
    let refused = identify(&old).expect_err("the old admin link stops working");
    assert!(refused.to_string().contains("unknown token"), "{refused}");
    drop(store);

    let missing = tiller(&["annotate", "admin-token", "--db", "/nonexistent/x.db"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/x.db"));

    let consent = dir.path().join("consent.txt");
    std::fs::write(&consent, "Our own terms.").unwrap();
    ok(&tiller(&[
        "annotate",
        "campaign",
        "--db",
        db_s,
        "--name",
        "strict",
        "--consent",
        &format!("@{}", consent.display()),
        "--on-withdrawal",
        "erase",
        "--min-gold-accuracy",
        "0.5",
    ]));
    let campaign = Store::open(&db)
        .unwrap()
        .campaign_by_name("strict")
        .unwrap();
    assert_eq!(campaign.consent, "Our own terms.");
    assert_eq!(
        campaign.policy.on_withdrawal,
        tiller_annotate::OnWithdrawal::Erase
    );
    assert_eq!(campaign.policy.min_gold_accuracy, Some(0.5));

    let out_file = dir.path().join("kto.jsonl");
    let refused = tiller(&[
        "annotate",
        "export",
        "--db",
        db_s,
        "--out",
        out_file.to_str().unwrap(),
        "--format",
        "kto",
        "--ties",
        "keep",
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("`ties`"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
