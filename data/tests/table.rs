//! JSONL and Parquet tables: round trips (nested chat messages included) and errors
//! that name the file and line.

use serde_json::{json, Value};
use tiller_data::{read_table, write_table, DataError, JsonRow, RowPosition};

fn obj(v: Value) -> JsonRow {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn sample_rows() -> Vec<JsonRow> {
    vec![
        obj(json!({"messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"}
        ], "id": 1})),
        obj(json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4."}
        ], "id": 2, "score": 0.5, "ok": true})),
        obj(json!({"prompt": "Say hi", "completion": " Hi.", "label": false})),
    ]
}

fn round_trip(ext: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("t.{ext}"));
    let rows = sample_rows();
    write_table(&path, &rows).unwrap();
    let back = read_table(&path).unwrap();
    let back_rows: Vec<JsonRow> = back.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(back_rows, rows);
    assert!(!dir.path().join(format!("t.{ext}.tmp")).exists());
}

#[test]
fn jsonl_round_trip() {
    round_trip("jsonl");
}

#[test]
fn parquet_round_trip_with_nested_messages() {
    round_trip("parquet");
}

#[test]
fn parquet_locations_are_rows_and_jsonl_locations_are_lines() {
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("a.parquet");
    write_table(&pq, &sample_rows()).unwrap();
    let rows = read_table(&pq).unwrap();
    assert_eq!(rows[2].0.position, RowPosition::Row(2));
    assert_eq!(rows[2].0.to_string(), format!("{}: row 2", pq.display()));

    let jl = dir.path().join("a.jsonl");
    std::fs::write(&jl, "{\"a\": 1}\n\n{\"a\": 2}\n").unwrap();
    let rows = read_table(&jl).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].0.to_string(), format!("{}:3", jl.display()));
}

#[test]
fn json_array_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.json");
    std::fs::write(&path, "[{\"a\": 1}, {\"a\": 2}]").unwrap();
    let rows = read_table(&path).unwrap();
    assert_eq!(rows[1].0.position, RowPosition::Item(1));
}

#[test]
fn malformed_json_line_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(&path, "{\"a\": 1}\n{\"a\": 2,,}\n").unwrap();
    let err = read_table(&path).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}:2: invalid JSON", path.display())),
        "{text}"
    );
    assert!(!text.contains("line 1"), "{text}");
}

#[test]
fn non_object_line_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(&path, "[1, 2]\n").unwrap();
    let text = read_table(&path).unwrap_err().to_string();
    assert!(
        text.contains("bad.jsonl:1: expected a JSON object, found a list"),
        "{text}"
    );
}

#[test]
fn unknown_extension_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.csv");
    std::fs::write(&path, "a,b\n").unwrap();
    let err = read_table(&path).unwrap_err();
    assert!(matches!(err, DataError::UnsupportedFormat { .. }));
    assert!(err.to_string().contains("data.csv"), "{err}");
    let err = write_table(&path, &sample_rows()).unwrap_err();
    assert!(matches!(err, DataError::UnsupportedFormat { .. }));
}

#[test]
fn missing_file_names_the_file() {
    let err = read_table(std::path::Path::new("/nonexistent/x.parquet")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.parquet"), "{err}");
}

#[test]
fn corrupt_parquet_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.parquet");
    std::fs::write(&path, b"not parquet at all").unwrap();
    let err = read_table(&path).unwrap_err();
    assert!(err.to_string().contains("c.parquet"), "{err}");
}

#[test]
fn empty_tables_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for ext in ["jsonl", "parquet"] {
        let path = dir.path().join(format!("e.{ext}"));
        write_table(&path, &[]).unwrap();
        assert!(read_table(&path).unwrap().is_empty());
    }
}

#[test]
fn parquet_output_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.parquet");
    let b = dir.path().join("b.parquet");
    write_table(&a, &sample_rows()).unwrap();
    write_table(&b, &sample_rows()).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}
