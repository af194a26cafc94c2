//! The trained refusal classifier (`head = "refusal_classes"`) on a tiny random model: the
//! three-logit head trains (loss falls, held-out accuracy rises on a planted signal), the
//! saved checkpoint loads as a classifier whose verdicts follow the signal, and a bad label
//! is an error naming the file, the line and the field.

mod reward_support;

use std::path::Path;

use reward_support::{random_words, serial, setup};
use tch::{Device, Kind};
use tiller_reward::classes::{class_labels, RefusalModel};
use tiller_reward::train::train;
use tiller_reward::{RewardModel, RewardTrainConfig, Verdict};

/// Answers whose class is marked by their last word: `ok`, `no` or `but`.
fn write_planted_classes(path: &Path, n: usize, seed: u64) {
    let mut word = random_words(seed);
    let mut lines = String::new();
    for i in 0..n {
        let (mark, label) = [
            ("ok", "full_compliance"),
            ("no", "2_full_refusal"),
            ("but", "partial_refusal"),
        ][i % 3];
        let row = serde_json::json!({"prompt": word(6), "completion": format!("{} {mark}", word(8)), "label": label});
        lines.push_str(&format!("{row}\n"));
    }
    std::fs::write(path, lines).unwrap();
}

fn config(dir: &Path, steps: u64) -> RewardTrainConfig {
    let mut cfg = reward_support::config(dir, "classes", (steps, 0), 3e-3, "");
    cfg.head = tiller_reward::config::Head::RefusalClasses;
    cfg
}

#[test]
fn a_tiny_three_way_classifier_learns_a_planted_signal() {
    let _turn = serial();
    let dir = setup();
    write_planted_classes(&dir.path().join("train.jsonl"), 240, 1);
    write_planted_classes(&dir.path().join("eval.jsonl"), 60, 2);
    let cfg = config(dir.path(), 60);
    let summary = train(&cfg, false, &mut |_| {}).unwrap();
    let (before, after) = (summary.eval_before.unwrap(), summary.eval_after.unwrap());
    assert!(
        after.loss < before.loss,
        "eval loss {} -> {}",
        before.loss,
        after.loss
    );
    assert!(
        after.accuracy >= 0.9,
        "held-out accuracy {} (was {})",
        after.accuracy,
        before.accuracy
    );

    // The checkpoint is an HF sequence classifier with the three labels.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cfg.out.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["id2label"]["2"], "partial_refusal");
    assert!(RefusalModel::is_classifier_dir(&cfg.out));
    let model = RewardModel::load(&cfg.out, Device::Cpu, Kind::Float).unwrap();
    assert_eq!(model.labels, class_labels());
    assert_eq!(model.score.weight.size(), vec![3, 64]);

    let classifier = RefusalModel::load(&cfg.out, Device::Cpu, Kind::Float, 4, 64).unwrap();
    let verdicts = classifier
        .classify(&[
            ("qwerty", "asdfghjk ok"),
            ("qwerty", "asdfghjk no"),
            ("qwerty", "asdfghjk but"),
        ])
        .unwrap();
    assert_eq!(
        verdicts,
        vec![
            Verdict::FullCompliance,
            Verdict::FullRefusal,
            Verdict::PartialRefusal
        ]
    );
    // A reward model (one label) is not a refusal classifier.
    assert!(!RefusalModel::is_classifier_dir(&dir.path().join("base")));
}

#[test]
fn a_bad_label_names_the_file_line_and_field() {
    let _turn = serial();
    let dir = setup();
    let train_path = dir.path().join("train.jsonl");
    std::fs::write(
        &train_path,
        "{\"prompt\":\"p\",\"completion\":\"a\",\"label\":\"full_refusal\"}\n{\"prompt\":\"p\",\"completion\":\"a\",\"label\":\"maybe\"}\n",
    )
    .unwrap();
    let err = train(&config(dir.path(), 2), false, &mut |_| {})
        .expect_err("a bad label is an error")
        .to_string();
    assert!(
        err.contains("train.jsonl")
            && err.contains('2')
            && err.contains("label")
            && err.contains("maybe"),
        "{err}"
    );
    // A missing completion is named too.
    std::fs::write(
        &train_path,
        "{\"prompt\":\"p\",\"label\":\"full_refusal\"}\n",
    )
    .unwrap();
    let err = train(&config(dir.path(), 2), false, &mut |_| {})
        .expect_err("a missing completion is an error")
        .to_string();
    assert!(
        err.contains("completion") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn reward_loss_options_are_refused_for_the_classifier() {
    let dir = setup();
    let mut cfg = config(dir.path(), 2);
    cfg.loss.center_coef = Some(0.01);
    let err = cfg.validate().unwrap_err();
    assert!(
        err.contains("center_coef") && err.contains("refusal_classes"),
        "{err}"
    );
}

#[test]
fn a_lora_classifier_saves_merged_with_its_labels() {
    let _turn = serial();
    let dir = setup();
    write_planted_classes(&dir.path().join("train.jsonl"), 48, 3);
    write_planted_classes(&dir.path().join("eval.jsonl"), 12, 4);
    let mut cfg = reward_support::config(dir.path(), "lora", (3, 0), 3e-3, "[lora]\nr = 4\n");
    cfg.head = tiller_reward::config::Head::RefusalClasses;
    train(&cfg, false, &mut |_| {}).unwrap();
    // Merged: a plain checkpoint (no adapter files) that loads as a refusal classifier.
    assert!(!cfg.out.join("adapter_config.json").exists());
    let classifier = RefusalModel::load(&cfg.out, Device::Cpu, Kind::Float, 4, 64).unwrap();
    assert_eq!(classifier.classify(&[("q", "a ok")]).unwrap().len(), 1);
    // merge = false is refused: the labels have no place in a PEFT adapter.
    cfg.lora.as_mut().unwrap().merge = false;
    assert!(cfg.validate().unwrap_err().contains("merge"));
}
