//! An annotator's queue: get the next item, vote, skip, undo.
//!
//! Every function here runs inside the writer's transaction, so the checks and the
//! writes they guard are atomic; the schema's constraints back them up.
//!
//! **Leases.** A pending assignment is held for a lease (default [`DEFAULT_LEASE`]) from
//! the last time its annotator was shown it; `next` first releases expired ones, so an
//! annotator who walks away does not hold items forever. A released item is never
//! offered to its old holder again, but a vote they still send on it is taken if the
//! item has a free slot.

use std::time::Duration;

use super::db::{params, Db, Row};
use serde::{Deserialize, Serialize};

pub use super::assignment::AssignmentState;
use super::items::Prompt;
use crate::error::{AppError, Result};
use crate::util::now_ms;

/// The longest rationale accepted, in characters.
pub const MAX_RATIONALE_CHARS: usize = 5000;

/// How long a pending item stays with an annotator who does not act on it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30 * 60);

// The queries of `next` and a vote, named because the PostgreSQL fast path
// (`queue_pg.rs`) runs the same texts inside its functions.
pub(super) const WITHDRAWN: &str = "SELECT withdrawn_at FROM annotators WHERE id = ?1";
pub(super) const EXPIRE_LEASES: &str =
    "UPDATE assignments SET status = 'skipped', released = 'lease'
     WHERE status = 'pending' AND touched_at < ?1 AND annotator_id != ?2";
pub(super) const PENDING: &str =
    "SELECT id FROM assignments WHERE annotator_id = ?1 AND status = 'pending' ORDER BY id LIMIT 1";
pub(super) const TOUCH: &str = "UPDATE assignments SET touched_at = ?2 WHERE id = ?1";
// Fill items that others started first (assigned DESC): completed overlaps are what
// agreement statistics and majority export need.
pub(super) const FREE_ITEM: &str = "SELECT i.id FROM items i
     WHERE i.campaign_id = ?1 AND i.answer_1 IS NOT NULL AND i.assigned < i.overlap
       AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.item_id = i.id AND a.annotator_id = ?2)
     ORDER BY i.assigned DESC, i.id LIMIT 1";
pub(super) const ASSIGN: &str =
    "INSERT INTO assignments (item_id, annotator_id, swapped, status, assigned_at, touched_at)
     VALUES (?1, ?2, ?3, 'pending', ?4, ?4)";
pub(super) const SHOWN: &str = "SELECT a.id, i.id, i.prompt_json, i.answer_1, i.answer_2, a.swapped
     FROM assignments a JOIN items i ON i.id = a.item_id WHERE a.id = ?1";
pub(super) const OWN_ASSIGNMENT: &str =
    "SELECT item_id, swapped, status, released FROM assignments WHERE id = ?1 AND annotator_id = ?2";
pub(super) const RETAKE: &str =
    "UPDATE assignments SET status = 'pending', released = NULL, touched_at = ?2 WHERE id = ?1";
pub(super) const INSERT_VOTE: &str =
    "INSERT INTO votes (assignment_id, item_id, annotator_id, choice, shown_choice, strength, rationale, created_at,
                        consent_version)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, (SELECT consent_version FROM annotators WHERE id = ?3))";
pub(super) const MARK_VOTED: &str = "UPDATE assignments SET status = 'voted' WHERE id = ?1";
// Kept by triggers (schema migration 4), so this is O(1) however much they did.
pub(super) const PROGRESS_COUNTS: &str =
    "SELECT voted_count, skipped_count, pending_count FROM annotators WHERE id = ?1";
// Both counters are kept by triggers, so this is O(1) however big the campaign.
pub(super) const AVAILABLE: &str =
    "SELECT c.open_items - n.open_held FROM annotators n JOIN campaigns c ON c.id = n.campaign_id
     WHERE n.id = ?1";

