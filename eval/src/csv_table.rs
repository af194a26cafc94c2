//! Input rows for the evaluation sets: CSV files read into tiller-data's [`Row`] (the
//! same row type JSONL and Parquet files give), with header checks that name the columns
//! expected, and the choice between CSV and JSONL by extension.

use std::path::Path;

use serde_json::Value;
use tiller_data::{read_rows, Row};

use crate::error::{input_err, EvalError, Result};

/// The file's extension, lower-cased (`csv`, `jsonl`, ...).
pub fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The header of a CSV file (its first record).
pub fn csv_header(path: &Path) -> Result<Vec<String>> {
    let mut reader = open_csv(path)?;
    let header = reader.headers().map_err(|e| {
        EvalError::Input(format!(
            "{}:1: cannot read the CSV header: {e}",
            path.display()
        ))
    })?;
    Ok(header
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_owned())
        .collect())
}

fn open_csv(path: &Path) -> Result<csv::Reader<std::fs::File>> {
    let file = std::fs::File::open(path).map_err(|e| EvalError::io(path, e))?;
    Ok(csv::Reader::from_reader(file))
}

/// Whether `header` holds every column in `required`.
pub fn has_columns(header: &[String], required: &[&str]) -> bool {
    required.iter().all(|c| header.iter().any(|h| h == c))
}

/// Reads a CSV file whose header must hold `required` (extra columns are kept); `what`
/// names the format in the error. Stops after `limit` rows.
pub fn read_csv(
    path: &Path,
    required: &[&str],
    what: &str,
    limit: Option<usize>,
) -> Result<Vec<Row>> {
    let header = csv_header(path)?;
    if !has_columns(&header, required) {
        input_err!(
            "{}: not a {what} file: expected the columns {} in the header, found {}",
            path.display(),
            required.join(","),
            header.join(",")
        );
    }
    let mut reader = open_csv(path)?;
    let mut rows = Vec::new();
    for record in reader.records() {
        if limit.is_some_and(|n| rows.len() >= n) {
            break;
        }
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            EvalError::Input(format!("{}:{line}: bad CSV row: {e}", path.display()))
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let fields = header
            .iter()
            .cloned()
            .zip(record.iter().map(|v| Value::String(v.to_owned())))
            .collect();
        rows.push(Row {
            location: format!("{}:{line}", path.display()),
            fields,
        });
    }
    Ok(rows)
}

/// Reads a JSONL (or Parquet) file of objects, keeping the first `limit` rows.
pub fn read_jsonl_rows(path: &Path, limit: Option<usize>) -> Result<Vec<Row>> {
    let mut rows = read_rows(path)?;
    if let Some(n) = limit {
        rows.truncate(n);
    }
    Ok(rows)
}

/// JSONL or CSV by extension (`.jsonl`/`.ndjson`/`.json` or `.csv`); anything else is an error.
pub fn is_jsonl(path: &Path) -> Result<bool> {
    match extension(path).as_str() {
        "jsonl" | "ndjson" | "json" => Ok(true),
        "csv" => Ok(false),
        other => input_err!(
            "{}: unknown extension `{other}` (expected .jsonl or .csv)",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_carry_lines_and_quoted_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(
            &path,
            "goal,target\n\"Say \"\"hi\"\", twice\",Sure\n\"two\nlines\",ok\nthird,x\n",
        )
        .unwrap();
        let rows = read_csv(&path, &["goal", "target"], "AdvBench", None).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].text("goal").unwrap(), "Say \"hi\", twice");
        assert!(
            rows[0].location.ends_with("a.csv:2"),
            "{}",
            rows[0].location
        );
        assert_eq!(rows[1].text("goal").unwrap(), "two\nlines");
        assert!(
            rows[2].location.ends_with("a.csv:5"),
            "{}",
            rows[2].location
        );
        assert_eq!(read_csv(&path, &["goal"], "x", Some(1)).unwrap().len(), 1);
    }

    #[test]
    fn wrong_header_and_ragged_rows_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.csv");
        std::fs::write(&path, "question,answer\nq,a\n").unwrap();
        let err = read_csv(&path, &["goal", "target"], "AdvBench", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("b.csv") && err.contains("goal,target") && err.contains("question,answer"),
            "{err}"
        );
        std::fs::write(&path, "goal,target\nq,a\nonly-one\n").unwrap();
        let err = read_csv(&path, &["goal", "target"], "AdvBench", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("b.csv:3"), "{err}");
    }
}
