//! Turning live votes into TRL preference rows (`prompt` / `chosen` / `rejected`) with
//! provenance. Rows are JSON maps so any table writer (JSONL, Parquet) can take them.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::Result;
use crate::stats::agreement::strict_majority;
use crate::store::reports::{answered_items, live_votes};
use crate::store::{ItemRecord, Outcome, Prompt, VoteRecord};
use crate::util::rfc3339;

/// A JSON object, one row of an exported table.
pub type Row = Map<String, Value>;

/// What to do with votes that prefer neither answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TiePolicy {
    /// Leave ties and both-bad votes out (they are counted in the manifest).
    #[default]
    Drop,
    /// Write them to a separate file beside the pairs.
    Separate,
}

/// How votes from several annotators on one item become rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// One row per item, from the strict majority outcome; items without one are dropped.
    #[default]
    Majority,
    /// Every vote is its own row.
    EveryVote,
}

/// Counts reported in the manifest.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ExportCounts {
    /// Live votes considered.
    pub votes: usize,
    /// Items with at least one live vote.
    pub items: usize,
    /// Preference rows written.
    pub pairs: usize,
    /// Rows (votes or majority items) whose outcome was a tie.
    pub ties: usize,
    /// Rows whose outcome was "both bad".
    pub both_bad: usize,
    /// Items with no strict majority (majority aggregation only).
    pub no_majority: usize,
    /// Tie and both-bad rows left out by [`TiePolicy::Drop`].
    pub dropped: usize,
}

/// The rows of an export, before they are written anywhere.
#[derive(Debug, Clone, Default)]
pub struct ExportRows {
    pub pairs: Vec<Row>,
    /// Tie and both-bad rows (empty under [`TiePolicy::Drop`]).
    pub ties: Vec<Row>,
    pub counts: ExportCounts,
}

/// Builds the rows of one campaign (or of all campaigns) from one consistent snapshot.
pub(crate) fn build_rows(
    conn: &Connection,
    campaign_id: Option<i64>,
    ties: TiePolicy,
    aggregation: Aggregation,
) -> Result<ExportRows> {
    // A read transaction pins one snapshot: items and votes cannot drift apart.
    let snapshot = conn.unchecked_transaction()?;
    let items = answered_items(&snapshot, campaign_id)?;
    let votes = live_votes(&snapshot, campaign_id)?;
    snapshot.finish()?;

    let mut by_item: BTreeMap<i64, Vec<&VoteRecord>> = BTreeMap::new();
    for vote in &votes {
        by_item.entry(vote.item_id).or_default().push(vote);
    }
    let mut out = ExportRows::default();
    out.counts.votes = votes.len();
    out.counts.items = by_item.len();
    for (item_id, item_votes) in by_item {
        let Some(item) = items.get(&item_id) else {
            continue;
        };
        match aggregation {
            Aggregation::EveryVote => {
                for vote in item_votes {
                    let row = provenance(item, &[vote], vote.outcome);
                    push(&mut out, item, vote.outcome, row, ties);
                }
            }
            Aggregation::Majority => {
                let Some(outcome) = strict_majority(item_votes.iter().map(|v| v.outcome)) else {
                    out.counts.no_majority += 1;
                    continue;
                };
                let agreeing: Vec<&VoteRecord> = item_votes
                    .iter()
                    .copied()
                    .filter(|v| v.outcome == outcome)
                    .collect();
                let mut row = provenance(item, &agreeing, outcome);
                row.insert("votes".into(), json!(item_votes.len()));
                row.insert("agreeing".into(), json!(agreeing.len()));
                push(&mut out, item, outcome, row, ties);
            }
        }
    }
    Ok(out)
}

fn push(out: &mut ExportRows, item: &ItemRecord, outcome: Outcome, mut row: Row, ties: TiePolicy) {
    let (chosen, rejected) = match outcome {
        Outcome::First => (
            (&item.model_1, &item.answer_1),
            (&item.model_2, &item.answer_2),
        ),
        Outcome::Second => (
            (&item.model_2, &item.answer_2),
            (&item.model_1, &item.answer_1),
        ),
        Outcome::Tie | Outcome::BothBad => {
            if outcome == Outcome::Tie {
                out.counts.ties += 1;
            } else {
                out.counts.both_bad += 1;
            }
            match ties {
                TiePolicy::Drop => out.counts.dropped += 1,
                TiePolicy::Separate => {
                    row.insert(
                        "completion_1".into(),
                        completion(&item.prompt, &item.answer_1),
                    );
                    row.insert(
                        "completion_2".into(),
                        completion(&item.prompt, &item.answer_2),
                    );
                    row.insert("model_1".into(), json!(item.model_1));
                    row.insert("model_2".into(), json!(item.model_2));
                    out.ties.push(row);
                }
            }
            return;
        }
    };
    row.insert("chosen".into(), completion(&item.prompt, chosen.1));
    row.insert("rejected".into(), completion(&item.prompt, rejected.1));
    row.insert("chosen_model".into(), json!(chosen.0));
    row.insert("rejected_model".into(), json!(rejected.0));
    out.counts.pairs += 1;
    out.pairs.push(row);
}

/// An answer in the prompt's format: a string for a text prompt, an assistant message
/// list for a conversation (TRL's conversational preference format).
fn completion(prompt: &Prompt, text: &str) -> Value {
    match prompt {
        Prompt::Text(_) => json!(text),
        Prompt::Messages(_) => json!([{ "role": "assistant", "content": text }]),
    }
}

/// The prompt and provenance columns shared by all rows. `votes` are the votes the row
/// stands for (one, or the agreeing majority); several annotators are joined with commas
/// so every column stays a scalar (friendlier to Parquet).
fn provenance(item: &ItemRecord, votes: &[&VoteRecord], outcome: Outcome) -> Row {
    let mut row = Row::new();
    let prompt = match &item.prompt {
        Prompt::Text(text) => json!(text),
        Prompt::Messages(messages) => json!(messages),
    };
    row.insert("prompt".into(), prompt);
    row.insert("outcome".into(), json!(outcome));
    row.insert("item_id".into(), json!(item.item_id));
    row.insert("external_id".into(), json!(item.external_id));
    row.insert("campaign".into(), json!(item.campaign));
    let annotators: Vec<&str> = votes.iter().map(|v| v.pseudonym.as_str()).collect();
    row.insert("annotator".into(), json!(annotators.join(",")));
    let latest = votes.iter().map(|v| v.created_at).max().unwrap_or_default();
    row.insert("voted_at".into(), json!(rfc3339(latest)));
    let strength = strict_majority(votes.iter().filter_map(|v| v.strength.as_deref()))
        .or_else(|| votes.iter().find_map(|v| v.strength.as_deref()));
    row.insert("strength".into(), json!(strength));
    let rationales: Vec<&str> = votes
        .iter()
        .filter_map(|v| v.rationale.as_deref())
        .collect();
    row.insert(
        "rationale".into(),
        if rationales.is_empty() {
            Value::Null
        } else {
            json!(rationales.join("\n---\n"))
        },
    );
    let consented = votes.iter().all(|v| v.consent_at.is_some());
    row.insert("consent".into(), json!(consented));
    let consent_at = votes.iter().filter_map(|v| v.consent_at).max();
    row.insert("consent_at".into(), json!(consent_at.map(rfc3339)));
    row
}
