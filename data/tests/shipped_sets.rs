//! The project's own data sets parse, and with the real SmolLM2 tokenizer (when
//! `scripts/setup.sh` has imported it into models/, or TILLER_MODEL_DIR points at a model
//! directory) their masks cover exactly the assistant text and agree with transformers.

use std::path::PathBuf;

use tiller_data::{
    load_records, tokenize_loaded, tokenize_preference, tokenize_prompt, tokenize_sft, ChatMessage,
    OnBadRow, PairOptions, PreferenceRecord, PromptRecord, SftRecord, TokenizeOptions, Tokenizer,
    Turns, UnpairedRecord,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn data(path: &str) -> PathBuf {
    root().join("datasets").join(path)
}

#[test]
fn shipped_sets_parse_without_bad_rows() {
    for (path, min) in [("sft/train.jsonl", 250), ("sft/eval.jsonl", 40)] {
        let loaded = load_records::<SftRecord>(&data(path), OnBadRow::Stop).unwrap();
        assert!(loaded.records.len() >= min, "{path}");
    }
    for (path, min) in [
        ("preferences/train.jsonl", 250),
        ("preferences/eval.jsonl", 40),
    ] {
        let loaded = load_records::<PreferenceRecord>(&data(path), OnBadRow::Stop).unwrap();
        assert!(loaded.records.len() >= min, "{path}");
    }
    let prompts =
        load_records::<PromptRecord>(&data("prompts/train.jsonl"), OnBadRow::Stop).unwrap();
    assert_eq!(prompts.records.len(), 100);
    // Unpaired feedback: each pair split into a desirable and an undesirable row.
    for (path, pairs) in [("train", 250), ("eval", 40)] {
        let loaded = load_records::<UnpairedRecord>(
            &data(&format!("unpaired/{path}.jsonl")),
            OnBadRow::Stop,
        )
        .unwrap();
        assert_eq!(loaded.records.len(), 2 * pairs, "unpaired/{path}");
        let desirable = loaded.records.iter().filter(|r| r.label).count();
        assert_eq!(desirable, pairs, "unpaired/{path}");
    }
}

fn real_tokenizer() -> Option<Tokenizer> {
    let dir = std::env::var_os("TILLER_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models/smollm2-135m-instruct"));
    // Not a silent skip: the test command runs setup, which imports the model.
    assert!(
        dir.join("tokenizer.json").exists(),
        "no tokenizer in {} (run scripts/setup.sh)",
        dir.display()
    );
    Some(Tokenizer::from_dir(&dir).unwrap())
}

fn decode(tok: &Tokenizer, ids: &[i64]) -> String {
    tok.decode(&ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), false)
        .unwrap()
}

#[test]
fn smollm2_masks_cover_exactly_the_assistant_turns() {
    let Some(tok) = real_tokenizer() else { return };
    let loaded = load_records::<SftRecord>(&data("sft/train.jsonl"), OnBadRow::Stop).unwrap();
    let examples = tokenize_loaded(&loaded, |r| {
        tokenize_sft(&tok, r, &TokenizeOptions::new(1024))
    })
    .unwrap();
    let template = tok.require_chat_template().unwrap();
    for (record, ex) in loaded.records.iter().zip(&examples) {
        let SftRecord::Messages(messages) = record else {
            panic!("sft set uses messages")
        };
        assert!(!ex.truncated);
        assert_eq!(
            decode(&tok, &ex.input_ids),
            template.apply(messages, false).unwrap()
        );
        let trained: Vec<i64> = ex
            .input_ids
            .iter()
            .zip(&ex.loss_mask)
            .filter(|(_, &m)| m)
            .map(|(&i, _)| i)
            .collect();
        let want: String = messages
            .iter()
            .filter(|m| m.role == "assistant")
            .map(|m| format!("{}<|im_end|>", m.content))
            .collect();
        assert_eq!(decode(&tok, &trained), want);
    }
}

#[test]
fn smollm2_prompt_tokens_match_transformers_and_joint_tokenization() {
    let Some(tok) = real_tokenizer() else { return };
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/smollm2_reference.json")).unwrap(),
    )
    .unwrap();
    for case in fixture["greedy"].as_array().unwrap() {
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let want: Vec<i64> = serde_json::from_value(case["prompt_ids"].clone()).unwrap();
        assert_eq!(
            tokenize_prompt(&tok, &Turns::Messages(messages)).unwrap(),
            want
        );
    }
    // The prompt tokenized alone (as at generation time) is a prefix of the joint
    // tokenization used for SFT, so training and sampling see the same tokens.
    let prefs =
        load_records::<PreferenceRecord>(&data("preferences/train.jsonl"), OnBadRow::Stop).unwrap();
    for record in &prefs.records {
        let pair = tokenize_preference(&tok, record, &PairOptions::new(1024)).unwrap();
        let joint = SftRecord::PromptCompletion {
            prompt: record.prompt.clone(),
            completion: record.chosen.clone(),
        };
        let sft = tokenize_sft(&tok, &joint, &TokenizeOptions::new(1024)).unwrap();
        let chosen = pair.chosen();
        assert_eq!(sft.input_ids[..chosen.len()], chosen.input_ids[..]);
        assert_eq!(sft.loss_mask[..chosen.len()], chosen.loss_mask[..]);
    }
}
