//! Read-side queries for the admin: progress, and the live votes that agreement,
//! the leaderboard and the export are computed from. Votes of annotators who withdrew
//! consent are never live: nothing computed or exported from here contains them.

use std::collections::HashMap;

use super::db::{params, Db};
use serde::{Deserialize, Serialize};

use super::items::Prompt;
use super::Store;
use crate::error::{AppError, Result};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AnnotatorProgress {
    pub annotator_id: i64,
    pub name: String,
    pub pseudonym: String,
    pub consent_at: Option<i64>,
    /// The consent version they last accepted (compare with the campaign's).
    pub consent_version: Option<i64>,
    pub withdrawn_at: Option<i64>,
    pub done: i64,
    pub skipped: i64,
    pub pending: i64,
    /// Live votes on gold items, how many matched the known answer, and the ratio.
    pub gold_answered: i64,
    pub gold_correct: i64,
    pub gold_accuracy: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ItemProgress {
    pub item_id: i64,
    pub external_id: Option<String>,
    /// Whether the item has its two answers.
    pub ready: bool,
    pub overlap: u32,
    /// Annotators holding or having finished it (skips excluded).
    pub assigned: i64,
    pub votes: i64,
    /// The known answer of a gold item.
    pub gold: Option<Outcome>,
}

/// The four outcomes of a comparison, in terms of the stored answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    First,
    Second,
    Tie,
    BothBad,
}

impl Outcome {
    /// The stored spelling (also the JSON one).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::First => "first",
            Outcome::Second => "second",
            Outcome::Tie => "tie",
            Outcome::BothBad => "both_bad",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Outcome> {
        Ok(match text {
            "first" => Outcome::First,
            "second" => Outcome::Second,
            "tie" => Outcome::Tie,
            "both_bad" => Outcome::BothBad,
            other => {
                return Err(AppError::Unsupported(format!(
                    "unknown vote choice {other:?} in database"
                )))
            }
        })
    }
}

/// One live (not undone) vote with what provenance needs.
#[derive(Debug, Clone, PartialEq)]
pub struct VoteRecord {
    pub vote_id: i64,
    pub item_id: i64,
    pub annotator_id: i64,
    pub pseudonym: String,
    pub outcome: Outcome,
    pub strength: Option<String>,
    pub rationale: Option<String>,
    pub created_at: i64,
    pub consent_at: Option<i64>,
    /// The consent version the vote was cast under.
    pub consent_version: Option<i64>,
}

/// An item with its answers, for export and the leaderboard.
#[derive(Debug, Clone)]
pub struct ItemRecord {
    pub item_id: i64,
    pub campaign: String,
    pub external_id: Option<String>,
    pub prompt: Prompt,
    pub model_1: String,
    pub answer_1: String,
    pub model_2: String,
    pub answer_2: String,
}

impl Store {
    /// Per-annotator progress of a campaign.
    pub fn annotator_progress(&self, campaign_id: i64) -> Result<Vec<AnnotatorProgress>> {
        self.read(|conn| annotator_progress(conn, campaign_id))
    }

    /// Per-item progress of a campaign.
    pub fn item_progress(&self, campaign_id: i64) -> Result<Vec<ItemProgress>> {
        self.read(|conn| item_progress(conn, campaign_id))
    }
}

pub(crate) fn annotator_progress(conn: &Db, campaign_id: i64) -> Result<Vec<AnnotatorProgress>> {
    super::campaigns::campaign(conn, campaign_id)?;
    let rows = conn.query_map(
        "SELECT n.id, n.name, n.pseudonym, n.consent_at, n.consent_version, n.withdrawn_at,
                COUNT(*) FILTER (WHERE a.status = 'voted'), COUNT(*) FILTER (WHERE a.status = 'skipped'),
                COUNT(*) FILTER (WHERE a.status = 'pending')
         FROM annotators n LEFT JOIN assignments a ON a.annotator_id = n.id
         WHERE n.campaign_id = ?1 GROUP BY n.id ORDER BY n.id",
        params![campaign_id],
        |row| {
        Ok(AnnotatorProgress {
            annotator_id: row.get(0)?,
            name: row.get(1)?,
            pseudonym: row.get(2)?,
            consent_at: row.get(3)?,
            consent_version: row.get(4)?,
            withdrawn_at: row.get(5)?,
            done: row.get(6)?,
            skipped: row.get(7)?,
            pending: row.get(8)?,
            gold_answered: 0,
            gold_correct: 0,
            gold_accuracy: None,
        })
        },
    )?;
    let mut out: Vec<AnnotatorProgress> = rows;
    let scores = super::review::gold_scores(conn, Some(campaign_id))?;
    for row in &mut out {
        if let Some(score) = scores.get(&row.annotator_id) {
            row.gold_answered = score.answered;
            row.gold_correct = score.correct;
            row.gold_accuracy = score.accuracy;
        }
    }
    Ok(out)
}

