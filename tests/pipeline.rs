//! `tiller run` and `tiller lineage` end to end on a tiny random model: manifests link
//! every output to its parents and data; a second run skips every stage; changing one
//! dataset reruns exactly the stages downstream of it; a run killed mid-stage resumes and
//! ends with the same weights as an uninterrupted one; bad stages are clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use tiller_model::testing::write_tiny_checkpoint;

const TILLER: &str = env!("CARGO_BIN_EXE_tiller");

fn tiller(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(TILLER);
    cmd.args(args).env("TILLER_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run tiller")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "tiller failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_lines(path: &Path, rows: &[Value]) {
    let text: Vec<String> = rows.iter().map(Value::to_string).collect();
    std::fs::write(path, text.join("\n") + "\n").expect("write data");
}

/// A tiny base model, an SFT set and a preference set in `dir`.
fn setup(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let model = dir.join("base");
    write_tiny_checkpoint(&model, 11).expect("tiny checkpoint");
    let sft = dir.join("sft.jsonl");
    let chats: Vec<Value> = (0..12)
        .map(|i| {
            json!({"messages": [
                {"role": "user", "content": format!("What is {i} + 1?")},
                {"role": "assistant", "content": format!("{i} + 1 = {}.", i + 1)},
            ]})
        })
        .collect();
    write_lines(&sft, &chats);
    let prefs = dir.join("prefs.jsonl");
    write_lines(&prefs, &pairs(8));
    (model, sft, prefs)
}

fn pairs(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"prompt": format!("Say {i}."), "chosen": format!("{i}."), "rejected": "No."}))
        .collect()
}

fn pipeline(dir: &Path, run: &Path, model: &Path, sft: &Path, prefs: &Path, eval: bool) -> PathBuf {
    let mut text = format!(
        r#"out = "{run}"

[[stages]]
name = "sft"
kind = "sft"
model = "{model}"
seed = 3
[stages.data]
train = "{sft}"
max_seq_len = 48
[stages.train]
batch_size = 4
max_steps = 4
save_every = 2
[stages.optim]
lr = 1e-3

[[stages]]
name = "reward"
kind = "reward"
model = "{model}"
[stages.data]
train = "{prefs}"
max_seq_len = 32
[stages.train]
batch_size = 4
max_steps = 2

[[stages]]
name = "dpo"
kind = "dpo"
model = "stages.sft"
seed = 5
[stages.data]
train = "{prefs}"
eval = "{prefs}"
max_seq_len = 32
[stages.train]
batch_size = 2
max_steps = 6
save_every = 2
keep_checkpoints = 1
[stages.optim]
lr = 1e-3
"#,
        run = run.display(),
        model = model.display(),
        sft = sft.display(),
        prefs = prefs.display(),
    );
    if eval {
        // A short GRPO stage against the reward stage's model, then the evaluation.
        text.push_str(&format!(
            r#"
[[stages]]
name = "grpo"
kind = "grpo"
model = "stages.dpo"
seed = 7
[stages.rollout]
prompts = "{prefs}"
max_new_tokens = 4
[stages.reward]
model = "stages.reward"
[stages.grpo]
num_generations = 2
[stages.train]
batch_size = 2
max_steps = 2
save_every = 1
[stages.optim]
lr = 1e-3

[[stages]]
name = "eval"
kind = "eval"
model = "stages.grpo"
baseline = "{model}"
limit = 3
max_new_tokens = 4
"#,
            model = model.display(),
            prefs = prefs.display(),
        ));
    }
    let path = dir.join(format!(
        "{}.toml",
        run.file_name().and_then(|n| n.to_str()).unwrap_or("p")
    ));
    std::fs::write(&path, text).expect("write pipeline");
    path
}

fn manifest(dir: &Path) -> Value {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("manifest json")
}

/// Stage name → "ran" / "cached" / "resumed", from the run's closing table.
fn statuses(stdout: &str) -> Vec<(String, String)> {
    let table = stdout.split("done in").nth(1).unwrap_or("");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .filter(|(_, s)| ["ran", "cached", "resumed"].contains(&s.as_str()))
        .collect()
}

fn status_of<'a>(all: &'a [(String, String)], stage: &str) -> &'a str {
    all.iter()
        .find(|(n, _)| n == stage)
        .map_or("missing", |(_, s)| s.as_str())
}

