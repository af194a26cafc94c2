//! Tables of JSON objects on disk: JSONL (`.jsonl`, `.json`) and Parquet (`.parquet`),
//! chosen by extension. Every row keeps its [`RowLocation`] so later errors can name the
//! file and line (JSONL) or row (Parquet) the user must fix.
//!
//! Parquet goes through Arrow: record batches are turned into JSON objects with
//! `arrow-json`, and written by inferring an Arrow schema from the JSON rows, so nested
//! columns (a chat `messages` list of `{role, content}` structs) round-trip.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{DataError, Result};

/// One row of a table: a JSON object.
pub type JsonRow = Map<String, Value>;

/// Where a row came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowLocation {
    pub path: PathBuf,
    pub position: RowPosition,
}

/// The position of a row inside its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RowPosition {
    /// 1-based line of a JSONL file (as editors number lines).
    Line(usize),
    /// 0-based row of a Parquet file (as `datasets` and pandas index rows).
    Row(usize),
    /// 0-based element of a top-level JSON array (`.json` files holding `[{...}, ...]`).
    Item(usize),
}

impl RowLocation {
    /// Line `line` (1-based) of a JSONL file.
    pub fn line(path: &Path, line: usize) -> Self {
        RowLocation {
            path: path.to_owned(),
            position: RowPosition::Line(line),
        }
    }
    /// Row `row` (0-based) of a Parquet file.
    pub fn row(path: &Path, row: usize) -> Self {
        RowLocation {
            path: path.to_owned(),
            position: RowPosition::Row(row),
        }
    }
}

impl fmt::Display for RowLocation {
    /// `file:line` for JSONL, `file: row N` for Parquet, `file: item N` for a JSON array.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match self.position {
            RowPosition::Line(n) => write!(f, "{path}:{n}"),
            RowPosition::Row(n) => write!(f, "{path}: row {n}"),
            RowPosition::Item(n) => write!(f, "{path}: item {n}"),
        }
    }
}

/// The on-disk formats, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// One JSON object per line (`.jsonl`, `.ndjson`, `.json`; a `.json` file that starts
    /// with `[` is read as one JSON array of objects, as `datasets` may write it).
    JsonLines,
    /// Apache Parquet through Arrow (`.parquet`).
    Parquet,
}

impl TableFormat {
    /// The format for `path`'s extension, or [`DataError::UnsupportedFormat`].
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("jsonl") | Some("json") | Some("ndjson") => Ok(TableFormat::JsonLines),
            Some("parquet") => Ok(TableFormat::Parquet),
            _ => Err(DataError::UnsupportedFormat {
                path: path.to_owned(),
            }),
        }
    }
}

/// Reads every row of a table; stops at the first malformed row.
pub fn read_table(path: &Path) -> Result<Vec<(RowLocation, JsonRow)>> {
    let mut rows = Vec::new();
    read_table_with(path, |row| {
        rows.push(row?);
        Ok(())
    })?;
    Ok(rows)
}

/// Reads a table and hands each row (or the row's own error, e.g. a malformed JSON line)
/// to `visit`. File-level failures (missing file, corrupt Parquet) are returned directly;
/// row-level ones go to `visit`, which decides whether to stop (return `Err`) or go on.
pub fn read_table_with(
    path: &Path,
    mut visit: impl FnMut(Result<(RowLocation, JsonRow)>) -> Result<()>,
) -> Result<()> {
    match TableFormat::from_path(path)? {
        TableFormat::JsonLines => read_json(path, &mut visit),
        TableFormat::Parquet => read_parquet(path, &mut visit),
    }
}

type Visit<'a> = dyn FnMut(Result<(RowLocation, JsonRow)>) -> Result<()> + 'a;

fn read_json(path: &Path, visit: &mut Visit<'_>) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json && text.trim_start().starts_with('[') {
        return read_json_array(path, text, visit);
    }
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let location = RowLocation::line(path, i + 1);
        let row = match serde_json::from_str::<Value>(line) {
            Ok(value) => into_object(value, &location),
            Err(e) => Err(DataError::row(&location, None, json_message(&e, true))),
        };
        visit(row.map(|r| (location, r)))?;
    }
    Ok(())
}

fn read_json_array(path: &Path, text: &str, visit: &mut Visit<'_>) -> Result<()> {
    let items: Vec<Value> = serde_json::from_str(text).map_err(|source| DataError::Json {
        path: path.to_owned(),
        source,
    })?;
    for (i, value) in items.into_iter().enumerate() {
        let location = RowLocation {
            path: path.to_owned(),
            position: RowPosition::Item(i),
        };
        let row = into_object(value, &location);
        visit(row.map(|r| (location, r)))?;
    }
    Ok(())
}

/// serde_json's message without its "at line 1 column C" suffix, which is wrong for a
/// line of a JSONL file; the column is kept.
fn json_message(e: &serde_json::Error, with_column: bool) -> String {
    let text = e.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    if with_column {
        format!("invalid JSON at column {}: {message}", e.column())
    } else {
        format!("invalid JSON: {message}")
    }
}

