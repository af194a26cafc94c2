//! PPO's critic on tiny random models: a value per position that equals the reward model's
//! score of the prefix ending there (so a critic started from a reward checkpoint gives the
//! reward model's score at the last token), with left or right padding; and a critic
//! started from a causal LM keeps its backbone and gets a fresh head.

use tch::{Device, Kind, Tensor};
use tiller_model::testing::{tiny_config, write_tiny_checkpoint, write_tiny_tokenizer};
use tiller_model::CausalLm;
use tiller_policy::rl::critic::Critic;
use tiller_reward::RewardModel;

fn reward_checkpoint(dir: &std::path::Path) -> RewardModel {
    let model = RewardModel::random(&tiny_config(), Device::Cpu, Kind::Float, 11);
    model.save(dir, None).unwrap();
    write_tiny_tokenizer(dir).unwrap();
    model
}

fn ids(rows: &[[i64; 6]]) -> Tensor {
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, 6])
}

fn valid(rows: &[[bool; 6]]) -> Tensor {
    let flat: Vec<bool> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, 6])
}

#[test]
fn critic_from_a_reward_checkpoint_scores_every_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let reward = reward_checkpoint(dir.path());
    let critic = Critic::load(dir.path(), Device::Cpu, Kind::Float, 0).unwrap();
    // Row 0 left-padded, row 1 right-padded.
    let x = ids(&[[0, 0, 40, 41, 42, 43], [50, 51, 52, 53, 0, 0]]);
    let v = valid(&[
        [false, false, true, true, true, true],
        [true, true, true, true, false, false],
    ]);
    let values = tch::no_grad(|| critic.values(&x, &v));
    assert_eq!(values.size(), [2, 6]);
    // At the last real token: the reward model's score.
    let scores = tch::no_grad(|| reward.rewards(&x, &v));
    let last = [values.double_value(&[0, 5]), values.double_value(&[1, 3])];
    for (row, got) in last.iter().enumerate() {
        let want = scores.double_value(&[row as i64]);
        assert!((got - want).abs() < 1e-5, "row {row}: {got} vs {want}");
    }
    // At every real position: the score of the prefix ending there.
    for end in 0..4i64 {
        let prefix = x.narrow(1, 0, 4 - (3 - end)).narrow(0, 1, 1); // row 1, tokens 0..=end
        let prefix_valid = Tensor::ones_like(&prefix).to_kind(Kind::Bool);
        let want = tch::no_grad(|| reward.rewards(&prefix, &prefix_valid)).double_value(&[0]);
        let got = values.double_value(&[1, end]);
        assert!(
            (got - want).abs() < 1e-5,
            "prefix ..={end}: {got} vs {want}"
        );
    }
}

#[test]
fn critic_from_a_causal_lm_keeps_the_backbone_and_gets_a_new_head() {
    let dir = tempfile::tempdir().unwrap();
    let lm: CausalLm = write_tiny_checkpoint(dir.path(), 5).unwrap();
    let critic = Critic::load(dir.path(), Device::Cpu, Kind::Float, 3).unwrap();
    let head = critic.model.score.weight.shallow_clone();
    let std = head.std(true).double_value(&[]);
    assert!(std > 0.005 && std < 0.05, "head std {std}");
    let backbone = critic.model.vs.variables();
    for (name, t) in lm.vs.variables() {
        if name == "lm_head.weight" {
            continue;
        }
        let mine = backbone.get(&name).unwrap_or_else(|| panic!("no {name}"));
        assert!(mine.equal(&t), "{name} differs from the policy's");
    }
    // Trainable: every backbone tensor plus the head.
    let params = critic.params();
    assert!(params.iter().any(|(n, _)| n == "score.weight"));
    let backbone_tensors = lm
        .vs
        .variables()
        .keys()
        .filter(|n| *n != "lm_head.weight")
        .count();
    assert_eq!(params.len(), backbone_tensors + 1);
}

#[test]
fn critic_round_trips_through_a_reward_model_directory() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(&dir.path().join("policy"), 5).unwrap();
    let critic = Critic::load(&dir.path().join("policy"), Device::Cpu, Kind::Float, 3).unwrap();
    critic
        .save(&dir.path().join("critic"), &dir.path().join("policy"))
        .unwrap();
    let back = Critic::load(&dir.path().join("critic"), Device::Cpu, Kind::Float, 99).unwrap();
    let x = ids(&[[40, 41, 42, 43, 44, 45]]);
    let v = valid(&[[true; 6]]);
    let (a, b) = tch::no_grad(|| (critic.values(&x, &v), back.values(&x, &v)));
    assert!(a.equal(&b), "reloaded critic differs");
}
