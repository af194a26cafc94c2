//! Arena campaigns (Chatbot Arena's protocol): the annotator writes a prompt, two models
//! drawn from the campaign's list answer it live behind "A" and "B", the annotator votes,
//! then sees who was who. This file is what the store keeps for that: the campaign's
//! [`ArenaConfig`] (endpoints, sampling and limits), and each finished battle as an
//! ordinary item (prompt + both answers + which model gave which) with a pending
//! assignment for its author, so votes, undo, export and the leaderboard work unchanged.
//! The model calls themselves are in `crate::arena`; nothing here waits on them.

use serde::{Deserialize, Serialize};

use super::db::{params, Db};
use super::items::{Answer, Prompt};
use super::queue::Assignment;
use crate::error::{AppError, Result};
use crate::util::now_ms;

/// The longest prompt an annotator may type, in characters.
pub const MAX_PROMPT_CHARS: usize = 4000;
/// Shown instead of a stored API key; sent back unchanged, it keeps the stored key.
pub const HIDDEN_KEY: &str = "***";
/// What an erased arena prompt reads (the campaign's policy said "erase" on withdrawal).
pub(crate) const ERASED_PROMPT: &str = "(erased: its author withdrew consent)";

/// What kind of items a campaign collects votes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CampaignKind {
    /// Items uploaded or filled by `tiller annotate generate`.
    Pairwise,
    /// Annotators' own prompts, answered live by two of the campaign's models.
    Arena,
}

impl CampaignKind {
    pub(crate) fn from_arena(is_arena: bool) -> CampaignKind {
        if is_arena {
            CampaignKind::Arena
        } else {
            CampaignKind::Pairwise
        }
    }
}

/// One OpenAI-compatible endpoint: `tiller serve`, vLLM, llama.cpp's server, Ollama.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArenaModel {
    /// The name votes, exports and the leaderboard use (unique in the campaign).
    pub name: String,
    /// `http://HOST:PORT` (a trailing `/v1` is accepted); the server posts to
    /// `{base_url}/v1/chat/completions`.
    pub base_url: String,
    /// The `model` field of the request (the endpoint's own name for it).
    pub model: String,
    /// Sent as `Authorization: Bearer ...`; never shown back (it reads [`HIDDEN_KEY`]).
    #[serde(default)]
    pub api_key: Option<String>,
}

/// An arena campaign's models and limits (`POST /api/admin/campaigns/{id}/arena`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArenaConfig {
    /// At least two; each battle draws two different ones at random.
    pub models: Vec<ArenaModel>,
    /// `max_tokens` of each request.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Sampling temperature; the endpoint's default when absent.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// An answer is cut (and its stream closed) at this many characters.
    #[serde(default = "default_max_answer_chars")]
    pub max_answer_chars: usize,
    /// Seconds to open the TCP connection.
    #[serde(default = "default_connect_secs")]
    pub connect_timeout_secs: f64,
    /// Seconds from the request to the first piece of answer text.
    #[serde(default = "default_first_token_secs")]
    pub first_token_timeout_secs: f64,
    /// Seconds for the whole answer.
    #[serde(default = "default_answer_secs")]
    pub answer_timeout_secs: f64,
}

fn default_max_tokens() -> u32 {
    512
}
fn default_max_answer_chars() -> usize {
    8000
}
fn default_connect_secs() -> f64 {
    5.0
}
fn default_first_token_secs() -> f64 {
    60.0
}
fn default_answer_secs() -> f64 {
    300.0
}

impl ArenaConfig {
    /// Refuses a config no battle could run with; the field is named (`models[1].base_url`).
    pub fn validate(&self) -> Result<()> {
        if self.models.len() < 2 {
            return Err(AppError::field(
                "models",
                format!(
                    "an arena needs at least 2 models (got {})",
                    self.models.len()
                ),
            ));
        }
        for (index, model) in self.models.iter().enumerate() {
            let field = |name: &str| format!("models[{index}].{name}");
            let chars = model.name.trim().chars().count();
            if chars == 0 || chars > super::campaigns::MAX_NAME_CHARS {
                return Err(AppError::field(
                    field("name"),
                    format!(
                        "must be 1 to {} characters (got {chars})",
                        super::campaigns::MAX_NAME_CHARS
                    ),
                ));
            }
            if self.models[..index]
                .iter()
                .any(|m| m.name.trim() == model.name.trim())
            {
                return Err(AppError::field(
                    field("name"),
                    format!("{:?} is already used by another model", model.name.trim()),
                ));
            }
            if model.model.trim().is_empty() {
                return Err(AppError::field(field("model"), "is empty"));
            }
            crate::arena::client::chat_url(&model.base_url)
                .map_err(|message| AppError::field(field("base_url"), message))?;
        }
        if !(1..=32_768).contains(&self.max_tokens) {
            return Err(AppError::field("max_tokens", "must be between 1 and 32768"));
        }
        if !(1..=100_000).contains(&self.max_answer_chars) {
            return Err(AppError::field(
                "max_answer_chars",
                "must be between 1 and 100000",
            ));
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(AppError::field("temperature", "must be between 0 and 2"));
            }
        }
        for (name, secs) in [
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("first_token_timeout_secs", self.first_token_timeout_secs),
            ("answer_timeout_secs", self.answer_timeout_secs),
        ] {
            // `contains` is false for NaN too.
            if !(0.001..=3600.0).contains(&secs) {
                return Err(AppError::field(
                    name,
                    "must be between 0.001 and 3600 seconds",
                ));
            }
        }
        Ok(())
    }

    /// The config as the admin page shows it: keys replaced by [`HIDDEN_KEY`].
    pub fn redacted(&self) -> ArenaConfig {
        let mut shown = self.clone();
        for model in &mut shown.models {
            if model.api_key.is_some() {
                model.api_key = Some(HIDDEN_KEY.into());
            }
        }
        shown
    }
}

