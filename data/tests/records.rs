//! Records: parsing with TRL's columns, errors naming file/line/field, skip-and-count,
//! and writers that round-trip through JSONL and Parquet.

use std::path::{Path, PathBuf};

use serde_json::json;
use tiller_data::{
    load_records, save_records, ChatMessage, DataError, OnBadRow, PreferenceRecord, SftRecord,
    Turns, UnpairedRecord,
};

fn write_lines(dir: &Path, name: &str, lines: &[serde_json::Value]) -> PathBuf {
    let path = dir.join(name);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn chat() -> serde_json::Value {
    json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}])
}

/// Loads `row` as line 2 of a file (line 1 is good) and returns the error text.
fn sft_error(row: serde_json::Value) -> (PathBuf, String) {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = write_lines(&dir, "sft.jsonl", &[json!({"messages": chat()}), row]);
    let err = load_records::<SftRecord>(&path, OnBadRow::Stop).unwrap_err();
    assert!(matches!(err, DataError::Row { .. }), "{err:?}");
    (path.clone(), err.to_string())
}

fn expect(row: serde_json::Value, field: &str, message: &str) {
    let (path, text) = sft_error(row);
    let want = format!("{}:2: field `{field}`: {message}", path.display());
    assert!(text.starts_with(&want), "got: {text}\nwant: {want}");
}

#[test]
fn sft_bad_rows_name_file_line_and_field() {
    expect(json!({"text": "x"}), "messages", "missing column");
    expect(
        json!({"messages": "hi"}),
        "messages",
        "wrong type: expected a list of messages, found a string",
    );
    expect(
        json!({"messages": []}),
        "messages",
        "empty list of messages",
    );
    expect(
        json!({"messages": [{"role": "bot", "content": "x"}]}),
        "messages[0].role",
        "unknown role \"bot\"",
    );
    expect(
        json!({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "  "}]}),
        "messages[1].content",
        "empty text",
    );
    expect(
        json!({"messages": [{"role": "user"}]}),
        "messages[0].content",
        "missing",
    );
    expect(
        json!({"messages": [{"role": 3, "content": "x"}]}),
        "messages[0].role",
        "wrong type: expected a string, found a number",
    );
    expect(
        json!({"messages": [{"role": "user", "content": "x"}]}),
        "messages",
        "no assistant message",
    );
    expect(json!({"messages": ["x"]}), "messages[0]", "wrong type");
    expect(json!({"prompt": "x"}), "completion", "missing column");
    expect(
        json!({"prompt": "", "completion": "y"}),
        "prompt",
        "empty text",
    );
    expect(
        json!({"prompt": "x", "completion": 5}),
        "completion",
        "wrong type: expected a string or a list of messages, found a number",
    );
    expect(
        json!({"prompt": "x", "completion": [{"role": "assistant", "content": "y"}]}),
        "completion",
        "`prompt` and this field mix",
    );
}

#[test]
fn sft_forms_parse() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_lines(
        dir.path(),
        "sft.jsonl",
        &[
            json!({"messages": chat()}),
            json!({"prompt": "Q: 2+2?", "completion": " 4."}),
            json!({"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "4."}]}),
        ],
    );
    let loaded = load_records::<SftRecord>(&path, OnBadRow::Stop).unwrap();
    assert_eq!(loaded.records.len(), 3);
    assert!(matches!(loaded.records[0], SftRecord::Messages(ref m) if m.len() == 2));
    assert_eq!(
        loaded.records[1],
        SftRecord::PromptCompletion {
            prompt: Turns::Text("Q: 2+2?".into()),
            completion: Turns::Text(" 4.".into())
        }
    );
    assert!(matches!(
        loaded.records[2],
        SftRecord::PromptCompletion {
            prompt: Turns::Messages(_),
            ..
        }
    ));
    assert_eq!(
        loaded.locations[2].to_string(),
        format!("{}:3", path.display())
    );
}

#[test]
fn skip_counts_bad_rows_and_keeps_first_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = vec![json!({"messages": chat()})];
    for _ in 0..7 {
        lines.push(json!({"messages": [{"role": "robot", "content": "x"}]}));
    }
    lines.push(json!({"messages": chat()}));
    let path = write_lines(dir.path(), "sft.jsonl", &lines);
    // A malformed JSON line is skipped too.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{not json\n");
    std::fs::write(&path, text).unwrap();

    let loaded = load_records::<SftRecord>(&path, OnBadRow::Skip).unwrap();
    assert_eq!(loaded.records.len(), 2);
    assert_eq!(loaded.skipped, 8);
    assert_eq!(loaded.skip_reasons.len(), 5);
    assert!(
        loaded.skip_reasons[0].contains("sft.jsonl:2: field `messages[0].role`"),
        "{}",
        loaded.skip_reasons[0]
    );
    assert_eq!(
        loaded.locations[1].to_string(),
        format!("{}:9", path.display())
    );

    let err = load_records::<SftRecord>(&path, OnBadRow::Stop).unwrap_err();
    assert!(err.to_string().contains("sft.jsonl:2:"), "{err}");
}