/// What the annotator chose, in terms of what they saw: `A` is the left answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Choice {
    A,
    B,
    #[serde(rename = "tie")]
    Tie,
    #[serde(rename = "both_bad")]
    BothBad,
}

impl Choice {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Choice::A => "A",
            Choice::B => "B",
            Choice::Tie => "tie",
            Choice::BothBad => "both_bad",
        }
    }

    /// The choice in terms of the stored answers, undoing the per-assignment swap.
    pub(super) fn canonical(self, swapped: bool) -> &'static str {
        match (self, swapped) {
            (Choice::A, false) | (Choice::B, true) => "first",
            (Choice::B, false) | (Choice::A, true) => "second",
            (Choice::Tie, _) => "tie",
            (Choice::BothBad, _) => "both_bad",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strength {
    Slight,
    Clear,
    Strong,
}

impl Strength {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Strength::Slight => "slight",
            Strength::Clear => "clear",
            Strength::Strong => "strong",
        }
    }
}

/// A vote as sent by the annotator's page (`POST /api/me/votes`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteInput {
    pub assignment_id: i64,
    pub choice: Choice,
    /// Required when `choice` is `A` or `B`.
    #[serde(default)]
    pub strength: Option<Strength>,
    #[serde(default)]
    pub rationale: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VoteReceipt {
    pub vote_id: i64,
    pub assignment_id: i64,
    pub item_id: i64,
}

/// An annotator's progress. `remaining` counts their pending item plus the items they
/// could still be given; it shrinks when others fill an item's overlap first.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Progress {
    pub done: i64,
    pub skipped: i64,
    pub remaining: i64,
}

/// The item an annotator works on, as shown: answers already in display order and
/// without model tags (annotators judge blind).
#[derive(Debug, Clone, Serialize)]
pub struct Assignment {
    pub assignment_id: i64,
    pub item_id: i64,
    pub prompt: Prompt,
    /// The answer shown on the left, labelled A.
    pub answer_a: String,
    /// The answer shown on the right, labelled B.
    pub answer_b: String,
}

/// Releases every pending assignment not shown for `lease`, except those of
/// `keep_annotator` (who is back, so theirs just restart); returns how many.
pub(crate) fn expire_leases(conn: &Db, lease: Duration, keep_annotator: i64) -> Result<usize> {
    conn.execute(EXPIRE_LEASES, params![lease_cutoff(lease), keep_annotator])
}

