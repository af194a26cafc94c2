//! Reward model mechanics on a tiny random backbone, the loss against hand-computed
//! values, rules, and calibration maths.

use tch::{Device, Kind, Tensor};
use tiller_data::Tokenizer;
use tiller_model::testing::{tiny_config, write_tiny_checkpoint};
use tiller_reward::calibration::{evaluate_pairs, wilson_interval};
use tiller_reward::loss::bradley_terry;
use tiller_reward::model::RewardModel;
use tiller_reward::reward::right_padded;
use tiller_reward::{rules_reward, ModelReward, Reward, RewardInput, RuleConfig};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn bradley_terry_matches_hand_computed_values() {
    let c = Tensor::from_slice(&[2.0f32, 0.5, -1.0]);
    let r = Tensor::from_slice(&[1.0f32, 1.0, -1.0]);
    // −log σ(x) = log(1 + e^(−x)) for x = 1, −0.5, 0
    let expected =
        ((1.0f64 + (-1.0f64).exp()).ln() + (1.0f64 + 0.5f64.exp()).ln() + 2.0f64.ln()) / 3.0;
    let out = bradley_terry(&c, &r, None, None);
    assert!(close(out.loss.double_value(&[]), expected, 1e-6));
    assert!(close(out.accuracy, 1.0 / 3.0, 1e-6)); // computed in f32
    assert!(close(out.margin, 0.5 / 3.0, 1e-6));
    assert!(close(out.chosen, 0.5, 1e-6) && close(out.rejected, 1.0 / 3.0, 1e-6));

    let m = Tensor::from_slice(&[1.0f32, 0.0, 0.0]);
    let with_margin = bradley_terry(&c, &r, Some(&m), Some(0.01));
    let expected_m = ((2.0f64).ln() + (1.0f64 + 0.5f64.exp()).ln() + 2.0f64.ln()) / 3.0
        + 0.01 * ((3.0f64).powi(2) + 1.5f64.powi(2) + 2.0f64.powi(2)) / 3.0;
    assert!(close(with_margin.loss.double_value(&[]), expected_m, 1e-6));
}

#[test]
fn the_head_reads_the_last_real_token_under_left_and_right_padding() {
    let model = RewardModel::random(&tiny_config(), Device::Cpu, Kind::Float, 3);
    let rows = vec![vec![10u32, 20, 30, 40, 50], vec![7, 8], vec![1, 2, 3]];
    let alone: Vec<f64> = rows
        .iter()
        .map(|r| {
            let (ids, valid) = right_padded(std::slice::from_ref(r), 0, Device::Cpu);
            model.rewards(&ids, &valid).double_value(&[0])
        })
        .collect();
    let (ids, valid) = right_padded(&rows, 258, Device::Cpu);
    let right: Vec<f32> = Vec::try_from(&model.rewards(&ids, &valid)).unwrap();
    // Left padding: flip each row's padding to the front.
    let t = 5;
    let mut left_ids = vec![258i64; rows.len() * t];
    let mut left_valid = vec![false; rows.len() * t];
    for (i, r) in rows.iter().enumerate() {
        for (j, &x) in r.iter().enumerate() {
            left_ids[i * t + t - r.len() + j] = x as i64;
            left_valid[i * t + t - r.len() + j] = true;
        }
    }
    let left_ids = Tensor::from_slice(&left_ids).view([3, 5]);
    let left_valid = Tensor::from_slice(&left_valid).view([3, 5]);
    let left: Vec<f32> = Vec::try_from(&model.rewards(&left_ids, &left_valid)).unwrap();
    for i in 0..rows.len() {
        assert!(
            close(right[i] as f64, alone[i], 1e-5),
            "row {i}: right {} vs alone {}",
            right[i],
            alone[i]
        );
        assert!(
            close(left[i] as f64, alone[i], 1e-5),
            "row {i}: left {} vs alone {}",
            left[i],
            alone[i]
        );
    }
}

