//! The real default model against numbers recorded from Hugging Face transformers on the
//! same GGUF (tests/fixtures/smollm2_reference.json, made by scripts/reference/run.sh).
//! Needs `scripts/setup.sh` to have imported the model into models/smollm2-135m-instruct.

use std::path::PathBuf;

use serde_json::Value;
use tch::{Device, Kind};
use tiller_data::{ChatMessage, Tokenizer};
use tiller_model::{generate, score, CausalLm, GenerationConfig, ScoreRequest};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model_dir() -> PathBuf {
    let dir = root().join("models/smollm2-135m-instruct");
    assert!(
        dir.join("model.safetensors").exists(),
        "{} is missing: run scripts/setup.sh first",
        dir.display()
    );
    dir
}

fn fixture() -> Value {
    let path = root().join("tests/fixtures/smollm2_reference.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture JSON")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn messages(v: &Value) -> Vec<ChatMessage> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn rebuilt_tokenizer_matches_transformers() {
    let tokenizer = Tokenizer::from_dir(&model_dir()).unwrap();
    for case in fixture()["tokenization"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            tokenizer.encode(text, false).unwrap(),
            ids(&case["ids"]),
            "text {text:?}"
        );
        assert_eq!(tokenizer.decode(&ids(&case["ids"]), false).unwrap(), text);
    }
}

#[test]
fn chat_template_matches_apply_chat_template() {
    let tokenizer = Tokenizer::from_dir(&model_dir()).unwrap();
    let template = tokenizer.require_chat_template().unwrap();
    for case in fixture()["chat_templates"].as_array().unwrap() {
        let m = messages(&case["messages"]);
        assert_eq!(
            template.apply(&m, true).unwrap(),
            case["with_generation_prompt"].as_str().unwrap()
        );
        assert_eq!(
            template.apply(&m, false).unwrap(),
            case["without_generation_prompt"].as_str().unwrap()
        );
    }
}

#[test]
fn log_likelihoods_match_transformers_within_1e3() {
    let dir = model_dir();
    let lm = CausalLm::load(&dir, Device::Cpu, Kind::Float).unwrap();
    let tokenizer = Tokenizer::from_dir(&dir).unwrap();
    let cases = fixture()["loglik"].as_array().unwrap().clone();
    let requests: Vec<ScoreRequest> = cases
        .iter()
        .map(|c| {
            let ids = tokenizer
                .encode(c["text"].as_str().unwrap(), false)
                .unwrap();
            ScoreRequest {
                context: ids[..1].to_vec(),
                continuation: ids[1..].to_vec(),
            }
        })
        .collect();
    // Batched (with padding) and alone must both match.
    for batch_size in [1, 4] {
        let scores = score(&lm, &requests, batch_size).unwrap();
        for (case, s) in cases.iter().zip(&scores) {
            let expected = case["logprob"].as_f64().unwrap();
            assert_eq!(s.tokens as u64, case["tokens"].as_u64().unwrap());
            assert!(
                (s.logprob - expected).abs() <= 1e-3,
                "batch {batch_size}, {:?}: tiller {} vs transformers {expected}",
                case["text"],
                s.logprob
            );
        }
    }
}

#[test]
fn greedy_completions_match_transformers() {
    let dir = model_dir();
    let lm = CausalLm::load(&dir, Device::Cpu, Kind::Float).unwrap();
    let tokenizer = Tokenizer::from_dir(&dir).unwrap();
    let fixture = fixture();
    let cases = fixture["greedy"].as_array().unwrap();
    let max_new = fixture["max_new_tokens"].as_u64().unwrap() as usize;
    let template = tokenizer.require_chat_template().unwrap();
    let prompts: Vec<Vec<u32>> = cases
        .iter()
        .map(|c| {
            let text = template.apply(&messages(&c["messages"]), true).unwrap();
            let prompt = tokenizer.encode(&text, false).unwrap();
            assert_eq!(prompt, ids(&c["prompt_ids"]));
            prompt
        })
        .collect();
    let config = GenerationConfig::greedy(max_new, &tokenizer);
    let indices: Vec<usize> = (0..prompts.len()).collect();
    // All prompts in one left-padded batch.
    let out = generate(&lm, &tokenizer, &prompts, &indices, &config).unwrap();
    for (case, g) in cases.iter().zip(&out) {
        assert_eq!(
            g.tokens,
            ids(&case["completion_ids"]),
            "prompt {:?}",
            case["messages"]
        );
        assert_eq!(g.text, case["completion"].as_str().unwrap());
    }
}
