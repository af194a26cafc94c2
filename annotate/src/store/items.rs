//! Items: a prompt (text or a conversation) and the two candidate answers to compare.
//!
//! Upload format, one JSON object per line:
//! `{"prompt": "...", "answers": [{"model": "A", "text": "..."}, {"model": "B", "text": "..."}]}`
//! or `{"messages": [{"role": "user", "content": "..."}], "answers": [...]}`, with an
//! optional `"id"` (your own identifier, kept for provenance) and, for a gold item, the
//! known `"gold"` outcome (`first` = `answers[0]`, `second`, `tie`, `both_bad`). Lines
//! without `answers` are queued as prompts waiting for `tiller annotate generate`.

use super::db::{params, Db};
use serde::{Deserialize, Serialize};

use super::campaigns::campaign;
use super::reports::Outcome;
use super::Store;
use crate::error::{AppError, Result};
use crate::util::now_ms;

/// One chat message, TRL's conversational format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// What the answers respond to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Messages(Vec<Message>),
}

/// A candidate answer and the model (or checkpoint, or sampling run) that wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub model: String,
    #[serde(alias = "completion", alias = "content")]
    pub text: String,
}

/// An item to queue: a prompt and, unless it waits for generation, two answers.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    /// The uploader's own identifier, kept for provenance.
    pub external_id: Option<String>,
    pub prompt: Prompt,
    pub answers: Option<[Answer; 2]>,
    /// The known outcome of a gold item (needs `answers`).
    pub gold: Option<Outcome>,
}

/// The result of [`Store::add_items`].
#[derive(Debug, Clone, Serialize)]
pub struct ItemsAdded {
    /// Ids of the new items, in input order.
    pub item_ids: Vec<i64>,
    /// How many have answers and can be assigned now.
    pub ready: usize,
    /// How many wait for answers.
    pub pending: usize,
}

/// A queued prompt without answers, as `tiller annotate generate` sees it.
#[derive(Debug, Clone, Serialize)]
pub struct PendingPrompt {
    pub item_id: i64,
    pub prompt: Prompt,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemLine {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<Message>>,
    #[serde(default)]
    answers: Option<Vec<Answer>>,
    #[serde(default)]
    gold: Option<Outcome>,
}

/// Parses an upload (JSONL); errors name the 1-based line and the field. A leading
/// UTF-8 byte order mark (as some editors write) is skipped.
pub fn parse_items_jsonl(text: &str) -> Result<Vec<NewItem>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut items = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| AppError::BadLine {
            line: line_no,
            message,
        };
        let parsed: ItemLine =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(line))
                .map_err(|err| {
                    let path = err.path().to_string();
                    let inner = err.into_inner();
                    if path == "." {
                        bad(inner.to_string())
                    } else {
                        bad(format!("field `{path}`: {inner}"))
                    }
                })?;
        let prompt = match (parsed.prompt, parsed.messages) {
            (Some(text), None) => Prompt::Text(text),
            (None, Some(messages)) => Prompt::Messages(messages),
            (Some(_), Some(_)) => {
                return Err(bad("give either `prompt` or `messages`, not both".into()))
            }
            (None, None) => return Err(bad("missing field `prompt` (or `messages`)".into())),
        };
        let answers = match parsed.answers {
            None => None,
            Some(answers) => Some(<[Answer; 2]>::try_from(answers).map_err(|answers| {
                bad(format!(
                    "field `answers` must hold exactly 2 answers, found {}",
                    answers.len()
                ))
            })?),
        };
        let external_id = parsed.id.map(|id| match id {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
        let item = NewItem {
            external_id,
            prompt,
            answers,
            gold: parsed.gold,
        };
        validate(&item).map_err(|err| match err {
            AppError::InvalidField { field, message } => bad(format!("field `{field}` {message}")),
            other => other,
        })?;
        items.push(item);
    }
    Ok(items)
}