/// Pending assignments last shown before this time (ms) have run out of `lease`.
pub(super) fn lease_cutoff(lease: Duration) -> i64 {
    now_ms().saturating_sub(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}

/// [`next_assignment`] and then the annotator's [`progress`], as `POST /api/me/next`
/// answers them on SQLite; on PostgreSQL the API takes `Store::next_with_progress`, the
/// same in one statement (`queue_pg.rs`).
pub(crate) fn next_with_progress(
    conn: &Db,
    annotator_id: i64,
    campaign_id: i64,
    lease: Duration,
) -> Result<(Option<Assignment>, Progress)> {
    Ok((
        next_assignment(conn, annotator_id, campaign_id, lease)?,
        progress(conn, annotator_id)?,
    ))
}

/// The annotator's current item: their oldest pending assignment, or a new one; its
/// lease restarts. Other annotators' expired leases are released first. `None` when
/// nothing is left for them.
pub(crate) fn next_assignment(
    conn: &Db,
    annotator_id: i64,
    campaign_id: i64,
    lease: Duration,
) -> Result<Option<Assignment>> {
    // Checked here, in the write transaction, not only from the identity another server
    // process may still have cached: a withdrawn annotator is given nothing new.
    let withdrawn: Option<i64> =
        conn.query_row(WITHDRAWN, params![annotator_id], |row| row.get(0))?;
    if let Some(at) = withdrawn {
        return Err(super::consent::withdrawn_error(at));
    }
    log_expired(expire_leases(conn, lease, annotator_id)?);
    let pending: Option<i64> = conn.query_opt(PENDING, params![annotator_id], |row| row.get(0))?;
    let assignment_id = match pending {
        Some(id) => {
            conn.execute(TOUCH, params![id, now_ms()])?;
            id
        }
        None => {
            let item: Option<i64> =
                conn.query_opt(FREE_ITEM, params![campaign_id, annotator_id], |row| {
                    row.get(0)
                })?;
            let Some(item_id) = item else { return Ok(None) };
            let swapped = rand::random::<bool>();
            conn.insert(ASSIGN, params![item_id, annotator_id, swapped, now_ms()])?
        }
    };
    conn.query_row(SHOWN, params![assignment_id], |row| shown(row, 0))
        .map(Some)
}

pub(super) fn log_expired(expired: usize) {
    if expired > 0 {
        tracing::info!(expired, "released assignments whose lease ran out");
    }
}

/// The assignment as shown, from `row`'s columns `first..first + 6`: assignment id,
/// item id, prompt JSON, the two stored answers, whether they are swapped.
pub(super) fn shown(row: &Row, first: usize) -> Result<Assignment> {
    let (first_answer, second_answer): (String, String) =
        (row.get(first + 3)?, row.get(first + 4)?);
    let (answer_a, answer_b) = if row.get::<bool>(first + 5)? {
        (second_answer, first_answer)
    } else {
        (first_answer, second_answer)
    };
    Ok(Assignment {
        assignment_id: row.get(first)?,
        item_id: row.get(first + 1)?,
        prompt: serde_json::from_str(&row.get::<String>(first + 2)?)?,
        answer_a,
        answer_b,
    })
}

/// Looks up the annotator's own assignment and its state; someone else's is "not found"
/// so that ids of other annotators' work leak nothing.
fn own_assignment(
    conn: &Db,
    annotator_id: i64,
    assignment_id: i64,
) -> Result<(i64, bool, AssignmentState)> {
    let (item_id, swapped, status, released): (i64, bool, String, Option<String>) = conn
        .query_opt(
            OWN_ASSIGNMENT,
            params![assignment_id, annotator_id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )?
        .ok_or_else(|| AppError::not_found("assignment", assignment_id))?;
    Ok((
        item_id,
        swapped,
        AssignmentState::parse(&status, released.as_deref())?,
    ))
}

/// Takes an expired assignment back for its old holder, if its item has a free slot
/// (the schema's `CHECK (assigned <= overlap)` refuses otherwise).
fn retake(conn: &Db, assignment_id: i64) -> Result<()> {
    match conn.execute(RETAKE, params![assignment_id, now_ms()]) {
        Ok(_) => Ok(()),
        Err(err) if err.is_constraint_violation() => Err(taken_by_others(assignment_id)),
        Err(err) => Err(err),
    }
}

pub(super) fn taken_by_others(assignment_id: i64) -> AppError {
    AppError::Conflict(format!(
        "assignment {assignment_id} expired (its lease ran out) and its item has since been \
         given to someone else; ask for the next item"
    ))
}

/// Why a vote on an assignment in `state` is refused (`None`: it is not).
pub(super) fn refusal(state: AssignmentState, assignment_id: i64) -> Option<AppError> {
    let why = match state {
        AssignmentState::Pending | AssignmentState::Expired => return None,
        AssignmentState::Voted => "already has a vote; undo it to vote again",
        AssignmentState::Skipped => "was skipped",
        AssignmentState::Withdrawn => "was released when consent was withdrawn",
    };
    Some(AppError::Conflict(format!(
        "assignment {assignment_id} {why}"
    )))
}

/// A vote on one of the annotator's assignments, as SQLite runs it; on PostgreSQL the API
/// takes `Store::vote`, the same in one statement (`queue_pg.rs`).
pub(crate) fn vote(conn: &Db, annotator_id: i64, input: &VoteInput) -> Result<VoteReceipt> {
    let rationale = check_vote(input)?;
    let (item_id, swapped, state) = own_assignment(conn, annotator_id, input.assignment_id)?;
    if let Some(refused) = refusal(state, input.assignment_id) {
        return Err(refused);
    }
    if state == AssignmentState::Expired {
        retake(conn, input.assignment_id)?;
    }
    let vote_id = conn.insert(
        INSERT_VOTE,
        params![
            input.assignment_id,
            item_id,
            annotator_id,
            input.choice.canonical(swapped),
            input.choice.as_str(),
            input.strength.map(Strength::as_str),
            rationale,
            now_ms()
        ],
    )?;
    conn.execute(MARK_VOTED, params![input.assignment_id])?;
    Ok(VoteReceipt {
        vote_id,
        assignment_id: input.assignment_id,
        item_id,
    })
}

/// A vote's checks that need no database: a strength with A or B, the rationale's length
/// and characters. Returns the rationale trimmed, `None` when empty.
pub(super) fn check_vote(input: &VoteInput) -> Result<Option<&str>> {
    if matches!(input.choice, Choice::A | Choice::B) && input.strength.is_none() {
        return Err(AppError::field(
            "strength",
            "is required when `choice` is A or B (slight, clear or strong)",
        ));
    }
    let rationale = input
        .rationale
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if rationale.is_some_and(|r| r.chars().count() > MAX_RATIONALE_CHARS) {
        return Err(AppError::field(
            "rationale",
            format!("is longer than {MAX_RATIONALE_CHARS} characters"),
        ));
    }
    // PostgreSQL cannot store U+0000 in text; refused on both backends alike.
    if rationale.is_some_and(|r| r.contains('\0')) {
        return Err(AppError::field(
            "rationale",
            "contains a NUL character (U+0000)",
        ));
    }
    Ok(rationale)
}

/// Gives a pending item back: its slot opens for another annotator, never for this one.
pub(crate) fn skip(conn: &Db, annotator_id: i64, assignment_id: i64) -> Result<()> {
    let (_, _, state) = own_assignment(conn, annotator_id, assignment_id)?;
    if state != AssignmentState::Pending {
        return Err(AppError::Conflict(format!(
            "assignment {assignment_id} is {}, only a pending one can be skipped",
            state.name()
        )));
    }
    conn.execute(
        "UPDATE assignments SET status = 'skipped' WHERE id = ?1",
        params![assignment_id],
    )?;
    Ok(())
}

/// Withdraws the annotator's most recent live vote; its item becomes pending again
/// (and, being their oldest pending one, is what `next` shows). The vote row is kept,
/// marked undone, for the audit trail.
pub(crate) fn undo(conn: &Db, annotator_id: i64) -> Result<VoteReceipt> {
    let last: Option<(i64, i64, i64)> = conn.query_opt(
        "SELECT id, assignment_id, item_id FROM votes WHERE annotator_id = ?1 AND undone_at IS NULL
         ORDER BY id DESC LIMIT 1",
        params![annotator_id],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    let (vote_id, assignment_id, item_id) =
        last.ok_or_else(|| AppError::Conflict("there is no vote to undo".into()))?;
    conn.execute(
        "UPDATE votes SET undone_at = ?2 WHERE id = ?1",
        params![vote_id, now_ms()],
    )?;
    conn.execute(
        "UPDATE assignments SET status = 'pending', touched_at = ?2 WHERE id = ?1",
        params![assignment_id, now_ms()],
    )?;
    Ok(VoteReceipt {
        vote_id,
        assignment_id,
        item_id,
    })
}

pub(crate) fn progress(conn: &Db, annotator_id: i64) -> Result<Progress> {
    let (done, skipped, pending): (i64, i64, i64) =
        conn.query_row(PROGRESS_COUNTS, params![annotator_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    let available: i64 = conn.query_row(AVAILABLE, params![annotator_id], |row| row.get(0))?;
    Ok(Progress {
        done,
        skipped,
        remaining: pending + available,
    })
}
