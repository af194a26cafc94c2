//! Typed records with TRL's column conventions, parsed from table rows with errors that
//! name the file, line (or Parquet row) and field.
//!
//! - SFT: `messages` (a list of `{role, content}`), or `prompt`/`completion`.
//! - Preferences: `prompt`/`chosen`/`rejected`. Without a `prompt` column, when `chosen`
//!   and `rejected` are whole conversations, their shared leading messages are the prompt
//!   (TRL's implicit prompt).
//! - Unpaired feedback (KTO): `prompt`/`completion`/`label` (bool).
//! - Prompts alone (RL, annotation): `prompt`.
//!
//! Prompts and completions are [`Turns`]: a string (TRL's "standard" form) or a list of
//! messages (the "conversational" form). Both fields of one record use the same form.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::chat_template::ChatMessage;
use crate::error::{DataError, Result};
use crate::row_fields::Fields;
use crate::table::{read_table_with, write_table, JsonRow, RowLocation};

/// Roles a message may have.
pub const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// Text in TRL's standard form (a string) or conversational form (messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turns {
    /// A plain string, used as is (no chat template).
    Text(String),
    /// Chat turns, rendered with the model's chat template.
    Messages(Vec<ChatMessage>),
}

impl Turns {
    /// Whether these are chat messages rather than a plain string.
    pub fn is_conversational(&self) -> bool {
        matches!(self, Turns::Messages(_))
    }

    fn to_value(&self) -> Value {
        match self {
            Turns::Text(text) => Value::String(text.clone()),
            Turns::Messages(messages) => messages_value(messages),
        }
    }
}

/// A supervised fine-tuning example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SftRecord {
    /// A whole conversation; the loss covers the assistant turns.
    Messages(Vec<ChatMessage>),
    /// A prompt and its completion; the loss covers the completion.
    PromptCompletion { prompt: Turns, completion: Turns },
}

/// A preference pair: `chosen` is the better answer to `prompt` than `rejected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferenceRecord {
    pub prompt: Turns,
    pub chosen: Turns,
    pub rejected: Turns,
}

/// Unpaired feedback: `completion` is desirable (`label = true`) or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpairedRecord {
    pub prompt: Turns,
    pub completion: Turns,
    pub label: bool,
}

/// A prompt alone (RL rollouts, annotation queues): the `prompt` column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRecord {
    pub prompt: Turns,
}

/// A record type that lives in a table row.
pub trait Record: Sized {
    /// Parses a row; errors name `location` and the field at fault.
    fn from_row(row: &JsonRow, location: &RowLocation) -> Result<Self>;
    /// The row this record is written as (TRL's columns).
    fn to_row(&self) -> JsonRow;
}

/// What to do with a row that does not parse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBadRow {
    /// Fail with the row's error (the default).
    #[default]
    Stop,
    /// Leave the row out, count it and remember the first few reasons.
    Skip,
}

/// How many skip reasons [`Loaded`] keeps.
pub const MAX_SKIP_REASONS: usize = 5;

/// Records read from a file, each with the location it came from.
#[derive(Debug, Clone)]
pub struct Loaded<R> {
    pub records: Vec<R>,
    /// `locations[i]` is where `records[i]` was read.
    pub locations: Vec<RowLocation>,
    /// Rows left out under [`OnBadRow::Skip`].
    pub skipped: usize,
    /// The errors of the first [`MAX_SKIP_REASONS`] skipped rows.
    pub skip_reasons: Vec<String>,
}

/// Reads records of type `R` from a JSONL or Parquet file. A file with no usable row is
/// an error (it cannot train anything).
pub fn load_records<R: Record>(path: &Path, on_bad_row: OnBadRow) -> Result<Loaded<R>> {
    let mut loaded = Loaded {
        records: Vec::new(),
        locations: Vec::new(),
        skipped: 0,
        skip_reasons: Vec::new(),
    };
    read_table_with(path, |row| {
        let parsed = row.and_then(|(location, row)| {
            R::from_row(&row, &location).map(|record| (location, record))
        });
        match (parsed, on_bad_row) {
            (Ok((location, record)), _) => {
                loaded.records.push(record);
                loaded.locations.push(location);
                Ok(())
            }
            (Err(e), OnBadRow::Stop) => Err(e),
            (Err(e), OnBadRow::Skip) => {
                loaded.skipped += 1;
                if loaded.skip_reasons.len() < MAX_SKIP_REASONS {
                    loaded.skip_reasons.push(e.to_string());
                }
                Ok(())
            }
        }
    })?;
    if loaded.records.is_empty() {
        let mut message = format!("{}: no usable rows", path.display());
        if let Some(first) = loaded.skip_reasons.first() {
            message.push_str(&format!(" ({} skipped; first: {first})", loaded.skipped));
        }
        return Err(DataError::Dataset(message));
    }
    Ok(loaded)
}

