//! The JSON-object rows CLI commands take and give (JSONL or Parquet, by extension, through
//! tiller-data's table layer), with errors that name the file, the line and the field.

use std::path::Path;

use anyhow::{bail, Result};
use serde_json::{Map, Value};

/// One input row and where it came from (`file:line`, or `file: row N`).
pub struct Row {
    pub location: String,
    pub fields: Map<String, Value>,
}

impl Row {
    /// A required string field, non-empty.
    pub fn text(&self, field: &str) -> Result<&str> {
        match self.fields.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(Value::String(_)) => bail!("{}: field `{field}` is empty", self.location),
            Some(other) => bail!(
                "{}: field `{field}` must be a string, got {}",
                self.location,
                type_name(other)
            ),
            None => bail!("{}: missing field `{field}`", self.location),
        }
    }

    pub fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads a JSONL or Parquet file of objects.
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    Ok(tiller_data::read_table(path)?
        .into_iter()
        .map(|(location, fields)| Row {
            location: location.to_string(),
            fields,
        })
        .collect())
}

/// Writes rows as JSONL or Parquet (by extension), atomically.
pub fn write_rows(path: &Path, rows: &[Map<String, Value>]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    Ok(tiller_data::write_table(path, rows)?)
}
