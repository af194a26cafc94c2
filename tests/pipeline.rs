//! `tiller run` and `tiller lineage` end to end on a tiny random model: manifests link
//! every output to its parents and data; a second run skips every stage; changing one
//! dataset reruns exactly the stages downstream of it; a run killed mid-stage resumes and
//! ends with the same weights as an uninterrupted one; bad stages are clear errors.

mod pipeline_support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use pipeline_support::*;

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

/// How many steps the DPO stage runs in the kill test: enough that the stage is still
/// training when its first checkpoint appears (it saves every 2 steps), on a fast machine too.
const KILLED_DPO_STEPS: u64 = 40;

#[test]
fn killed_pipeline_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (model, sft, prefs) = setup(dir.path());
    let longer_dpo = |config: &Path| {
        let text = std::fs::read_to_string(config).unwrap();
        let dpo = "batch_size = 2\nmax_steps = 6";
        assert!(text.contains(dpo), "the DPO stage's train section moved");
        let text = text.replace(
            dpo,
            &format!("batch_size = 2\nmax_steps = {KILLED_DPO_STEPS}"),
        );
        std::fs::write(config, text).unwrap();
    };

    let straight = dir.path().join("straight");
    let config = pipeline(dir.path(), &straight, &model, &sft, &prefs, false);
    longer_dpo(&config);
    ok(&tiller(&["run", config.to_str().unwrap()], &[]));

    // SIGKILL `tiller run` from outside (no chance to clean up) as soon as the DPO stage
    // has a checkpoint on disk.
    let killed = dir.path().join("killed");
    let config = pipeline(dir.path(), &killed, &model, &sft, &prefs, false);
    longer_dpo(&config);
    let config_s = config.to_str().unwrap();
    let mut child = tiller_command(&["run", config_s], &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tiller run");
    let started = Instant::now();
    while !has_checkpoint(&killed.join("dpo")) {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the DPO stage wrote no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let still_running = child.try_wait().expect("try_wait").is_none();
    child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    let status = child.wait().expect("wait");
    assert!(killed.join("sft/manifest.json").exists());
    // The kill lands between a checkpoint and the end of the stage, unless the stage
    // finished first (a very fast machine): then the rerun must find it done instead.
    let interrupted = still_running && !killed.join("dpo/manifest.json").exists();
    if interrupted {
        assert!(!status.success(), "a killed run does not exit cleanly");
    } else {
        eprintln!("the DPO stage finished before the kill; checking the rerun skips it");
    }

    let resumed = ok(&tiller(&["run", config_s], &[]));
    let s = statuses(&resumed);
    assert_eq!(status_of(&s, "sft"), "cached", "{resumed}");
    assert_eq!(status_of(&s, "reward"), "cached", "{resumed}");
    if interrupted {
        assert!(
            resumed.contains("resuming the interrupted run"),
            "{resumed}"
        );
        assert_eq!(status_of(&s, "dpo"), "resumed", "{resumed}");
    } else {
        assert_eq!(status_of(&s, "dpo"), "cached", "{resumed}");
    }
    for stage in ["sft", "dpo"] {
        let a = std::fs::read(straight.join(stage).join("model.safetensors")).unwrap();
        let b = std::fs::read(killed.join(stage).join("model.safetensors")).unwrap();
        assert!(
            a == b,
            "{stage}: resumed weights differ from the uninterrupted run"
        );
    }
    let m_dpo = manifest(&killed.join("dpo"));
    assert_eq!(m_dpo["metrics"]["steps"], KILLED_DPO_STEPS as f64);
    assert_eq!(
        manifest(&straight.join("dpo"))["output_sha256"],
        m_dpo["output_sha256"]
    );
}

/// Whether a stage directory holds a finished checkpoint (`checkpoint-N`; the temporary
/// name a checkpoint is written under does not count).
fn has_checkpoint(stage: &Path) -> bool {
    std::fs::read_dir(stage).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix("checkpoint-")
                .is_some_and(|n| n.parse::<u64>().is_ok())
        })
    })
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
        // The trainers' shared check runs in the pre-flight, the reward stage's included.
        (
            text.replace(
                "batch_size = 4\nmax_steps = 2",
                "batch_size = 4\nmax_steps = 2\ngrad_accum = 0",
            ),
            "train.grad_accum = 0",
        ),
        (
            text.replace(
                "save_every = 2\nkeep_checkpoints = 1",
                "save_every = 0\nkeep_checkpoints = 1",
            ),
            "train.save_every = 0",
        ),
        // Options that conflict are named as the stage's keys, not as `tiller eval` flags.
        (
            format!(
                "{text}\n[[stages]]\nname = \"eval\"\nkind = \"eval\"\nmodel = \"stages.sft\"\nwhich = \"bias\"\nreward = \"stages.sft\"\n"
            ),
            "key `reward`",
        ),
    ];
    for (bad, expected) in cases {
        std::fs::write(&config, bad).unwrap();
        let out = tiller(&["run", config.to_str().unwrap()], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(expected), "{expected:?} not in {err}");
        assert!(
            !err.contains("--"),
            "a command-line flag in a pipeline error: {err}"
        );
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
