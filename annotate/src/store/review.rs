//! What an admin does to check and improve vote quality: gold items (items with a known
//! answer, hidden among the others) score each annotator, and disputed items can be
//! re-queued for more votes.

use std::collections::BTreeMap;

use super::db::{params, Db};
use serde::{Deserialize, Serialize};

use super::reports::Outcome;
use super::Store;
use crate::error::{AppError, Result};

/// Marks (or, with `answer: null`, unmarks) an item as gold. The answer is in terms of
/// the uploaded order: `first` is `answers[0]`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldMark {
    pub item_id: i64,
    pub answer: Option<Outcome>,
}

/// One annotator's record on gold items (live votes only).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GoldScore {
    pub annotator_id: i64,
    pub pseudonym: String,
    pub answered: i64,
    pub correct: i64,
    /// `correct / answered`; `None` before any gold item was answered.
    pub accuracy: Option<f64>,
}

/// The most extra votes one re-queue may ask for.
pub const MAX_REQUEUE: u32 = 100;

impl Store {
    /// Sets or clears the known answer of items of `campaign_id`; all or nothing.
    pub fn set_gold(&self, campaign_id: i64, marks: Vec<GoldMark>) -> Result<usize> {
        self.write(move |conn| set_gold(conn, campaign_id, &marks))
    }

    /// Asks for `extra` more votes on an item; returns its new overlap.
    pub fn requeue(&self, campaign_id: i64, item_id: i64, extra: u32) -> Result<u32> {
        self.write(move |conn| requeue(conn, campaign_id, item_id, extra))
    }

    /// Gold scores of a campaign's annotators, by annotator id.
    pub fn gold_scores(&self, campaign_id: i64) -> Result<BTreeMap<i64, GoldScore>> {
        self.read(|conn| gold_scores(conn, Some(campaign_id)))
    }
}

pub(crate) fn set_gold(conn: &Db, campaign_id: i64, marks: &[GoldMark]) -> Result<usize> {
    super::campaigns::campaign(conn, campaign_id)?;
    for (index, mark) in marks.iter().enumerate() {
        let changed = conn.execute(
            "UPDATE items SET gold = ?3 WHERE id = ?1 AND campaign_id = ?2",
            params![mark.item_id, campaign_id, mark.answer.map(Outcome::as_str)],
        )?;
        if changed == 0 {
            return Err(AppError::field(
                format!("items[{index}].item_id"),
                format!("item {} is not in campaign {campaign_id}", mark.item_id),
            ));
        }
    }
    Ok(marks.len())
}

pub(crate) fn requeue(conn: &Db, campaign_id: i64, item_id: i64, extra: u32) -> Result<u32> {
    if !(1..=MAX_REQUEUE).contains(&extra) {
        return Err(AppError::field(
            "extra",
            format!("must be between 1 and {MAX_REQUEUE}"),
        ));
    }
    let overlap: Option<u32> = conn.query_opt(
        "SELECT overlap FROM items WHERE id = ?1 AND campaign_id = ?2",
        params![item_id, campaign_id],
        |row| row.get(0),
    )?;
    let overlap = overlap.ok_or_else(|| AppError::not_found("item", item_id))?;
    let annotators: u32 = conn.query_row(
        "SELECT COUNT(*) FROM annotators WHERE campaign_id = ?1 AND withdrawn_at IS NULL",
        params![campaign_id],
        |row| row.get(0),
    )?;
    let wanted = overlap.saturating_add(extra);
    // Triggers on `overlap` reopen the item for every annotator who has not seen it.
    conn.execute(
        "UPDATE items SET overlap = ?2 WHERE id = ?1",
        params![item_id, wanted],
    )?;
    if wanted > annotators {
        tracing::warn!(
            item_id,
            wanted,
            annotators,
            "re-queued item wants more votes than the campaign has annotators"
        );
    }
    Ok(wanted)
}

/// Gold scores from live votes, for one campaign or all.
pub(crate) fn gold_scores(conn: &Db, campaign_id: Option<i64>) -> Result<BTreeMap<i64, GoldScore>> {
    let rows = conn.query_map(
        "SELECT n.id, n.pseudonym, COUNT(*), COUNT(*) FILTER (WHERE v.choice = i.gold)
         FROM votes v JOIN items i ON i.id = v.item_id JOIN annotators n ON n.id = v.annotator_id
         WHERE i.gold IS NOT NULL AND v.undone_at IS NULL AND n.withdrawn_at IS NULL
           AND (CAST(?1 AS BIGINT) IS NULL OR n.campaign_id = ?1)
         GROUP BY n.id",
        params![campaign_id],
        |row| {
            let answered: i64 = row.get(2)?;
            let correct: i64 = row.get(3)?;
            Ok(GoldScore {
                annotator_id: row.get(0)?,
                pseudonym: row.get(1)?,
                answered,
                correct,
                accuracy: (answered > 0).then(|| correct as f64 / answered as f64),
            })
        },
    )?;
    let mut out = BTreeMap::new();
    for score in rows {
        out.insert(score.annotator_id, score);
    }
    Ok(out)
}

/// Annotators a campaign's `min_gold_accuracy` leaves out of exports, by id.
pub(crate) fn below_gold_threshold(
    conn: &Db,
    campaign_id: Option<i64>,
) -> Result<BTreeMap<i64, GoldScore>> {
    let thresholds: BTreeMap<i64, f64> = conn
        .query_map(
            "SELECT n.id, c.min_gold_accuracy FROM annotators n JOIN campaigns c ON c.id = n.campaign_id
             WHERE c.min_gold_accuracy IS NOT NULL AND (CAST(?1 AS BIGINT) IS NULL OR c.id = ?1)",
            params![campaign_id],
            |row| Ok((row.get::<i64>(0)?, row.get::<f64>(1)?)),
        )?
        .into_iter()
        .collect();
    Ok(gold_scores(conn, campaign_id)?
        .into_iter()
        .filter(|(id, score)| {
            let threshold = thresholds.get(id);
            matches!((threshold, score.accuracy), (Some(min), Some(acc)) if acc < *min)
        })
        .collect())
}