#[test]
fn pipeline_caches_reruns_downstream_and_records_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let (model, sft, prefs) = setup(dir.path());
    let run = dir.path().join("run");
    let config = pipeline(dir.path(), &run, &model, &sft, &prefs, true);
    let config_s = config.to_str().unwrap();

    let first = ok(&tiller(&["run", config_s], &[]));
    assert!(first.contains("==> stage 1/5: sft (sft)"), "{first}");
    assert!(first.contains("==> stage 5/5: eval (eval)"), "{first}");
    let s = statuses(&first);
    assert_eq!(s.len(), 5, "{first}");
    assert!(s.iter().all(|(_, st)| st == "ran"), "{s:?}");
    assert!(
        first.contains(&format!(
            "report: {}",
            run.join("eval/report.html").display()
        )),
        "{first}"
    );

    // Manifests link every output to its parents, base model and data.
    let m_sft = manifest(&run.join("sft"));
    let m_reward = manifest(&run.join("reward"));
    let m_dpo = manifest(&run.join("dpo"));
    let m_grpo = manifest(&run.join("grpo"));
    let m_eval = manifest(&run.join("eval"));
    assert_eq!(m_sft["parents"], json!([]));
    assert_eq!(m_sft["base_models"][0]["path"], model.display().to_string());
    assert_eq!(m_sft["datasets"][0]["path"], sft.display().to_string());
    assert_eq!(m_sft["datasets"][0]["rows"], 12);
    assert_eq!(m_sft["datasets"][0]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(m_sft["seed"], 3);
    assert_eq!(m_sft["config"]["model"], model.display().to_string());
    assert!(m_sft["metrics"]["steps"] == 4.0, "{}", m_sft["metrics"]);
    assert_eq!(m_dpo["parents"][0]["stage"], "sft");
    assert_eq!(m_dpo["parents"][0]["key"], m_sft["key"]);
    assert_eq!(m_dpo["parents"][0]["output_sha256"], m_sft["output_sha256"]);
    assert_eq!(
        m_dpo["config"]["model"],
        run.join("sft").display().to_string()
    );
    assert_eq!(m_dpo["base_models"], json!([]));
    let roles: Vec<&str> = m_dpo["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["data.train", "data.eval"]);
    assert_eq!(m_reward["parents"], json!([]));
    let mut grpo_parents: Vec<&str> = m_grpo["parents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["stage"].as_str().unwrap())
        .collect();
    grpo_parents.sort();
    assert_eq!(grpo_parents, ["dpo", "reward"], "{}", m_grpo["parents"]);
    assert_eq!(m_grpo["datasets"][0]["role"], "rollout.prompts");
    assert_eq!(m_grpo["metrics"]["steps"], 2.0, "{}", m_grpo["metrics"]);
    assert!(m_grpo["metrics"]["reward_last"].is_number());
    assert_eq!(m_eval["parents"][0]["stage"], "grpo");
    assert_eq!(
        m_eval["base_models"][0]["path"],
        model.display().to_string()
    );
    assert!(
        m_eval["metrics"]["safety/harmful_refusal_rate"].is_number(),
        "{}",
        m_eval["metrics"]
    );
    assert!(m_eval["started_at"].as_str().unwrap().ends_with("UTC"));
    // Finished stages keep their weights and curves, not their resume checkpoints.
    for stage in ["sft", "dpo", "grpo"] {
        let names: Vec<String> = std::fs::read_dir(run.join(stage))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with("checkpoint-")),
            "{stage}: {names:?}"
        );
        assert!(
            names.contains(&"curves.html".to_owned()),
            "{stage}: {names:?}"
        );
    }
    let curves = std::fs::read_to_string(run.join("grpo/curves.html")).unwrap();
    assert!(
        curves.contains("<svg") && curves.contains("reward"),
        "{curves}"
    );
    assert!(run.join("eval/report.html").is_file());

    // A second run skips every stage and leaves every manifest as it was.
    let second = ok(&tiller(&["run", config_s], &[]));
    let s = statuses(&second);
    assert!(
        s.len() == 5 && s.iter().all(|(_, st)| st == "cached"),
        "{second}"
    );
    assert_eq!(manifest(&run.join("dpo")), m_dpo);

    // New preference data: reward, DPO and GRPO (its prompts) run again, and eval
    // (downstream of them); SFT does not read it and stays cached.
    write_lines(&prefs, &pairs(10));
    let third = ok(&tiller(&["run", config_s], &[]));
    let s = statuses(&third);
    assert_eq!(status_of(&s, "sft"), "cached", "{third}");
    for stage in ["reward", "dpo", "grpo", "eval"] {
        assert_eq!(status_of(&s, stage), "ran", "{stage}: {third}");
    }
    let m_dpo2 = manifest(&run.join("dpo"));
    assert_ne!(m_dpo2["key"], m_dpo["key"]);
    assert_eq!(m_dpo2["datasets"][0]["rows"], 10);
    let m_grpo2 = manifest(&run.join("grpo"));
    let dpo_parent = m_grpo2["parents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["stage"] == "dpo")
        .expect("grpo's dpo parent");
    assert_eq!(dpo_parent["key"], m_dpo2["key"]);

    // The lineage walks from the report back to the base model.
    let lineage = ok(&tiller(
        &["lineage", run.join("eval").to_str().unwrap()],
        &[],
    ));
    let order = [
        "[eval stage \"eval\"]",
        "[grpo stage \"grpo\"]",
        "[dpo stage \"dpo\"]",
        &format!("data.train {} (10 rows", prefs.display()),
        "[sft stage \"sft\"]",
        &format!("data.train {} (12 rows", sft.display()),
        &format!("{} [base model]", model.display()),
    ];
    let mut at = 0;
    for needle in order {
        let found = lineage[at..]
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not after byte {at} in:\n{lineage}"));
        at += found + needle.len();
    }
    let err = tiller(&["lineage", dir.path().to_str().unwrap()], &[]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("manifest.json"));
}

#[test]
fn killed_pipeline_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (model, sft, prefs) = setup(dir.path());

    let straight = dir.path().join("straight");
    let config = pipeline(dir.path(), &straight, &model, &sft, &prefs, false);
    ok(&tiller(&["run", config.to_str().unwrap()], &[]));

    let killed = dir.path().join("killed");
    let config = pipeline(dir.path(), &killed, &model, &sft, &prefs, false);
    let config_s = config.to_str().unwrap();
    let out = tiller(&["run", config_s], &[("TILLER_PIPELINE_KILL_AT", "dpo:3")]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(killed.join("dpo/checkpoint-2").is_dir());
    assert!(
        !killed.join("dpo/manifest.json").exists(),
        "a killed stage is not done"
    );
    assert!(killed.join("sft/manifest.json").exists());

    let resumed = ok(&tiller(&["run", config_s], &[]));
    assert!(
        resumed.contains("resuming the interrupted run"),
        "{resumed}"
    );
    let s = statuses(&resumed);
    assert_eq!(status_of(&s, "sft"), "cached", "{resumed}");
    assert_eq!(status_of(&s, "reward"), "cached", "{resumed}");
    assert_eq!(status_of(&s, "dpo"), "resumed", "{resumed}");
    for stage in ["sft", "dpo"] {
        let a = std::fs::read(straight.join(stage).join("model.safetensors")).unwrap();
        let b = std::fs::read(killed.join(stage).join("model.safetensors")).unwrap();
        assert!(
            a == b,
            "{stage}: resumed weights differ from the uninterrupted run"
        );
    }
    assert_eq!(
        manifest(&straight.join("dpo"))["output_sha256"],
        manifest(&killed.join("dpo"))["output_sha256"]
    );
}

#[test]
fn bad_stages_are_clear_errors_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (model, sft, prefs) = setup(dir.path());
    let run = dir.path().join("bad");
    let config = pipeline(dir.path(), &run, &model, &sft, &prefs, false);
    let text = std::fs::read_to_string(&config).unwrap();
    let cases = [
        (
            text.replace("seed = 5", "seed = 5\nbeta = 0.1"),
            "unknown field `beta`",
        ),
        (
            text.replace("kind = \"dpo\"", "kind = \"dpoo\""),
            "unknown kind \"dpoo\"",
        ),
        (
            text.replace("model = \"stages.sft\"", "model = \"stages.dpo\""),
            "not an earlier stage",
        ),
    ];
    for (bad, expected) in cases {
        std::fs::write(&config, bad).unwrap();
        let out = tiller(&["run", config.to_str().unwrap()], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(expected), "{expected:?} not in {err}");
        assert!(
            err.contains(&format!("{}:", config.display())),
            "no file:line in {err}"
        );
        assert!(
            !run.join("sft").exists(),
            "nothing runs before the whole file is checked"
        );
    }
}

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
                    let next = call(&router, "GET", "/api/me/next", token, Value::Null).await;
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
}
