//! Arena campaigns (Chatbot Arena's protocol): the annotator writes a prompt, two models
//! drawn from the campaign's list answer it live behind "A" and "B", the annotator votes,
//! then sees who was who. This file is what the store keeps for that: the campaign's
//! [`ArenaConfig`] (endpoints, sampling and limits), and each finished battle as an
//! ordinary item (prompt + both answers + which model gave which) with a pending
//! assignment for its author, so votes, undo, export and the leaderboard work unchanged.
//! The model calls themselves are in `crate::arena`; nothing here waits on them.

use serde::Serialize;

pub use super::arena_config::{ArenaConfig, ArenaModel, CampaignKind};
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