fn into_object(value: Value, location: &RowLocation) -> Result<JsonRow> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(DataError::row(
            location,
            None,
            format!("expected a JSON object, found {}", json_type(&other)),
        )),
    }
}

/// The JSON type name of a value, for error messages.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn parquet_error(path: &Path, e: impl fmt::Display) -> DataError {
    DataError::Parquet {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn read_parquet(path: &Path, visit: &mut Visit<'_>) -> Result<()> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| parquet_error(path, e))?;
    let mut next_row = 0;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(path, e))?;
        for row in batch_to_rows(&batch).map_err(|e| parquet_error(path, e))? {
            visit(Ok((RowLocation::row(path, next_row), row)))?;
            next_row += 1;
        }
    }
    Ok(())
}

/// Turns an Arrow record batch into JSON objects (nulls are left out of the objects).
fn batch_to_rows(batch: &RecordBatch) -> std::result::Result<Vec<JsonRow>, String> {
    let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    let buffer = writer.into_inner();
    let mut rows = Vec::with_capacity(batch.num_rows());
    for line in buffer.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Value>(line).map_err(|e| e.to_string())? {
            Value::Object(map) => rows.push(map),
            _ => return Err("arrow-json wrote a row that is not an object".into()),
        }
    }
    // arrow-json writes nothing for a batch without columns; keep the row count.
    rows.resize_with(batch.num_rows(), Map::new);
    Ok(rows)
}

/// Writes rows to `path` in the format its extension names. The file is written beside
/// `path` and renamed into place, so a crash never leaves a half-written table.
pub fn write_table(path: &Path, rows: &[JsonRow]) -> Result<()> {
    let format = TableFormat::from_path(path)?;
    let tmp = tmp_path(path);
    let written = match format {
        TableFormat::JsonLines => write_jsonl(&tmp, rows),
        TableFormat::Parquet => write_parquet(&tmp, rows).map_err(|e| match e {
            DataError::Parquet { message, .. } => parquet_error(path, message),
            other => other,
        }),
    };
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

fn write_jsonl(path: &Path, rows: &[JsonRow]) -> Result<()> {
    let mut out = Vec::new();
    for row in rows {
        serde_json::to_writer(&mut out, row).map_err(|source| DataError::Json {
            path: path.to_owned(),
            source,
        })?;
        out.push(b'\n');
    }
    let mut file = File::create(path).map_err(|e| DataError::io(path, e))?;
    file.write_all(&out).map_err(|e| DataError::io(path, e))?;
    file.sync_all().map_err(|e| DataError::io(path, e))
}

/// Rows per Parquet row group / Arrow batch when writing.
const WRITE_BATCH_ROWS: usize = 4096;

fn write_parquet(path: &Path, rows: &[JsonRow]) -> Result<()> {
    let values = rows.iter().map(|r| Ok(Value::Object(r.clone())));
    let inferred = arrow_json::reader::infer_json_schema_from_iterator(values).map_err(|e| {
        parquet_error(
            path,
            format!(
                "cannot infer a schema from the rows (Parquet needs one type per column; \
                     do rows mix strings and message lists?): {e}"
            ),
        )
    })?;
    let schema = Arc::new(sorted_schema(&inferred));
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let file = File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
        .map_err(|e| parquet_error(path, e))?;
    for chunk in rows.chunks(WRITE_BATCH_ROWS) {
        let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
            .with_batch_size(WRITE_BATCH_ROWS)
            .build_decoder()
            .map_err(|e| parquet_error(path, e))?;
        decoder
            .serialize(chunk)
            .map_err(|e| parquet_error(path, e))?;
        if let Some(batch) = decoder.flush().map_err(|e| parquet_error(path, e))? {
            writer.write(&batch).map_err(|e| parquet_error(path, e))?;
        }
    }
    let file = writer.into_inner().map_err(|e| parquet_error(path, e))?;
    file.sync_all().map_err(|e| DataError::io(path, e))
}

/// arrow-json infers fields in hash order; sort them (recursively) by name so the same
/// rows always give the same file.
fn sorted_schema(schema: &Schema) -> Schema {
    Schema::new(sorted_fields(schema.fields()))
}

fn sorted_fields(fields: &Fields) -> Fields {
    let mut fields: Vec<Field> = fields
        .iter()
        .map(|f| {
            f.as_ref()
                .clone()
                .with_data_type(sorted_type(f.data_type()))
        })
        .collect();
    fields.sort_by(|a, b| a.name().cmp(b.name()));
    Fields::from(fields)
}

fn sorted_type(data_type: &DataType) -> DataType {
    let inner = |f: &Arc<Field>| {
        Arc::new(
            f.as_ref()
                .clone()
                .with_data_type(sorted_type(f.data_type())),
        )
    };
    match data_type {
        DataType::Struct(fields) => DataType::Struct(sorted_fields(fields)),
        DataType::List(f) => DataType::List(inner(f)),
        DataType::LargeList(f) => DataType::LargeList(inner(f)),
        other => other.clone(),
    }
}
