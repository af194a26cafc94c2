//! One input row as commands and evaluations read it: its fields and where it came from
//! (`file:line`, `file: row N`, or a flag such as `--prompt`), with typed getters whose
//! errors name that place and the field. JSONL and Parquet rows come through
//! [`read_rows`]; tiller-eval reads CSV files into the same type. Also the two ways a row
//! becomes a prompt: its chat messages, and their token ids.
//!
//! Not to be confused with `row_fields` (crate-private), which parses rows into the typed
//! training records.

use std::path::Path;

use serde_json::Value;

use crate::chat_template::ChatMessage;
use crate::error::{DataError, Result};
use crate::table::{json_type, read_table, write_table, JsonRow};
use crate::tokenizer::Tokenizer;

/// One input row and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub location: String,
    pub fields: JsonRow,
}

impl Row {
    /// A row built in code (e.g. from a flag), named `location` in errors.
    pub fn new(location: impl Into<String>, fields: &[(&str, &str)]) -> Row {
        Row {
            location: location.into(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
                .collect(),
        }
    }

    fn err(&self, field: &str, message: impl std::fmt::Display) -> DataError {
        DataError::Field {
            location: self.location.clone(),
            message: format!("field `{field}` {message}"),
        }
    }

    /// A required, non-blank string field.
    pub fn text(&self, field: &str) -> Result<&str> {
        match self.fields.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
            Some(Value::String(_)) => Err(self.err(field, "is empty")),
            Some(other) => Err(self.err(
                field,
                format_args!("must be a string, got {}", json_type(other)),
            )),
            None => Err(DataError::Field {
                location: self.location.clone(),
                message: format!("missing field `{field}`"),
            }),
        }
    }

    /// An optional string field: None when absent, null or blank.
    pub fn opt_text(&self, field: &str) -> Result<Option<&str>> {
        match self.fields.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.err(
                field,
                format_args!("must be a string, got {}", json_type(other)),
            )),
        }
    }

    /// A required integer field (a JSON number, or a CSV cell holding one).
    pub fn integer(&self, field: &str) -> Result<i64> {
        match self.fields.get(field) {
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| self.err(field, format_args!("must be an integer, got {n}"))),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map_err(|_| self.err(field, format_args!("must be an integer, got {s:?}"))),
            Some(other) => Err(self.err(
                field,
                format_args!("must be an integer, got {}", json_type(other)),
            )),
            None => Err(DataError::Field {
                location: self.location.clone(),
                message: format!("missing field `{field}`"),
            }),
        }
    }

    pub fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    /// The row's `messages` list, or its `prompt` as one user turn.
    pub fn messages(&self) -> Result<Vec<ChatMessage>> {
        let Some(messages) = self.fields.get("messages") else {
            return Ok(vec![ChatMessage::user(self.text("prompt")?)]);
        };
        let Value::Array(items) = messages else {
            return Err(self.err(
                "messages",
                format_args!("must be an array, got {}", json_type(messages)),
            ));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, m)| {
                serde_json::from_value::<ChatMessage>(m.clone()).map_err(|_| DataError::Field {
                    location: self.location.clone(),
                    message: format!(
                        "field `messages[{i}]` must be {{\"role\": str, \"content\": str}}"
                    ),
                })
            })
            .collect()
    }

    /// Token ids of the row's prompt: through the chat template with the generation
    /// prompt, or (`raw`) its `prompt` text as is, with the tokenizer's special tokens.
    pub fn prompt_ids(&self, tokenizer: &Tokenizer, raw: bool) -> Result<Vec<u32>> {
        if raw {
            return tokenizer.encode(self.text("prompt")?, true);
        }
        let text = tokenizer
            .require_chat_template()?
            .apply(&self.messages()?, true)
            .map_err(|e| DataError::Field {
                location: self.location.clone(),
                message: e.to_string(),
            })?;
        tokenizer.encode(&text, false)
    }
}

/// Reads a JSONL or Parquet file of objects (by extension).
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    Ok(read_table(path)?
        .into_iter()
        .map(|(location, fields)| Row {
            location: location.to_string(),
            fields,
        })
        .collect())
}

/// Writes rows as JSONL or Parquet (by extension), atomically, creating the directory.
pub fn write_rows(path: &Path, rows: &[JsonRow]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    write_table(path, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getters_name_the_row_and_the_field() {
        let mut row = Row::new("in.jsonl:3", &[("prompt", "hi"), ("blank", "  ")]);
        row.fields.insert("n".into(), Value::from(7));
        row.fields.insert("x".into(), Value::from(1.5));
        assert_eq!(row.text("prompt").unwrap(), "hi");
        assert_eq!(row.integer("n").unwrap(), 7);
        assert_eq!(row.opt_text("blank").unwrap(), None);
        let err = row.text("blank").unwrap_err().to_string();
        assert_eq!(err, "in.jsonl:3: field `blank` is empty");
        let err = row.text("missing").unwrap_err().to_string();
        assert_eq!(err, "in.jsonl:3: missing field `missing`");
        let err = row.integer("x").unwrap_err().to_string();
        assert!(err.contains("in.jsonl:3") && err.contains("`x`"), "{err}");
        let err = row.text("n").unwrap_err().to_string();
        assert!(err.contains("must be a string, got a number"), "{err}");
        assert_eq!(row.messages().unwrap(), vec![ChatMessage::user("hi")]);
        row.fields.insert("messages".into(), Value::from("no"));
        let err = row.messages().unwrap_err().to_string();
        assert!(err.contains("`messages` must be an array"), "{err}");
    }
}
