//! A tiller reward checkpoint scores the same in transformers, and the trainer reads the
//! sequences TRL's `RewardTrainer` reads.
//!
//! SmolLM2's pad token is its EOS (`<|im_end|>`), and HF's `LlamaForSequenceClassification`
//! reads the last token that is not the pad token. Before this was the rule on both
//! sides, the trainer read a conversation at its `<|im_end|>` and the scorer (GRPO, PPO,
//! `reward score`) and transformers at the template's newline after it: three readings of
//! one checkpoint. The model here is random and tiny; the tokenizer is the default
//! model's, whose pad = EOS is the case that matters.

use std::process::Command;

#[allow(dead_code)] // the GGUF tests' helpers: only python() and default_model() here
mod gguf_support;
use gguf_support::{default_model, python};

use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};
use tiller_data::{
    tokenize_preference_whole, ChatMessage, PairOptions, PreferenceRecord, Tokenizer, Turns,
};
use tiller_model::LlamaConfig;
use tiller_reward::{ModelReward, Reward, RewardInput, RewardModel};

/// transformers' rewards and token ids for `rows` ({"messages"} or {"text"}) from `dir`:
/// conversations through `apply_chat_template`, strings with EOS appended, as TRL does.
fn transformers_rewards(dir: &std::path::Path, rows: &Value) -> Vec<(Vec<i64>, f64)> {
    let script = r#"
import json, sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
out = []
for row in json.loads(sys.argv[2]):
    if "messages" in row:
        ids = tok.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"]
    else:
        ids = tok(row["text"] + tok.eos_token)["input_ids"]
    with torch.no_grad():
        out.append([ids, model(input_ids=torch.tensor([ids])).logits[0, 0].item()])
print(json.dumps(out))
"#;
    let out = Command::new(python())
        .args(["-c", script, dir.to_str().unwrap(), &rows.to_string()])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "transformers failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_reward_checkpoint_reads_the_same_tokens_in_tiller_and_transformers() {
    let default_model = default_model();
    let tokenizer = Tokenizer::from_dir(&default_model).unwrap();
    assert_eq!(
        tokenizer.pad_id, tokenizer.eos_id,
        "the case under test: pad = EOS"
    );
    let mut config = LlamaConfig::tiny(tokenizer.vocab_size());
    config.eos_token_id = Some(tiller_model::config::TokenIds::One(tokenizer.eos_id));
    config.pad_token_id = Some(tokenizer.pad_id);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("rm");
    RewardModel::random(&config, Device::Cpu, Kind::Float, 7)
        .save(&dir, Some(&default_model))
        .unwrap();
    let model = RewardModel::load(&dir, Device::Cpu, Kind::Float).unwrap();

    let prompts = ["How do I boil an egg?", "Name a prime number."];
    let answers = [
        ["Put it in boiling water for nine minutes.", "Eggs."],
        ["Seven.", "Nine is prime, since it is odd."],
    ];
    // The trainer's view: each pair tokenized whole, read by the model's rule.
    let mut train_ids = vec![];
    let mut records = vec![];
    for (prompt, [chosen, rejected]) in prompts.iter().zip(answers) {
        let turn = |role: &str, text: &str| Turns::Messages(vec![ChatMessage::new(role, text)]);
        records.push(PreferenceRecord {
            prompt: turn("user", prompt),
            chosen: turn("assistant", chosen),
            rejected: turn("assistant", rejected),
        });
    }
    records.push(PreferenceRecord {
        prompt: Turns::Text("Q: 2 + 2? A:".into()),
        chosen: Turns::Text(" 4".into()),
        rejected: Turns::Text(" 5".into()),
    });
    for record in &records {
        let pair = tokenize_preference_whole(&tokenizer, record, &PairOptions::new(512)).unwrap();
        train_ids.push(pair.chosen().input_ids);
        train_ids.push(pair.rejected().input_ids);
    }
    let train_rewards: Vec<f64> = train_ids
        .iter()
        .map(|ids| {
            let x = Tensor::from_slice(ids).view([1, -1]);
            let valid = x.ones_like().to_kind(Kind::Bool);
            tch::no_grad(|| model.rewards(&x, &valid)).double_value(&[0])
        })
        .collect();

    let mut rows = vec![];
    for (prompt, pair) in prompts.iter().zip(answers) {
        for answer in pair {
            rows.push(json!({"messages": [
                {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}));
        }
    }
    rows.push(json!({"text": "Q: 2 + 2? A: 4"}));
    rows.push(json!({"text": "Q: 2 + 2? A: 5"}));
    let reference = transformers_rewards(&dir, &Value::Array(rows));

    for (i, ((ids, want), (got_ids, got))) in reference
        .iter()
        .zip(train_ids.iter().zip(&train_rewards))
        .enumerate()
    {
        assert_eq!(got_ids, ids, "row {i}: the trainer's tokens are TRL's");
        assert!(
            (got - want).abs() < 1e-4,
            "row {i}: tiller {got} vs transformers {want}"
        );
    }
    // The scorer GRPO, PPO and `tiller reward score` use reads the same.
    let scorer = ModelReward {
        model,
        tokenizer,
        batch_size: 4,
        max_len: 512,
    };
    let inputs: Vec<RewardInput> = (prompts.iter().zip(answers))
        .flat_map(|(p, pair)| pair.map(|a| RewardInput::new(p, a)))
        .collect();
    let scored = scorer.score(&inputs).unwrap();
    for (i, (got, (_, want))) in scored.iter().zip(&reference).enumerate() {
        assert!(
            (got - want).abs() < 1e-4,
            "row {i}: scorer {got} vs transformers {want}"
        );
    }
    // The conversations end `<|im_end|>` `\n`: read at the newline, not at EOS.
    let last = &reference[0].0;
    assert_eq!(last[last.len() - 2], i64::from(scorer.tokenizer.eos_id));
}