impl super::Store {
    /// Makes a campaign an arena with `config` (or replaces its models); what
    /// `tiller annotate campaign --arena FILE` calls.
    pub fn set_arena(&self, campaign_id: i64, config: ArenaConfig) -> Result<ArenaConfig> {
        self.write(move |conn| set_config(conn, campaign_id, config))
    }
}

/// Which model answered on each side, shown after the vote.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Reveal {
    pub assignment_id: i64,
    pub model_a: String,
    pub model_b: String,
}

/// Makes `campaign_id` an arena with `config` (or replaces its config). A model sent
/// with the key [`HIDDEN_KEY`] keeps the key stored under its name.
pub(crate) fn set_config(
    conn: &Db,
    campaign_id: i64,
    mut config: ArenaConfig,
) -> Result<ArenaConfig> {
    super::campaigns::campaign(conn, campaign_id)?;
    let stored = config_of(conn, campaign_id)?;
    for (index, model) in config.models.iter_mut().enumerate() {
        model.name = model.name.trim().to_string();
        if model.api_key.as_deref() == Some(HIDDEN_KEY) {
            let kept = stored
                .as_ref()
                .and_then(|s| s.models.iter().find(|m| m.name == model.name))
                .and_then(|m| m.api_key.clone());
            if kept.is_none() {
                return Err(AppError::field(
                    format!("models[{index}].api_key"),
                    format!(
                        "`{HIDDEN_KEY}` keeps a stored key, but no key is stored for this model"
                    ),
                ));
            }
            model.api_key = kept;
        }
    }
    config.validate()?;
    conn.execute(
        "INSERT INTO arena_configs (campaign_id, config_json, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (campaign_id) DO UPDATE SET config_json = excluded.config_json,
                                                 updated_at = excluded.updated_at",
        params![campaign_id, serde_json::to_string(&config)?, now_ms()],
    )?;
    Ok(config)
}

/// The campaign's arena config, `None` for a pairwise campaign.
pub(crate) fn config_of(conn: &Db, campaign_id: i64) -> Result<Option<ArenaConfig>> {
    let json: Option<String> = conn.query_opt(
        "SELECT config_json FROM arena_configs WHERE campaign_id = ?1",
        params![campaign_id],
        |row| row.get(0),
    )?;
    json.map(|json| serde_json::from_str(&json).map_err(AppError::from))
        .transpose()
}

/// The annotator's pending assignment, if any: a battle waits for its vote before the
/// next prompt.
pub(crate) fn pending_assignment(conn: &Db, annotator_id: i64) -> Result<Option<i64>> {
    conn.query_opt(
        "SELECT id FROM assignments WHERE annotator_id = ?1 AND status = 'pending' ORDER BY id LIMIT 1",
        params![annotator_id],
        |row| row.get(0),
    )
}

fn waiting_for_vote(assignment_id: i64) -> AppError {
    AppError::Conflict(format!(
        "vote on your current comparison (assignment {assignment_id}) before writing a new prompt"
    ))
}

/// Refuses a new battle while one waits for its vote.
pub(crate) fn check_free(conn: &Db, annotator_id: i64) -> Result<()> {
    match pending_assignment(conn, annotator_id)? {
        Some(id) => Err(waiting_for_vote(id)),
        None => Ok(()),
    }
}

/// A finished battle: `answers[0]` and `[1]` are stored as the item's first and second
/// answers; `swapped` says the second was shown as A.
pub(crate) struct Battle {
    pub annotator_id: i64,
    pub campaign_id: i64,
    pub prompt: Prompt,
    pub answers: [Answer; 2],
    pub swapped: bool,
}

