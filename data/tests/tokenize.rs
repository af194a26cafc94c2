//! Loss masks: prompt tokens are never in the loss, multi-turn trains assistant turns
//! only, EOS handling, truncation, and preference pairs sharing one prompt.

mod common;

use common::{masked_text, tokenizer, CHATML, NO_EOS};
use tiller_data::{
    tokenize_loaded, tokenize_preference, tokenize_prompt, tokenize_sft, tokenize_unpaired,
    ChatMessage, DataError, Loaded, LossOn, PairOptions, PreferenceRecord, RowLocation, SftRecord,
    TokenizeOptions, Turns, UnpairedRecord, IGNORE_INDEX,
};

fn opts() -> TokenizeOptions {
    TokenizeOptions::new(4096)
}

fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::user("What is 2+2?"),
        ChatMessage::assistant("4."),
        ChatMessage::user("And 3+3?"),
        ChatMessage::assistant("6."),
    ]
}

#[test]
fn single_turn_trains_the_answer_and_its_eos_only() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path(), Some(CHATML));
    let messages = vec![
        ChatMessage::user("Hi there"),
        ChatMessage::assistant("Hello."),
    ];
    let ex = tokenize_sft(&tok, &SftRecord::Messages(messages.clone()), &opts()).unwrap();
    let full = tok
        .require_chat_template()
        .unwrap()
        .apply(&messages, false)
        .unwrap();
    assert_eq!(
        tok.decode(
            &ex.input_ids.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            false
        )
        .unwrap(),
        full
    );
    assert_eq!(
        masked_text(&tok, &ex.input_ids, &ex.loss_mask, true),
        "Hello.<|im_end|>"
    );
    assert!(!masked_text(&tok, &ex.input_ids, &ex.loss_mask, true).contains("Hi there"));
    assert!(!ex.truncated);
    assert_eq!(ex.input_ids.len(), ex.loss_mask.len());
    let labels = ex.labels();
    assert!(labels
        .iter()
        .zip(&ex.loss_mask)
        .all(|(&l, &m)| m || l == IGNORE_INDEX));
}

#[test]
fn multi_turn_trains_assistant_turns_only() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path(), Some(CHATML));
    let ex = tokenize_sft(&tok, &SftRecord::Messages(conversation()), &opts()).unwrap();
    assert_eq!(
        masked_text(&tok, &ex.input_ids, &ex.loss_mask, true),
        "4.<|im_end|>6.<|im_end|>"
    );
    let masked_out = masked_text(&tok, &ex.input_ids, &ex.loss_mask, false);
    for text in [
        "What is 2+2?",
        "And 3+3?",
        "<|im_start|>assistant\n",
        "system",
    ] {
        assert!(
            masked_out.contains(text),
            "{text:?} should be outside the loss"
        );
    }
    // Prompt-side tokens are never in the loss: every loss token lies after a generation prompt.
    assert_eq!(ex.num_loss_tokens(), "4.".len() + 1 + "6.".len() + 1);
}

#[test]
fn conversational_prompt_completion_masks_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path(), Some(CHATML));
    let record = SftRecord::PromptCompletion {
        prompt: Turns::Messages(conversation()[..3].to_vec()),
        completion: Turns::Messages(vec![ChatMessage::assistant("6.")]),
    };
    let ex = tokenize_sft(&tok, &record, &opts()).unwrap();
    // With prompt/completion only the completion trains, even the earlier assistant turn not.
    assert_eq!(
        masked_text(&tok, &ex.input_ids, &ex.loss_mask, true),
        "6.<|im_end|>"
    );
}

#[test]
fn plain_text_appends_eos_and_masks_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path(), None);
    let record = SftRecord::PromptCompletion {
        prompt: Turns::Text("Q: hi".into()),
        completion: Turns::Text(" A: yo".into()),
    };
    let ex = tokenize_sft(&tok, &record, &opts()).unwrap();
    assert_eq!(*ex.input_ids.last().unwrap(), tok.eos_id as i64);
    assert_eq!(
        masked_text(&tok, &ex.input_ids, &ex.loss_mask, true),
        " A: yo<|im_end|>"
    );
    assert_eq!(
        masked_text(&tok, &ex.input_ids, &ex.loss_mask, false),
        "Q: hi"
    );
}

#[test]
fn messages_without_a_template_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path(), None);
    let err = tokenize_sft(&tok, &SftRecord::Messages(conversation()), &opts()).unwrap_err();
    assert!(err.to_string().contains("no chat template"), "{err}");
}

#[test]
fn eos_is_appended_when_the_template_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path(), Some(NO_EOS));
    let ex = tokenize_sft(&tok, &SftRecord::Messages(conversation()), &opts()).unwrap();
    assert_eq!(*ex.input_ids.last().unwrap(), tok.eos_id as i64);
    assert_eq!(
        masked_text(&tok, &ex.input_ids, &ex.loss_mask, true),
        "4.\n6.\n<|im_end|>"
    );
}

#[test]
fn loss_on_all_and_truncation_keep_start() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path(), Some(CHATML));
    let record = SftRecord::Messages(conversation());
    let all = TokenizeOptions {
        max_seq_len: 4096,
        loss_on: LossOn::All,
    };
    let ex = tokenize_sft(&tok, &record, &all).unwrap();
    assert!(ex.loss_mask.iter().all(|&m| m));

    let full = tokenize_sft(&tok, &record, &opts()).unwrap();
    let cut = tokenize_sft(&tok, &record, &TokenizeOptions::new(10)).unwrap();
    assert!(cut.truncated);
    assert_eq!(cut.input_ids, full.input_ids[..10]);
    assert_eq!(cut.loss_mask, full.loss_mask[..10]);
}

