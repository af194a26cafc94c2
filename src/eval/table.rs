//! CSV and JSONL input rows for the evaluation sets, with errors that name the file, the
//! line and the field, and header checks that name the columns expected.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::rows::{read_rows, type_name};

/// One input row: its location (`file:line`) and its fields as text.
#[derive(Debug, Clone)]
pub struct TextRow {
    pub location: String,
    pub fields: BTreeMap<String, Value>,
}

impl TextRow {
    /// A required, non-empty string field.
    pub fn text(&self, field: &str) -> Result<&str> {
        match self.fields.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
            Some(Value::String(_)) => bail!("{}: field `{field}` is empty", self.location),
            Some(other) => bail!(
                "{}: field `{field}` must be a string, got {}",
                self.location,
                type_name(other)
            ),
            None => bail!("{}: missing field `{field}`", self.location),
        }
    }

    /// An optional string field: None when absent, null or empty.
    pub fn opt_text(&self, field: &str) -> Result<Option<&str>> {
        match self.fields.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => bail!(
                "{}: field `{field}` must be a string, got {}",
                self.location,
                type_name(other)
            ),
        }
    }

    /// A required integer field (a JSON number, or a CSV cell holding one).
    pub fn integer(&self, field: &str) -> Result<i64> {
        match self.fields.get(field) {
            Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64().unwrap_or_default()),
            Some(Value::String(s)) => s.trim().parse().with_context(|| {
                format!(
                    "{}: field `{field}` must be an integer, got {s:?}",
                    self.location
                )
            }),
            Some(other) => bail!(
                "{}: field `{field}` must be an integer, got {}",
                self.location,
                type_name(other)
            ),
            None => bail!("{}: missing field `{field}`", self.location),
        }
    }
}

/// The file's extension, lower-cased (`csv`, `jsonl`, ...).
pub fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The header of a CSV file (its first record).
pub fn csv_header(path: &Path) -> Result<Vec<String>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    let header = reader
        .headers()
        .with_context(|| format!("{}:1: cannot read the CSV header", path.display()))?;
    Ok(header
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_owned())
        .collect())
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
) -> Result<Vec<TextRow>> {
    let header = csv_header(path)?;
    if !has_columns(&header, required) {
        bail!(
            "{}: not a {what} file: expected the columns {} in the header, found {}",
            path.display(),
            required.join(","),
            header.join(",")
        );
    }
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut rows = Vec::new();
    for record in reader.records() {
        if limit.is_some_and(|n| rows.len() >= n) {
            break;
        }
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            anyhow::anyhow!("{}:{line}: bad CSV row: {e}", path.display())
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let fields = header
            .iter()
            .cloned()
            .zip(record.iter().map(|v| Value::String(v.to_owned())))
            .collect();
        rows.push(TextRow {
            location: format!("{}:{line}", path.display()),
            fields,
        });
    }
    Ok(rows)
}

/// Reads a JSONL file of objects, stopping after `limit` rows.
pub fn read_jsonl_rows(path: &Path, limit: Option<usize>) -> Result<Vec<TextRow>> {
    let mut rows: Vec<TextRow> = read_rows(path)?
        .into_iter()
        .map(|r| TextRow {
            location: r.location,
            fields: r.fields.into_iter().collect(),
        })
        .collect();
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
        other => bail!(
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
