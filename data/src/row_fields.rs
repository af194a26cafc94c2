//! Reading the fields of one table row into record parts, with errors that name the row
//! and the field (`messages[2].role`). Used by the [`Record`](crate::records::Record)
//! implementations.

use serde_json::Value;

use crate::chat_template::ChatMessage;
use crate::error::{DataError, Result};
use crate::records::{PreferenceRecord, Turns, ROLES};
use crate::table::{json_type, JsonRow, RowLocation};

/// Field access on one row with errors that name the row and the field.
pub(crate) struct Fields<'a> {
    pub(crate) row: &'a JsonRow,
    pub(crate) location: &'a RowLocation,
}

impl Fields<'_> {
    pub(crate) fn err(&self, field: &str, message: impl Into<String>) -> DataError {
        DataError::row(self.location, Some(field), message)
    }

    pub(crate) fn wrong_type(&self, field: &str, expected: &str, found: &Value) -> DataError {
        self.err(
            field,
            format!(
                "wrong type: expected {expected}, found {}",
                json_type(found)
            ),
        )
    }

    /// The value of a column, treating null (Parquet's missing value) as absent.
    pub(crate) fn optional(&self, name: &str) -> Option<&Value> {
        self.row.get(name).filter(|v| !v.is_null())
    }

    pub(crate) fn required(&self, name: &str) -> Result<&Value> {
        self.optional(name)
            .ok_or_else(|| self.err(name, "missing column (absent or null)"))
    }

    pub(crate) fn text(&self, value: &Value, field: &str) -> Result<String> {
        match value {
            Value::String(s) if s.trim().is_empty() => Err(self.err(field, "empty text")),
            Value::String(s) => Ok(s.clone()),
            other => Err(self.wrong_type(field, "a string", other)),
        }
    }

    pub(crate) fn turns(&self, value: &Value, field: &str) -> Result<Turns> {
        match value {
            Value::String(_) => Ok(Turns::Text(self.text(value, field)?)),
            Value::Array(_) => Ok(Turns::Messages(self.messages(value, field)?)),
            other => Err(self.wrong_type(field, "a string or a list of messages", other)),
        }
    }

    pub(crate) fn messages(&self, value: &Value, field: &str) -> Result<Vec<ChatMessage>> {
        let items = match value {
            Value::Array(items) => items,
            other => return Err(self.wrong_type(field, "a list of messages", other)),
        };
        if items.is_empty() {
            return Err(self.err(field, "empty list of messages"));
        }
        let mut messages = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let here = format!("{field}[{i}]");
            let object = match item {
                Value::Object(o) => o,
                other => return Err(self.wrong_type(&here, "a `{role, content}` object", other)),
            };
            let get = |key: &str| {
                let name = format!("{here}.{key}");
                match object.get(key).filter(|v| !v.is_null()) {
                    Some(v) => Ok((v, name)),
                    None => Err(self.err(&name, "missing")),
                }
            };
            let (role, role_field) = get("role")?;
            let role = match role {
                Value::String(r) if ROLES.contains(&r.as_str()) => r.clone(),
                Value::String(r) => {
                    return Err(self.err(
                        &role_field,
                        format!("unknown role {r:?} (expected one of {})", ROLES.join(", ")),
                    ))
                }
                other => return Err(self.wrong_type(&role_field, "a string", other)),
            };
            let (content, content_field) = get("content")?;
            let content = self.text(content, &content_field)?;
            messages.push(ChatMessage { role, content });
        }
        Ok(messages)
    }

    pub(crate) fn require_assistant(&self, messages: &[ChatMessage], field: &str) -> Result<()> {
        if messages.iter().any(|m| m.role == "assistant") {
            Ok(())
        } else {
            Err(self.err(field, "no assistant message (nothing to learn from)"))
        }
    }

    /// `prompt` and `completion_field` (completion, chosen or rejected) in the same form.
    pub(crate) fn prompt_completion(&self, completion_field: &str) -> Result<(Turns, Turns)> {
        let prompt = self.turns(self.required("prompt")?, "prompt")?;
        let completion = self.turns(self.required(completion_field)?, completion_field)?;
        match (&prompt, &completion) {
            (Turns::Text(_), Turns::Text(_)) => {}
            (Turns::Messages(_), Turns::Messages(messages)) => {
                self.require_assistant(messages, completion_field)?;
            }
            (Turns::Text(_), Turns::Messages(_)) | (Turns::Messages(_), Turns::Text(_)) => {
                return Err(self.err(
                    completion_field,
                    "`prompt` and this field mix a string and a list of messages; use one form",
                ))
            }
        }
        Ok((prompt, completion))
    }

    /// No `prompt` column: `chosen` and `rejected` are whole conversations whose shared
    /// leading messages are the prompt.
    pub(crate) fn implicit_prompt(&self) -> Result<PreferenceRecord> {
        let chosen = self.required("chosen")?;
        let rejected = self.required("rejected")?;
        if !chosen.is_array() {
            return Err(self.err(
                "prompt",
                "missing column (absent or null); it may be left out only when `chosen` and `rejected` are message lists",
            ));
        }
        let chosen = self.messages(chosen, "chosen")?;
        let rejected = self.messages(rejected, "rejected")?;
        let shared = chosen
            .iter()
            .zip(&rejected)
            .take_while(|(a, b)| a == b)
            .count();
        if shared == 0 {
            return Err(self.err(
                "prompt",
                "missing column, and `chosen` and `rejected` share no leading messages to use as the prompt",
            ));
        }
        for (field, messages) in [("chosen", &chosen), ("rejected", &rejected)] {
            if messages.len() == shared {
                return Err(self.err(
                    field,
                    "nothing after the prompt shared with the other answer",
                ));
            }
            self.require_assistant(&messages[shared..], field)?;
        }
        Ok(PreferenceRecord {
            prompt: Turns::Messages(chosen[..shared].to_vec()),
            chosen: Turns::Messages(chosen[shared..].to_vec()),
            rejected: Turns::Messages(rejected[shared..].to_vec()),
        })
    }
}