fn validate(item: &NewItem) -> Result<()> {
    match &item.prompt {
        Prompt::Text(text) if text.trim().is_empty() => {
            return Err(AppError::field("prompt", "is empty"))
        }
        Prompt::Messages(messages) if messages.is_empty() => {
            return Err(AppError::field("messages", "is empty"))
        }
        Prompt::Messages(messages) => {
            if let Some(index) = messages.iter().position(|m| m.role.trim().is_empty()) {
                return Err(AppError::field(
                    format!("messages[{index}].role"),
                    "is empty",
                ));
            }
        }
        Prompt::Text(_) => {}
    }
    if let Some(answers) = &item.answers {
        validate_answers(answers)?;
    }
    if item.gold.is_some() && item.answers.is_none() {
        return Err(AppError::field(
            "gold",
            "needs `answers`: the known outcome is about two given answers",
        ));
    }
    Ok(())
}

fn validate_answers(answers: &[Answer; 2]) -> Result<()> {
    if let Some(index) = answers.iter().position(|a| a.model.trim().is_empty()) {
        return Err(AppError::field(
            format!("answers[{index}].model"),
            "is empty",
        ));
    }
    Ok(())
}

impl Store {
    /// Queues items in a campaign; all or nothing. Items with answers become assignable.
    pub fn add_items(&self, campaign_id: i64, items: Vec<NewItem>) -> Result<ItemsAdded> {
        self.write(move |conn| add_items(conn, campaign_id, &items))
    }

    /// Prompts of `campaign_id` still waiting for answers, oldest first.
    pub fn pending_prompts(&self, campaign_id: i64) -> Result<Vec<PendingPrompt>> {
        self.read(|conn| {
            let rows = conn.query_map(
                "SELECT id, prompt_json FROM items WHERE campaign_id = ?1 AND answer_1 IS NULL ORDER BY id",
                params![campaign_id],
                |row| Ok((row.get::<i64>(0)?, row.get::<String>(1)?)),
            )?;
            let mut out = Vec::new();
            for (item_id, json) in rows {
                out.push(PendingPrompt { item_id, prompt: serde_json::from_str(&json)? });
            }
            Ok(out)
        })
    }

    /// Fills the answers of a prompt-only item; refuses an item that already has them.
    pub fn set_answers(&self, item_id: i64, answers: [Answer; 2]) -> Result<()> {
        self.write(move |conn| {
            validate_answers(&answers)?;
            let [first, second] = answers;
            let changed = conn.execute(
                "UPDATE items SET model_1 = ?2, answer_1 = ?3, model_2 = ?4, answer_2 = ?5
                 WHERE id = ?1 AND answer_1 IS NULL",
                params![item_id, first.model, first.text, second.model, second.text],
            )?;
            if changed == 0 {
                let exists: bool = conn.query_row(
                    "SELECT EXISTS (SELECT 1 FROM items WHERE id = ?1)",
                    params![item_id],
                    |r| r.get(0),
                )?;
                return Err(if exists {
                    AppError::Conflict(format!("item {item_id} already has answers"))
                } else {
                    AppError::not_found("item", item_id)
                });
            }
            Ok(())
        })
    }
}

pub(crate) fn add_items(conn: &Db, campaign_id: i64, items: &[NewItem]) -> Result<ItemsAdded> {
    let overlap = campaign(conn, campaign_id)?.overlap;
    let now = now_ms();
    let mut added = ItemsAdded {
        item_ids: Vec::with_capacity(items.len()),
        ready: 0,
        pending: 0,
    };
    for item in items {
        validate(item)?;
        let prompt_json = serde_json::to_string(&item.prompt)?;
        let (m1, a1, m2, a2) = match &item.answers {
            Some([first, second]) => {
                added.ready += 1;
                (
                    Some(&first.model),
                    Some(&first.text),
                    Some(&second.model),
                    Some(&second.text),
                )
            }
            None => {
                added.pending += 1;
                (None, None, None, None)
            }
        };
        let item_id = conn.insert(
            "INSERT INTO items (campaign_id, external_id, prompt_json, model_1, answer_1, model_2, answer_2,
                                overlap, created_at, gold)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
            campaign_id,
            item.external_id,
            prompt_json,
            m1,
            a1,
            m2,
            a2,
            overlap,
            now,
            item.gold.map(Outcome::as_str)
            ],
        )?;
        added.item_ids.push(item_id);
    }
    Ok(added)
}