#[test]
fn scoring_is_batch_size_invariant_and_checkpoints_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(dir.path(), 5).unwrap();
    let model = RewardModel::load_or_init(dir.path(), Device::Cpu, Kind::Float, 9).unwrap();
    let rm_dir = dir.path().join("rm");
    model.save(&rm_dir, Some(dir.path())).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rm_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["architectures"][0], "LlamaForSequenceClassification");
    assert_eq!(config["id2label"]["0"], "LABEL_0");
    let reloaded = RewardModel::load(&rm_dir, Device::Cpu, Kind::Float).unwrap();
    let tokenizer = Tokenizer::from_dir(&rm_dir).unwrap();
    let inputs: Vec<RewardInput> = (0..8)
        .map(|i| RewardInput::new(&format!("question {i}"), &"answer ".repeat(i + 1)))
        .collect();
    let scorer = |batch_size| ModelReward {
        model: RewardModel::load(&rm_dir, Device::Cpu, Kind::Float).unwrap(),
        tokenizer: Tokenizer::from_dir(&rm_dir).unwrap(),
        batch_size,
        max_len: 256,
    };
    let batched = scorer(8).score(&inputs).unwrap();
    let single = scorer(1).score(&inputs).unwrap();
    for (a, b) in batched.iter().zip(&single) {
        assert!(close(*a, *b, 1e-5), "{a} vs {b}");
    }
    let original = ModelReward {
        model,
        tokenizer,
        batch_size: 3,
        max_len: 256,
    }
    .score(&inputs)
    .unwrap();
    assert_eq!(
        original,
        ModelReward {
            model: reloaded,
            tokenizer: Tokenizer::from_dir(&rm_dir).unwrap(),
            batch_size: 3,
            max_len: 256
        }
        .score(&inputs)
        .unwrap()
    );
    // A causal LM is not a reward model.
    let err = RewardModel::load(dir.path(), Device::Cpu, Kind::Float)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not a reward model"), "{err}");
}

#[derive(serde::Deserialize)]
struct RulesFile {
    rules: Vec<RuleConfig>,
}

#[test]
fn rules_from_toml_score_as_documented() {
    let config: RulesFile = toml::from_str(
        r#"
        [[rules]]
        kind = "regex"
        pattern = "(?i)cheers"
        weight = 2.0
        [[rules]]
        kind = "length"
        target_words = 4
        tolerance = 1
        [[rules]]
        kind = "refusal"
        prefer = "answer"
        weight = 0.5
        [[rules]]
        kind = "json"
        weight = 10
        "#,
    )
    .unwrap();
    let reward = rules_reward(&config.rules).unwrap();
    let rows = [
        RewardInput::new("q", "That is all. Cheers"), // regex 2 + length (4 words) 1 + answer 0.5
        RewardInput::new("q", "I cannot help with that request, sorry."), // 0 + length 7 words: off 2 → 0.5 + refusal 0
        RewardInput::new("q", "```json\n{\"a\": 1}\n```"), // json 10 + length 3 words → 1 + answer .5
    ];
    let scores = reward.score(&rows).unwrap();
    assert!(close(scores[0], 3.5, 1e-9), "{scores:?}");
    assert!(close(scores[1], 0.5, 1e-9), "{scores:?}");
    assert!(close(scores[2], 11.5, 1e-9), "{scores:?}");

    let bad: Result<RulesFile, _> = toml::from_str("[[rules]]\nkind = \"regex\"\npatern = \"x\"");
    let e = bad.err().expect("a misspelt key is an error").to_string();
    // The misspelt key is named (as unknown, or as the missing `pattern` it should be).
    assert!(
        e.contains("patern`") || e.contains("missing field `pattern`"),
        "{e}"
    );
    let bad_regex = rules_reward(&[RuleConfig::Regex {
        pattern: "(".into(),
        when: Default::default(),
        weight: 1.0,
    }]);
    assert!(bad_regex.err().unwrap().to_string().contains("rule regex"));
}

#[test]
fn wilson_interval_and_calibration_match_hand_computed_values() {
    // 8 of 10 at 95%: the textbook Wilson interval (0.4902, 0.9433).
    let (lo, hi) = wilson_interval(8, 10, 1.959_963_984_540_054);
    assert!(
        close(lo, 0.4902, 1e-4) && close(hi, 0.9433, 1e-4),
        "({lo}, {hi})"
    );
    assert_eq!(wilson_interval(0, 0, 1.96), (0.0, 1.0));

    // Margins 0 (confidence 0.5, wrong: a tie), ln 3 (0.75, right), -ln 3 (0.75, wrong).
    let pairs = [(1.0, 1.0), (3f64.ln(), 0.0), (0.0, 3f64.ln())];
    let e = evaluate_pairs(&pairs, 5);
    assert!(close(e.accuracy, 1.0 / 3.0, 1e-12));
    assert_eq!(e.bins[0].count, 1);
    assert_eq!(e.bins[2].count, 2); // [0.7, 0.8)
    assert!(close(e.bins[2].accuracy, 0.5, 1e-12) && close(e.bins[2].mean_confidence, 0.75, 1e-9));
    // ECE = 1/3·|0 − 0.5| + 2/3·|0.5 − 0.75|
    assert!(close(e.ece, 1.0 / 6.0 + 1.0 / 6.0, 1e-9), "{}", e.ece);
    assert!(close(e.mean_margin, 0.0, 1e-12));
}
