//! Turning live votes into TRL rows with provenance: preference pairs (`prompt` /
//! `chosen` / `rejected`) or KTO's unpaired `prompt` / `completion` / `label`. Rows are
//! JSON maps so any table writer (JSONL, Parquet) can take them.
//!
//! Left out before anything is built: votes of annotators who withdrew consent (never
//! live, see `store::reports`) and of annotators below their campaign's gold accuracy.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::db::Db;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{AppError, Result};
use crate::stats::inter_annotator::strict_majority;
use crate::store::reports::{answered_items, live_votes};
use crate::store::review::{below_gold_threshold, gold_scores};
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
    /// Keep them in the pairs file (for losses that use ties), `chosen`/`rejected` in the
    /// uploaded order and `outcome` saying `tie` or `both_bad`. Pairs format only.
    Keep,
}

/// The table an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// TRL preference pairs: `prompt`, `chosen`, `rejected`.
    #[default]
    Pairs,
    /// TRL unpaired (KTO): `prompt`, `completion`, `label`. A preference gives a
    /// desirable and an undesirable row, "both bad" two undesirable ones; ties carry no
    /// label and follow the tie policy (dropped, or to the ties file).
    Kto,
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
    /// Rows written to the main file (preference pairs, or KTO rows).
    pub pairs: usize,
    /// Rows (votes or majority items) whose outcome was a tie.
    pub ties: usize,
    /// Rows whose outcome was "both bad".
    pub both_bad: usize,
    /// Items with no strict majority (majority aggregation only).
    pub no_majority: usize,
    /// Tie and both-bad rows left out by [`TiePolicy::Drop`].
    pub dropped: usize,
    /// Live votes left out because their annotator is below the gold threshold.
    pub excluded_low_gold: usize,
}

/// Who and what an export stands on, for its manifest: enough to find every vote again
/// (`tiller lineage --check-consent`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    /// Ids of the votes the rows were built from.
    pub vote_ids: Vec<i64>,
    pub annotators: Vec<AnnotatorProvenance>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnnotatorProvenance {
    pub pseudonym: String,
    /// Live votes of theirs in scope (used or, if excluded, left out).
    pub votes: usize,
    pub gold_answered: i64,
    pub gold_correct: i64,
    pub gold_accuracy: Option<f64>,
    /// Left out for a gold accuracy below the campaign's threshold.
    pub excluded: bool,
}

/// The rows of an export, before they are written anywhere.
#[derive(Debug, Clone, Default)]
pub struct ExportRows {
    pub pairs: Vec<Row>,
    /// Tie and both-bad rows (empty under [`TiePolicy::Drop`]).
    pub ties: Vec<Row>,
    pub counts: ExportCounts,
    pub provenance: Provenance,
}

/// Builds the rows of one campaign (or of all campaigns) from one consistent snapshot.
pub(crate) fn build_rows(
    conn: &Db,
    campaign_id: Option<i64>,
    format: ExportFormat,
    ties: TiePolicy,
    aggregation: Aggregation,
) -> Result<ExportRows> {
    if format == ExportFormat::Kto && ties == TiePolicy::Keep {
        return Err(AppError::field(
            "ties",
            "`keep` needs the pairs format; a KTO row needs a label, which a tie does not give",
        ));
    }
    // A read transaction pins one snapshot: items and votes cannot drift apart.
    let (items, all_votes, scores, excluded) = conn.snapshot(|snapshot| {
        Ok((
            answered_items(snapshot, campaign_id)?,
            live_votes(snapshot, campaign_id)?,
            gold_scores(snapshot, campaign_id)?,
            below_gold_threshold(snapshot, campaign_id)?,
        ))
    })?;

    let mut out = ExportRows::default();
    let (votes, left_out): (Vec<VoteRecord>, Vec<VoteRecord>) = all_votes
        .into_iter()
        .partition(|v| !excluded.contains_key(&v.annotator_id));
    out.counts.excluded_low_gold = left_out.len();
    out.provenance = provenance_of(&votes, &left_out, &scores, &excluded);

    let mut by_item: BTreeMap<i64, Vec<&VoteRecord>> = BTreeMap::new();
    for vote in &votes {
        by_item.entry(vote.item_id).or_default().push(vote);
    }
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
                    push(&mut out, item, vote.outcome, row, format, ties);
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
                push(&mut out, item, outcome, row, format, ties);
            }
        }
    }
    Ok(out)
}