pub(crate) fn item_progress(conn: &Db, campaign_id: i64) -> Result<Vec<ItemProgress>> {
    super::campaigns::campaign(conn, campaign_id)?;
    let rows = conn.query_map(
        "SELECT i.id, i.external_id, i.answer_1 IS NOT NULL, i.overlap, i.assigned,
                (SELECT COUNT(*) FROM votes v JOIN annotators n ON n.id = v.annotator_id
                 WHERE v.item_id = i.id AND v.undone_at IS NULL AND n.withdrawn_at IS NULL),
                i.gold
         FROM items i WHERE i.campaign_id = ?1 ORDER BY i.id",
        params![campaign_id],
        |row| {
            Ok((
                ItemProgress {
                    item_id: row.get(0)?,
                    external_id: row.get(1)?,
                    ready: row.get(2)?,
                    overlap: row.get(3)?,
                    assigned: row.get(4)?,
                    votes: row.get(5)?,
                    gold: None,
                },
                row.get::<Option<String>>(6)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for (mut item, gold) in rows {
        item.gold = gold.as_deref().map(Outcome::parse).transpose()?;
        out.push(item);
    }
    Ok(out)
}

/// Annotator id → name, for one campaign.
pub(crate) fn annotator_names(
    conn: &Db,
    campaign_id: i64,
) -> Result<std::collections::BTreeMap<i64, String>> {
    let rows = conn.query_map(
        "SELECT id, name FROM annotators WHERE campaign_id = ?1",
        params![campaign_id],
        |row| Ok((row.get::<i64>(0)?, row.get::<String>(1)?)),
    )?;
    Ok(rows.into_iter().collect())
}

/// Live votes of one campaign (or all campaigns), ordered by item then vote id.
pub(crate) fn live_votes(conn: &Db, campaign_id: Option<i64>) -> Result<Vec<VoteRecord>> {
    let rows = conn.query_map(
        "SELECT v.id, v.item_id, v.annotator_id, n.pseudonym, v.choice, v.strength, v.rationale,
                v.created_at, n.consent_at, v.consent_version
         FROM votes v JOIN annotators n ON n.id = v.annotator_id
         WHERE v.undone_at IS NULL AND n.withdrawn_at IS NULL
           AND (CAST(?1 AS BIGINT) IS NULL OR n.campaign_id = ?1)
         ORDER BY v.item_id, v.id",
        params![campaign_id],
        |row| {
            Ok((
                VoteRecord {
                    vote_id: row.get(0)?,
                    item_id: row.get(1)?,
                    annotator_id: row.get(2)?,
                    pseudonym: row.get(3)?,
                    outcome: Outcome::First,
                    strength: row.get(5)?,
                    rationale: row.get(6)?,
                    created_at: row.get(7)?,
                    consent_at: row.get(8)?,
                    consent_version: row.get(9)?,
                },
                row.get::<String>(4)?,
            ))
        },
    )?;
    let mut votes = Vec::new();
    for (mut vote, choice) in rows {
        vote.outcome = Outcome::parse(&choice)?;
        votes.push(vote);
    }
    Ok(votes)
}

/// Items that have answers, keyed by id, for one campaign or all.
pub(crate) fn answered_items(
    conn: &Db,
    campaign_id: Option<i64>,
) -> Result<HashMap<i64, ItemRecord>> {
    let rows = conn.query_map(
        "SELECT i.id, c.name, i.external_id, i.prompt_json, i.model_1, i.answer_1, i.model_2, i.answer_2
         FROM items i JOIN campaigns c ON c.id = i.campaign_id
         WHERE i.answer_1 IS NOT NULL AND (CAST(?1 AS BIGINT) IS NULL OR i.campaign_id = ?1)",
        params![campaign_id],
        |row| {
        Ok((
            row.get::<i64>(0)?,
            row.get::<String>(1)?,
            row.get::<Option<String>>(2)?,
            row.get::<String>(3)?,
            [
                row.get::<String>(4)?,
                row.get::<String>(5)?,
                row.get::<String>(6)?,
                row.get::<String>(7)?,
            ],
        ))
        },
    )?;
    let mut items = HashMap::new();
    for row in rows {
        let (item_id, campaign, external_id, prompt_json, [model_1, answer_1, model_2, answer_2]) =
            row;
        let prompt = serde_json::from_str(&prompt_json)?;
        items.insert(
            item_id,
            ItemRecord {
                item_id,
                campaign,
                external_id,
                prompt,
                model_1,
                answer_1,
                model_2,
                answer_2,
            },
        );
    }
    Ok(items)
}
