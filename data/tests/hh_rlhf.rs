//! The HH-RLHF transcript importer on hand-made rows, malformed ones included.

use tiller_data::hh_rlhf::{import_hh_rlhf, parse_transcript};
use tiller_data::{ChatMessage, PreferenceRecord, Turns};

#[test]
fn splits_shared_prompt_and_final_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hh.jsonl");
    let rows = [
        // good, two turns of context
        serde_json::json!({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Capital of France?\n\nAssistant: Paris.",
                           "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Capital of France?\n\nAssistant: Go look it up."}),
        // prefixes differ
        serde_json::json!({"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"}),
        // not a transcript
        serde_json::json!({"chosen": "just text", "rejected": "\n\nHuman: A\n\nAssistant: y"}),
        // ends with a Human turn
        serde_json::json!({"chosen": "\n\nHuman: A\n\nAssistant: x\n\nHuman: more", "rejected": "\n\nHuman: A\n\nAssistant: x\n\nHuman: more"}),
    ];
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&path, text).unwrap();
    let out = import_hh_rlhf(&path).unwrap();
    assert_eq!(
        out.records,
        vec![PreferenceRecord {
            prompt: Turns::Messages(vec![
                ChatMessage::user("Hi"),
                ChatMessage::assistant("Hello!"),
                ChatMessage::user("Capital of France?"),
            ]),
            chosen: Turns::Messages(vec![ChatMessage::assistant("Paris.")]),
            rejected: Turns::Messages(vec![ChatMessage::assistant("Go look it up.")]),
        }]
    );
    assert_eq!(out.skipped.len(), 3);
    assert!(
        out.skipped[0].contains("hh.jsonl:2") && out.skipped[0].contains("differ"),
        "{}",
        out.skipped[0]
    );
    assert!(
        out.skipped[1].contains("hh.jsonl:3") && out.skipped[1].contains("`chosen`"),
        "{}",
        out.skipped[1]
    );
    assert!(
        out.skipped[2].contains("Assistant turn"),
        "{}",
        out.skipped[2]
    );

    std::fs::write(&path, "{\"chosen\": 3, \"rejected\": \"x\"}\n").unwrap();
    let err = import_hh_rlhf(&path).unwrap_err().to_string();
    assert!(
        err.contains("hh.jsonl:1") && err.contains("chosen"),
        "{err}"
    );
}

#[test]
fn parses_transcripts_without_leading_newlines() {
    let turns = parse_transcript("Human: hi there\n\nAssistant: hey").unwrap();
    assert_eq!(
        turns,
        vec![ChatMessage::user("hi there"), ChatMessage::assistant("hey")]
    );
    assert!(parse_transcript("Assistant: no human first").is_none());
}