fn provenance_of(
    used: &[VoteRecord],
    left_out: &[VoteRecord],
    scores: &BTreeMap<i64, crate::store::GoldScore>,
    excluded: &BTreeMap<i64, crate::store::GoldScore>,
) -> Provenance {
    let mut counts: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for vote in used.iter().chain(left_out) {
        *counts
            .entry((vote.pseudonym.clone(), vote.annotator_id))
            .or_default() += 1;
    }
    let ids: BTreeSet<i64> = used.iter().map(|v| v.vote_id).collect();
    Provenance {
        vote_ids: ids.into_iter().collect(),
        annotators: counts
            .into_iter()
            .map(|((pseudonym, id), votes)| {
                let score = scores.get(&id);
                AnnotatorProvenance {
                    pseudonym,
                    votes,
                    gold_answered: score.map_or(0, |s| s.answered),
                    gold_correct: score.map_or(0, |s| s.correct),
                    gold_accuracy: score.and_then(|s| s.accuracy),
                    excluded: excluded.contains_key(&id),
                }
            })
            .collect(),
    }
}

fn push(
    out: &mut ExportRows,
    item: &ItemRecord,
    outcome: Outcome,
    row: Row,
    format: ExportFormat,
    ties: TiePolicy,
) {
    match outcome {
        Outcome::Tie => out.counts.ties += 1,
        Outcome::BothBad => out.counts.both_bad += 1,
        Outcome::First | Outcome::Second => {}
    }
    let first = (&item.model_1, &item.answer_1);
    let second = (&item.model_2, &item.answer_2);
    match (format, outcome) {
        (ExportFormat::Pairs, Outcome::First) => push_pair(out, item, row, first, second),
        (ExportFormat::Pairs, Outcome::Second) => push_pair(out, item, row, second, first),
        (ExportFormat::Kto, Outcome::First) => {
            push_kto(out, item, row, &[(first, true), (second, false)])
        }
        (ExportFormat::Kto, Outcome::Second) => {
            push_kto(out, item, row, &[(second, true), (first, false)])
        }
        (ExportFormat::Kto, Outcome::BothBad) => {
            push_kto(out, item, row, &[(first, false), (second, false)])
        }
        (ExportFormat::Pairs, Outcome::Tie | Outcome::BothBad)
        | (ExportFormat::Kto, Outcome::Tie) => match ties {
            TiePolicy::Drop => out.counts.dropped += 1,
            TiePolicy::Keep => push_pair(out, item, row, first, second),
            TiePolicy::Separate => {
                let mut row = row;
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
        },
    }
}

fn push_pair(
    out: &mut ExportRows,
    item: &ItemRecord,
    mut row: Row,
    chosen: (&String, &String),
    rejected: (&String, &String),
) {
    row.insert("chosen".into(), completion(&item.prompt, chosen.1));
    row.insert("rejected".into(), completion(&item.prompt, rejected.1));
    row.insert("chosen_model".into(), json!(chosen.0));
    row.insert("rejected_model".into(), json!(rejected.0));
    out.counts.pairs += 1;
    out.pairs.push(row);
}

/// KTO rows go to the main file; `pairs` counts rows there.
fn push_kto(
    out: &mut ExportRows,
    item: &ItemRecord,
    row: Row,
    labelled: &[((&String, &String), bool)],
) {
    for ((model, text), label) in labelled {
        let mut row = row.clone();
        row.insert("completion".into(), completion(&item.prompt, text));
        row.insert("label".into(), json!(label));
        row.insert("model".into(), json!(model));
        out.counts.pairs += 1;
        out.pairs.push(row);
    }
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
    let version = votes.iter().filter_map(|v| v.consent_version).max();
    row.insert("consent_version".into(), json!(version));
    let consent_at = votes.iter().filter_map(|v| v.consent_at).max();
    row.insert("consent_at".into(), json!(consent_at.map(rfc3339)));
    row
}