#[test]
fn a_file_with_only_bad_rows_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_lines(dir.path(), "sft.jsonl", &[json!({"x": 1})]);
    let err = load_records::<SftRecord>(&path, OnBadRow::Skip).unwrap_err();
    assert!(
        err.to_string().contains("no usable rows (1 skipped"),
        "{err}"
    );
}

#[test]
fn parquet_bad_rows_name_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.parquet");
    let rows: Vec<_> = [
        json!({"prompt": "a", "chosen": "b", "rejected": "c"}),
        json!({"prompt": "a", "chosen": "b"}),
    ]
    .into_iter()
    .map(|v| v.as_object().unwrap().clone())
    .collect();
    tiller_data::write_table(&path, &rows).unwrap();
    let err = load_records::<PreferenceRecord>(&path, OnBadRow::Stop).unwrap_err();
    let want = format!(
        "{}: row 1: field `rejected`: missing column",
        path.display()
    );
    assert!(err.to_string().starts_with(&want), "{err}");
}

#[test]
fn preference_forms_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let conv = |answer: &str| json!([{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": answer}]);
    let path = write_lines(
        dir.path(),
        "pref.jsonl",
        &[
            json!({"prompt": "Q?", "chosen": "Yes.", "rejected": "No."}),
            json!({"chosen": conv("Paris."), "rejected": conv("Go away.")}),
            json!({"prompt": [{"role": "user", "content": "Q?"}], "chosen": [{"role": "assistant", "content": "A."}], "rejected": [{"role": "assistant", "content": "B."}]}),
        ],
    );
    let loaded = load_records::<PreferenceRecord>(&path, OnBadRow::Stop).unwrap();
    let implicit = &loaded.records[1];
    assert_eq!(
        implicit.prompt,
        Turns::Messages(vec![ChatMessage::user("Capital of France?")])
    );
    assert_eq!(
        implicit.chosen,
        Turns::Messages(vec![ChatMessage::assistant("Paris.")])
    );
    assert_eq!(
        implicit.rejected,
        Turns::Messages(vec![ChatMessage::assistant("Go away.")])
    );

    let bad = [
        (
            json!({"chosen": "a", "rejected": "b"}),
            "prompt",
            "missing column",
        ),
        (
            json!({"prompt": "q", "chosen": "a", "rejected": 1}),
            "rejected",
            "wrong type",
        ),
        (
            json!({"prompt": "q", "chosen": "", "rejected": "b"}),
            "chosen",
            "empty text",
        ),
        (
            json!({"chosen": conv("x"), "rejected": json!([{"role": "user", "content": "Other"}, {"role": "assistant", "content": "y"}])}),
            "prompt",
            "missing column, and",
        ),
    ];
    for (i, (row, field, message)) in bad.into_iter().enumerate() {
        let path = write_lines(dir.path(), &format!("bad{i}.jsonl"), &[row]);
        let err = load_records::<PreferenceRecord>(&path, OnBadRow::Stop).unwrap_err();
        let want = format!("{}:1: field `{field}`: {message}", path.display());
        assert!(err.to_string().starts_with(&want), "got {err}\nwant {want}");
    }
}

#[test]
fn unpaired_label_must_be_bool() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_lines(
        dir.path(),
        "u.jsonl",
        &[json!({"prompt": "q", "completion": "a", "label": "yes"})],
    );
    let err = load_records::<UnpairedRecord>(&path, OnBadRow::Stop).unwrap_err();
    assert!(
        err.to_string()
            .contains("u.jsonl:1: field `label`: wrong type: expected a boolean, found a string"),
        "{err}"
    );
}

#[test]
fn writers_round_trip_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let sft = vec![
        SftRecord::Messages(vec![
            ChatMessage::user("Hi"),
            ChatMessage::assistant("Hello."),
        ]),
        SftRecord::PromptCompletion {
            prompt: Turns::Text("a".into()),
            completion: Turns::Text("b".into()),
        },
    ];
    let prefs = vec![PreferenceRecord {
        prompt: Turns::Messages(vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::user("Hi"),
        ]),
        chosen: Turns::Messages(vec![ChatMessage::assistant("Hello.")]),
        rejected: Turns::Messages(vec![ChatMessage::assistant("What do you want?")]),
    }];
    let unpaired = vec![
        UnpairedRecord {
            prompt: Turns::Text("q".into()),
            completion: Turns::Text("a".into()),
            label: true,
        },
        UnpairedRecord {
            prompt: Turns::Text("q".into()),
            completion: Turns::Text("b".into()),
            label: false,
        },
    ];
    for ext in ["jsonl", "parquet"] {
        let p = dir.path().join(format!("sft.{ext}"));
        save_records(&p, &sft).unwrap();
        assert_eq!(
            load_records::<SftRecord>(&p, OnBadRow::Stop)
                .unwrap()
                .records,
            sft
        );
        let p = dir.path().join(format!("pref.{ext}"));
        save_records(&p, &prefs).unwrap();
        assert_eq!(
            load_records::<PreferenceRecord>(&p, OnBadRow::Stop)
                .unwrap()
                .records,
            prefs
        );
        let p = dir.path().join(format!("kto.{ext}"));
        save_records(&p, &unpaired).unwrap();
        assert_eq!(
            load_records::<UnpairedRecord>(&p, OnBadRow::Stop)
                .unwrap()
                .records,
            unpaired
        );
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn reads_parquet_written_by_pyarrow() {
    // zstd, large strings, a dictionary column, nulls, row groups of 2 rows.
    let path = fixture("prefs_zstd.parquet");
    let err = load_records::<PreferenceRecord>(&path, OnBadRow::Stop).unwrap_err();
    let want = format!(
        "{}: row 4: field `rejected[0].role`: unknown role \"robot\"",
        path.display()
    );
    assert!(err.to_string().starts_with(&want), "{err}");
    let loaded = load_records::<PreferenceRecord>(&path, OnBadRow::Skip).unwrap();
    assert_eq!((loaded.records.len(), loaded.skipped), (4, 1));
    assert_eq!(
        loaded.records[3].chosen,
        Turns::Messages(vec![ChatMessage::assistant("Answer 3.")])
    );
    let rows = tiller_data::read_table(&path).unwrap();
    assert_eq!(rows[2].1["source"], json!("a"));
    assert!(
        !rows[1].1.contains_key("score"),
        "nulls are left out of the objects"
    );

    // snappy, as pandas writes by default.
    let loaded = load_records::<SftRecord>(&fixture("sft_snappy.parquet"), OnBadRow::Stop).unwrap();
    assert_eq!(
        loaded.records[1],
        SftRecord::Messages(vec![
            ChatMessage::user("2+2?"),
            ChatMessage::assistant("4.")
        ])
    );
}

#[test]
fn parquet_cannot_mix_strings_and_message_lists_in_one_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.parquet");
    let rows = [
        SftRecord::PromptCompletion {
            prompt: Turns::Text("a".into()),
            completion: Turns::Text("b".into()),
        },
        SftRecord::PromptCompletion {
            prompt: Turns::Messages(vec![ChatMessage::user("a")]),
            completion: Turns::Messages(vec![ChatMessage::assistant("b")]),
        },
    ];
    let err = save_records(&path, &rows).unwrap_err();
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("one type per column"), "{err}");
    assert!(!path.exists());
}
