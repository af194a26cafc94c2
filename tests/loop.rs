//! The human loop through `tiller run`, twice, on a tiny model: round 1 trains, queues the
//! aligned model's answers against the base model's in a campaign and stops for votes
//! (exit status 3, links printed); annotators vote through the real HTTP API of a running
//! `tiller annotate serve`; the same command then exports exactly those votes, trains
//! DPO round 2 from round 1's model on them and evaluates round 2 beside round 1.

mod pipeline_support;

mod loop_support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use loop_support::{loop_pipeline, vote_all, Serve};
use pipeline_support::*;
use serde_json::{json, Value};

#[test]
fn round_one_stops_for_votes_and_round_two_trains_on_exactly_those_votes() {
    let dir = tempfile::tempdir().unwrap();
    let (model, sft, prefs) = setup(dir.path());
    let config = loop_pipeline(dir.path(), &model, &sft, &prefs, 0);
    let run = dir.path().join("run");
    let db = dir.path().join("votes.db");

    // Round 1: trains, queues, and stops at the export with a distinct status.
    let first = tiller(&["run", &config], &[]);
    let stdout = String::from_utf8_lossy(&first.stdout);
    println!("{stdout}"); // what a user sees (with --nocapture)
    assert_eq!(
        first.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains("0 of the 6 votes")
            && stdout.contains("/annotate#token=")
            && stdout.contains("/admin#token=")
            && stdout.contains(&format!("tiller annotate serve --db {}", db.display()))
            && stdout.contains(&format!("run `tiller run {config}` again")),
        "{stdout}"
    );
    assert!(!run.join("round2").exists(), "round 2 waits for votes");
    let queue = manifest(&run.join("queue"));
    let items: Vec<i64> = serde_json::from_value(queue["queued"]["item_ids"].clone()).unwrap();
    assert_eq!(items.len(), 3, "{queue}");
    assert_eq!(queue["parents"][0]["stage"], "round1", "{queue}");
    assert_eq!(queue["base_models"][0]["path"], model.display().to_string());
    assert_eq!(queue["datasets"][0]["role"], "prompts");
    assert_eq!(
        queue["datasets"][0]["sha256"].as_str().map(str::len),
        Some(64)
    );
    assert_eq!(queue["config"]["sampling"]["max_new_tokens"], 4);
    let links = std::fs::read_to_string(dir.path().join("votes.db.round-1.links")).unwrap();
    let token = |who: &str| {
        links
            .lines()
            .find(|l| l.starts_with(&format!("{who}\t")))
            .and_then(|l| l.split("#token=").nth(1))
            .unwrap_or_else(|| panic!("no link for {who} in {links}"))
            .to_owned()
    };
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("votes.db.round-1.links"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "links file is private: {mode:o}");

    // People vote over HTTP while the server runs.
    let serve = Serve::start(&db);
    let mut cast: BTreeSet<i64> = vote_all(&serve, &token("ana"), "strong")
        .into_iter()
        .collect();
    cast.extend(vote_all(&serve, &token("ben"), "clear"));
    assert_eq!(cast.len(), 6, "two annotators × three items");
    let (status, _) = serve.request(
        "GET",
        "/api/admin/campaigns",
        Some(&token("admin")),
        Value::Null,
    );
    assert_eq!(status, 200, "the admin link works");

    // Round 2: the same command continues from the export.
    let second = ok(&tiller(&["run", &config], &[]));
    let all = statuses(&second);
    for cached in ["sft", "round1", "queue"] {
        assert_eq!(status_of(&all, cached), "cached", "{second}");
    }
    for ran in [
        "votes",
        "round2",
        "rm",
        "rm-margin",
        "eval-base",
        "eval-round1",
        "eval",
    ] {
        assert_eq!(status_of(&all, ran), "ran", "{second}");
    }
    let round2 = manifest(&run.join("round2"));
    let parents: Vec<&str> = round2["parents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["stage"].as_str())
        .collect();
    assert_eq!(parents, ["votes", "round1"], "{round2}");
    assert_eq!(round2["datasets"][0]["rows"], 6, "{round2}");
    let export: Value = serde_json::from_str(
        &std::fs::read_to_string(
            round2["annotations"][0]["export_manifest"]
                .as_str()
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let trained_on: BTreeSet<i64> = export["provenance"]["vote_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("vote ids in {export}"))
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert_eq!(
        trained_on, cast,
        "round 2 trained on exactly the votes cast"
    );
    let rows = std::fs::read_to_string(run.join("votes/pairs.jsonl")).unwrap();
    let items_voted: BTreeSet<i64> = rows
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["item_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        items_voted,
        items.iter().copied().collect(),
        "pairs come from the queued items"
    );
    assert!(
        rows.contains("\"strength\":\"strong\""),
        "strength travels with the pairs"
    );
    drop(serve);
    let card: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("eval/scorecard.json")).expect("scorecard"),
    )
    .unwrap();
    let models: Vec<&str> = card["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["model"].as_str())
        .collect();
    let expected = [model.clone(), run.join("round1"), run.join("round2")];
    assert_eq!(models.len(), 3, "base, round 1, round 2: {card}");
    for (got, want) in models.iter().zip(&expected) {
        assert!(
            got.ends_with(&*want.display().to_string()),
            "{got} vs {}",
            want.display()
        );
    }

    // Strength as a margin: the same first batch (same seed, same rewards before any
    // update) costs more when each pair must be won by its margin (ana said strong,
    // ben clear); −log σ(d − m) > −log σ(d) for every m > 0.
    let first_loss = |stage: &str| {
        let text = std::fs::read_to_string(run.join(stage).join("metrics.jsonl")).unwrap();
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        first["loss"]
            .as_f64()
            .unwrap_or_else(|| panic!("loss in {first}"))
    };
    let (plain, margin) = (first_loss("rm"), first_loss("rm-margin"));
    println!("first-step loss: no margin {plain:.4}, strength margins {margin:.4}");
    assert!(margin > plain + 0.1, "margins {margin} vs none {plain}");

    // Queuing is idempotent: the queue stage runs again (new seed) but queues nothing.
    let reseeded = loop_pipeline(dir.path(), &model, &sft, &prefs, 9);
    let third = ok(&tiller(&["run", &reseeded], &[]));
    assert_eq!(status_of(&statuses(&third), "queue"), "ran", "{third}");
    let queue = manifest(&run.join("queue"));
    assert_eq!(queue["queued"]["item_ids"], json!([]), "{queue}");
    assert_eq!(queue["queued"]["already_queued"], 3, "{queue}");
    assert_eq!(status_of(&statuses(&third), "round2"), "cached", "{third}");
}

/// `examples/loop.toml`'s round 1 is `examples/pipeline.toml` stage for stage (so after
/// the main job it is cached), followed by the loop's own stages.
#[test]
fn loop_example_reuses_the_main_job_unchanged() {
    use tiller::pipeline::PipelineConfig;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let main = PipelineConfig::from_file(&root.join("examples/pipeline.toml")).unwrap();
    let looped = PipelineConfig::from_file(&root.join("examples/loop.toml")).unwrap();
    assert_eq!(looped.out, main.out);
    for (a, b) in main.stages.iter().zip(&looped.stages) {
        assert_eq!((&a.name, a.kind, &a.table), (&b.name, b.kind, &b.table));
    }
    let rest: Vec<&str> = looped.stages[main.stages.len()..]
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        rest,
        ["queue", "votes", "round2", "eval-base", "eval-round2"]
    );
}

/// `wait = true`: the export polls, printing the count, until the votes arrive, then the
/// run goes on (here it ends) with status 0.
#[test]
fn an_export_that_waits_polls_until_the_votes_arrive() {
    use tiller_annotate::{Answer, NewCampaign, NewItem, Prompt, Store};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("votes.db");
    let store = Store::open(&db).unwrap();
    let (campaign, links) = store
        .create_campaign(NewCampaign {
            name: "w".into(),
            guidelines: String::new(),
            consent: None,
            overlap: 1,
            annotators: vec!["ana".into()],
            policy: Default::default(),
        })
        .unwrap();
    let answer = |model: &str, text: &str| Answer {
        model: model.into(),
        text: text.into(),
    };
    let items = (0..2)
        .map(|i| NewItem {
            external_id: None,
            prompt: Prompt::Text(format!("Say {i}.")),
            answers: Some([answer("a", &format!("{i}.")), answer("b", "No.")]),
            gold: None,
        })
        .collect();
    store.add_items(campaign.id, items).unwrap();
    drop(store);
    // The project's own pairs, trained on with the human ones.
    let project = dir.path().join("project.jsonl");
    write_lines(&project, &pairs(3));
    let config = dir.path().join("wait.toml");
    std::fs::write(
        &config,
        format!(
            "out = \"{}\"\n\n[[stages]]\nname = \"votes\"\nkind = \"annotate-export\"\ndatabase = \"{}\"\ncampaign = \"w\"\nmin_votes = 2\nwait = true\npoll_secs = 0.2\ninclude = [\"{}\"]\n",
            dir.path().join("run").display(),
            db.display(),
            project.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tiller"))
        .arg("run")
        .arg(&config)
        .env("TILLER_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tiller run");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("waiting for votes: 0/2 in w") {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.contains("waiting")),
        "{seen:?}"
    );
    let serve = Serve::start(&db);
    assert_eq!(vote_all(&serve, &links[0].token, "slight").len(), 2);
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{seen:?} {rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("2 votes (2 needed)")),
        "{rest:?}"
    );
    let rows = std::fs::read_to_string(dir.path().join("run/votes/pairs.jsonl")).unwrap();
    assert_eq!(
        rows.lines().count(),
        2 + 3,
        "human rows, then the included ones"
    );
    assert!(
        rows.lines().last().unwrap().contains("\"Say 2.\""),
        "{rows}"
    );
    let m = manifest(&dir.path().join("run/votes"));
    assert_eq!(m["annotations"][0]["pairs"], 2, "human rows only: {m}");
    assert_eq!(m["datasets"][0]["role"], "include", "{m}");
    assert_eq!(m["datasets"][0]["rows"], 3, "{m}");
}

/// The new keys are checked before anything runs; errors name the file, line and key.
#[test]
fn loop_keys_are_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "kind = \"annotate-export\"\ndatabase = \"x.db\"\nwait = true\n",
            "`wait` and `poll_secs` need `min_votes`",
        ),
        (
            "kind = \"annotate-export\"\ndatabase = \"x.db\"\nmin_votes = 2\npoll_secs = -1.0\n",
            "`poll_secs` = -1",
        ),
        (
            "kind = \"annotate-queue\"\ndatabase = \"x.db\"\ncampaign = \"c\"\nprompts = \"p.jsonl\"\nmodels = [\"a\", \"b\", \"c\"]\n",
            "`models` has 3 entries",
        ),
        (
            "kind = \"annotate-queue\"\ndatabase = \"x.db\"\ncampaign = \"c\"\nprompts = \"p.jsonl\"\nmodels = [\"a\"]\n[stages.sampling]\ntemprature = 1.0\n",
            "unknown field `temprature`",
        ),
    ];
    for (stage, expected) in cases {
        let config = dir.path().join("bad.toml");
        std::fs::write(
            &config,
            format!("out = \"run\"\n\n[[stages]]\nname = \"s\"\n{stage}"),
        )
        .unwrap();
        let out = tiller(&["run", config.to_str().unwrap()], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("bad.toml:3") && stderr.contains(expected),
            "{expected}: {stderr}"
        );
    }
}
