//! Reading and writing the JSON-object rows the CLI commands take and give, with errors
//! that name the file, the line and the field.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

/// One input row and where it came from.
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
            Some(other) => bail!("{}: field `{field}` must be a string, got {}", self.location, type_name(other)),
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

/// Reads a JSONL file of objects; blank lines are skipped.
pub fn read_jsonl(path: &Path) -> Result<Vec<Row>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let location = format!("{}:{}", path.display(), i + 1);
        let line = line.with_context(|| format!("{location}: cannot read"))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(fields)) => rows.push(Row { location, fields }),
            Ok(other) => bail!("{location}: expected a JSON object, got {}", type_name(&other)),
            Err(e) => bail!("{location}: invalid JSON: {e}"),
        }
    }
    Ok(rows)
}

/// Writes rows as JSONL through a temporary file renamed into place.
pub fn write_jsonl(path: &Path, rows: &[Map<String, Value>]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut out = BufWriter::new(file);
    for row in rows {
        serde_json::to_writer(&mut out, row)?;
        out.write_all(b"\n")?;
    }
    out.flush().with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