/// Writes records as TRL-style rows; the format follows `path`'s extension.
pub fn save_records<R: Record>(path: &Path, records: &[R]) -> Result<()> {
    let rows: Vec<JsonRow> = records.iter().map(Record::to_row).collect();
    write_table(path, &rows)
}

impl Record for SftRecord {
    fn from_row(row: &JsonRow, location: &RowLocation) -> Result<Self> {
        let f = Fields { row, location };
        if let Some(value) = f.optional("messages") {
            let messages = f.messages(value, "messages")?;
            f.require_assistant(&messages, "messages")?;
            return Ok(SftRecord::Messages(messages));
        }
        if f.optional("prompt").is_none() && f.optional("completion").is_none() {
            return Err(DataError::row(
                location,
                Some("messages"),
                "missing column (an SFT row needs `messages`, or `prompt` and `completion`)",
            ));
        }
        let (prompt, completion) = f.prompt_completion("completion")?;
        Ok(SftRecord::PromptCompletion { prompt, completion })
    }

    fn to_row(&self) -> JsonRow {
        let mut row = Map::new();
        match self {
            SftRecord::Messages(messages) => {
                row.insert("messages".into(), messages_value(messages));
            }
            SftRecord::PromptCompletion { prompt, completion } => {
                row.insert("prompt".into(), prompt.to_value());
                row.insert("completion".into(), completion.to_value());
            }
        }
        row
    }
}

impl Record for PreferenceRecord {
    fn from_row(row: &JsonRow, location: &RowLocation) -> Result<Self> {
        let f = Fields { row, location };
        if f.optional("prompt").is_none() {
            return f.implicit_prompt();
        }
        let (prompt, chosen) = f.prompt_completion("chosen")?;
        let (_, rejected) = f.prompt_completion("rejected")?;
        Ok(PreferenceRecord {
            prompt,
            chosen,
            rejected,
        })
    }

    fn to_row(&self) -> JsonRow {
        let mut row = Map::new();
        row.insert("prompt".into(), self.prompt.to_value());
        row.insert("chosen".into(), self.chosen.to_value());
        row.insert("rejected".into(), self.rejected.to_value());
        row
    }
}

impl Record for UnpairedRecord {
    fn from_row(row: &JsonRow, location: &RowLocation) -> Result<Self> {
        let f = Fields { row, location };
        let (prompt, completion) = f.prompt_completion("completion")?;
        let label = match f.required("label")? {
            Value::Bool(b) => *b,
            other => return Err(f.wrong_type("label", "a boolean", other)),
        };
        Ok(UnpairedRecord {
            prompt,
            completion,
            label,
        })
    }

    fn to_row(&self) -> JsonRow {
        let mut row = Map::new();
        row.insert("prompt".into(), self.prompt.to_value());
        row.insert("completion".into(), self.completion.to_value());
        row.insert("label".into(), Value::Bool(self.label));
        row
    }
}

impl Record for PromptRecord {
    fn from_row(row: &JsonRow, location: &RowLocation) -> Result<Self> {
        let f = Fields { row, location };
        let prompt = f.turns(f.required("prompt")?, "prompt")?;
        Ok(PromptRecord { prompt })
    }

    fn to_row(&self) -> JsonRow {
        let mut row = Map::new();
        row.insert("prompt".into(), self.prompt.to_value());
        row
    }
}

fn messages_value(messages: &[ChatMessage]) -> Value {
    Value::Array(
        messages
            .iter()
            .map(|m| {
                let mut o = Map::new();
                o.insert("role".into(), Value::String(m.role.clone()));
                o.insert("content".into(), Value::String(m.content.clone()));
                Value::Object(o)
            })
            .collect(),
    )
}