#[test]
fn templates_that_rewrite_earlier_turns_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path(), Some("{{ messages[-1]['content'] }}"));
    let err = tokenize_sft(&tok, &SftRecord::Messages(conversation()), &opts()).unwrap_err();
    assert!(matches!(err, DataError::ChatTemplate(_)), "{err}");
    assert!(err.to_string().contains("not a prefix"), "{err}");
}

#[test]
fn preference_pairs_share_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path(), Some(CHATML));
    let prompt = vec![ChatMessage::user("Capital of France?")];
    let record = PreferenceRecord {
        prompt: Turns::Messages(prompt.clone()),
        chosen: Turns::Messages(vec![ChatMessage::assistant("Paris.")]),
        rejected: Turns::Messages(vec![ChatMessage::assistant("Go away.")]),
    };
    let pair = tokenize_preference(&tok, &record, &PairOptions::new(4096)).unwrap();
    let prompt_text = tok
        .require_chat_template()
        .unwrap()
        .apply(&prompt, true)
        .unwrap();
    let decode = |ids: &[i64]| {
        tok.decode(&ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), false)
            .unwrap()
    };
    assert_eq!(decode(&pair.prompt_ids), prompt_text);
    assert_eq!(decode(&pair.chosen_ids), "Paris.<|im_end|>");
    assert_eq!(decode(&pair.rejected_ids), "Go away.<|im_end|>");
    assert_eq!(
        pair.prompt_ids,
        tokenize_prompt(&tok, &Turns::Messages(prompt)).unwrap()
    );

    let chosen = pair.chosen();
    assert_eq!(
        chosen.input_ids[..pair.prompt_ids.len()],
        pair.prompt_ids[..]
    );
    assert!(chosen.loss_mask[..pair.prompt_ids.len()]
        .iter()
        .all(|&m| !m));
    assert_eq!(
        masked_text(&tok, &chosen.input_ids, &chosen.loss_mask, true),
        "Paris.<|im_end|>"
    );
    let rejected = pair.rejected();
    assert_eq!(
        masked_text(&tok, &rejected.input_ids, &rejected.loss_mask, true),
        "Go away.<|im_end|>"
    );
}

#[test]
fn pair_truncation_keeps_prompt_end_and_completion_start() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path(), None);
    let record = PreferenceRecord {
        prompt: Turns::Text("0123456789".into()),
        chosen: Turns::Text("abcdef".into()),
        rejected: Turns::Text("uvw".into()),
    };
    let options = PairOptions {
        max_seq_len: 8,
        max_prompt_len: Some(4),
    };
    let pair = tokenize_preference(&tok, &record, &options).unwrap();
    let decode = |ids: &[i64]| {
        tok.decode(&ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), false)
            .unwrap()
    };
    assert_eq!(decode(&pair.prompt_ids), "6789");
    assert_eq!(decode(&pair.chosen_ids), "abcd");
    assert_eq!(decode(&pair.rejected_ids), "uvw<|im_end|>");
    assert!(pair.truncated);

    let err = tokenize_preference(&tok, &record, &PairOptions::new(10)).unwrap_err();
    assert!(err.to_string().contains("no room"), "{err}");
}

#[test]
fn unpaired_records_tokenize_with_their_label() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path(), Some(CHATML));
    let record = UnpairedRecord {
        prompt: Turns::Messages(vec![ChatMessage::user("Hi")]),
        completion: Turns::Messages(vec![ChatMessage::assistant("Hello.")]),
        label: false,
    };
    let t = tokenize_unpaired(&tok, &record, &PairOptions::new(512)).unwrap();
    assert!(!t.label);
    let ex = t.example();
    assert_eq!(
        masked_text(&tok, &ex.input_ids, &ex.loss_mask, true),
        "Hello.<|im_end|>"
    );
}

#[test]
fn tokenize_loaded_errors_name_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path(), None);
    let loaded = Loaded {
        records: vec![SftRecord::Messages(conversation())],
        locations: vec![RowLocation::line(std::path::Path::new("train.jsonl"), 7)],
        skipped: 0,
        skip_reasons: vec![],
    };
    let err = tokenize_loaded(&loaded, |r| tokenize_sft(&tok, r, &opts())).unwrap_err();
    assert!(err.to_string().starts_with("train.jsonl:7: "), "{err}");
}

#[test]
fn load_sft_reports_skips_truncation_and_examples_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path(), Some(CHATML));
    let path = dir.path().join("train.jsonl");
    let long = "x".repeat(200);
    let lines = [
        serde_json::json!({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}),
        serde_json::json!({"messages": [{"role": "user", "content": long}, {"role": "assistant", "content": "Too late."}]}),
        serde_json::json!({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": long}]}),
        serde_json::json!({"messages": [{"role": "bot", "content": "?"}]}),
    ];
    std::fs::write(
        &path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let options = TokenizeOptions::new(150);
    let (examples, report) =
        tiller_data::load_sft(&path, &tok, &options, tiller_data::OnBadRow::Skip).unwrap();
    assert_eq!(examples.len(), 2);
    assert_eq!(
        (
            report.examples,
            report.skipped,
            report.truncated,
            report.without_loss
        ),
        (2, 1, 1, 1)
    );
    assert!(report.to_string().contains("first skipped:"), "{report}");
    let err =
        tiller_data::load_sft(&path, &tok, &options, tiller_data::OnBadRow::Stop).unwrap_err();
    assert!(
        err.to_string()
            .contains("train.jsonl:4: field `messages[0].role`"),
        "{err}"
    );
}