/// Stores a finished battle as an item (overlap 1: only its author judges it) with the
/// author's pending assignment, in one transaction; returns it as the page shows it.
pub(crate) fn record(conn: &Db, battle: Battle) -> Result<Assignment> {
    // Checked again here, in the write transaction: consent may have been withdrawn, or
    // another tab may have finished a battle, while the models answered.
    let withdrawn: Option<i64> = conn.query_row(
        "SELECT withdrawn_at FROM annotators WHERE id = ?1",
        params![battle.annotator_id],
        |row| row.get(0),
    )?;
    if let Some(at) = withdrawn {
        return Err(super::consent::withdrawn_error(at));
    }
    check_free(conn, battle.annotator_id)?;
    let [first, second] = battle.answers;
    let now = now_ms();
    let item_id = conn.insert(
        "INSERT INTO items (campaign_id, prompt_json, model_1, answer_1, model_2, answer_2, overlap,
                            created_at, author_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8)",
        params![
            battle.campaign_id,
            serde_json::to_string(&battle.prompt)?,
            first.model,
            first.text,
            second.model,
            second.text,
            now,
            battle.annotator_id
        ],
    )?;
    let assignment_id = conn.insert(
        "INSERT INTO assignments (item_id, annotator_id, swapped, status, assigned_at, touched_at)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
        params![item_id, battle.annotator_id, battle.swapped, now],
    )?;
    let (answer_a, answer_b) = if battle.swapped {
        (second.text, first.text)
    } else {
        (first.text, second.text)
    };
    Ok(Assignment {
        assignment_id,
        item_id,
        prompt: battle.prompt,
        answer_a,
        answer_b,
    })
}

/// Who answered A and B of the annotator's own assignment, once it has a live vote;
/// before that (or for someone else's) nothing is revealed.
pub(crate) fn reveal(conn: &Db, annotator_id: i64, assignment_id: i64) -> Result<Reveal> {
    let row: Option<(String, String, bool, bool)> = conn.query_opt(
        "SELECT i.model_1, i.model_2, a.swapped,
                EXISTS (SELECT 1 FROM votes v WHERE v.assignment_id = a.id AND v.undone_at IS NULL)
         FROM assignments a JOIN items i ON i.id = a.item_id
         WHERE a.id = ?1 AND a.annotator_id = ?2 AND i.model_1 IS NOT NULL",
        params![assignment_id, annotator_id],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
    )?;
    let (first, second, swapped, voted) =
        row.ok_or_else(|| AppError::not_found("assignment", assignment_id))?;
    if !voted {
        return Err(AppError::Conflict(format!(
            "assignment {assignment_id} has no vote yet: the models are revealed after the vote"
        )));
    }
    let (model_a, model_b) = if swapped {
        (second, first)
    } else {
        (first, second)
    };
    Ok(Reveal {
        assignment_id,
        model_a,
        model_b,
    })
}

/// On withdrawal, before the annotator's slots go back to the queue: the battles they
/// started are never handed to anyone else (their prompt is theirs). An unvoted one is
/// deleted (it holds no live vote); voted ones stay closed; with `erase` the prompts they
/// typed are replaced, as their votes are deleted. The caller then releases only
/// assignments on items they did not write (see [`AUTHORED_ITEMS`]).
pub(crate) fn withdraw_battles(conn: &Db, annotator_id: i64, erase: bool) -> Result<()> {
    let unvoted = "SELECT a.item_id FROM assignments a JOIN items i ON i.id = a.item_id
                   WHERE i.author_id = ?1 AND a.status = 'pending'";
    let items: Vec<i64> = conn.query_map(unvoted, params![annotator_id], |row| row.get(0))?;
    for item_id in items {
        // Only undone votes can be left on a pending assignment.
        conn.execute("DELETE FROM votes WHERE item_id = ?1", params![item_id])?;
        conn.execute(
            "DELETE FROM assignments WHERE item_id = ?1",
            params![item_id],
        )?;
        conn.execute("DELETE FROM items WHERE id = ?1", params![item_id])?;
    }
    if erase {
        conn.execute(
            "UPDATE items SET prompt_json = ?2 WHERE author_id = ?1",
            params![
                annotator_id,
                serde_json::to_string(&Prompt::Text(ERASED_PROMPT.into()))?
            ],
        )?;
    }
    Ok(())
}

/// SQL condition on `item_id`: not an item annotator `?1` wrote.
pub(crate) const AUTHORED_ITEMS: &str =
    "item_id NOT IN (SELECT id FROM items WHERE author_id = ?1)";

/// An annotator's prompt, trimmed: refused (a 400 naming `prompt`) when empty or longer
/// than [`MAX_PROMPT_CHARS`]. It stays text: the page renders it with `textContent`.
pub fn check_prompt(text: &str) -> Result<String> {
    let text = text.trim();
    let chars = text.chars().count();
    if chars == 0 {
        return Err(AppError::field("prompt", "is empty: write a prompt first"));
    }
    if chars > MAX_PROMPT_CHARS {
        return Err(AppError::field(
            "prompt",
            format!("is longer than {MAX_PROMPT_CHARS} characters (got {chars})"),
        ));
    }
    Ok(text.to_string())
}
