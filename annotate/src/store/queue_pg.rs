//! The PostgreSQL fast path of `queue.rs`: `next` and a vote as one statement each.
//!
//! **Why.** On PostgreSQL every statement is a round trip to the server, made inside the
//! write lock that all servers' batches take one at a time (`store` module docs), so
//! round trips, not SQL, bounded throughput: a `next` was seven statements and a vote
//! three, plus a savepoint each. Here each is one call of a PL/pgSQL function, and the
//! call takes no savepoint (`Db::atomic_row`): the functions check before they write
//! and report a refusal in their result instead of raising, so a call applies in full
//! or not at all. Being whole in one statement, the API's calls are [`Atomic`]
//! requests that the writer pipelines with the rest of their batch
//! (`Store::next_with_progress`, `Store::vote` below). SQLite has no stored functions,
//! and its statements are function calls anyway, so it keeps the plain Rust path of
//! `queue.rs`.
//!
//! **One text per query.** The functions' bodies are assembled from `queue.rs`'s own
//! query constants, their `?N` bound to the functions' variables, so both backends run
//! the same SQL; only the control flow is written twice (here in PL/pgSQL). The store
//! tests run against both backends and hold the two to the same behaviour.
//!
//! The functions are created at start when missing, under the write lock (`schema_pg`):
//! they are code, not schema. Their names carry [`VERSION`]: bump it with any change,
//! so that servers of different builds on one database each find their own (and a
//! store opened by a user who may not create functions works once they exist).

use std::time::Duration;

use super::assignment::AssignmentState;
use super::db::{named_placeholders, params, Db, Row, Value};
use super::queue::{
    lease_cutoff, log_expired, refusal, shown, taken_by_others, Assignment, Progress, VoteInput,
    VoteReceipt, ASSIGN, AVAILABLE, EXPIRE_LEASES, FREE_ITEM, INSERT_VOTE, MARK_VOTED,
    OWN_ASSIGNMENT, PENDING, PROGRESS_COUNTS, RETAKE, SHOWN, TOUCH, WITHDRAWN,
};
use super::writer::Atomic;
use super::Strength;
use super::{queue, Backend, Store};
use crate::error::{AppError, Result};
use crate::util::now_ms;

/// The version in the functions' names (`tiller_next_v2`, `tiller_vote_v2`).
const VERSION: u32 = 2;

/// `sql` with its `?N` bound to `names`; the texts are this crate's constants, so a
/// mismatch is a bug caught by every PostgreSQL test.
fn bind(sql: &str, names: &[&str]) -> Result<String> {
    named_placeholders(sql, names).ok_or_else(|| {
        AppError::Unsupported(format!(
            "a store query has more parameters than its PL/pgSQL binding names: {sql}"
        ))
    })
}

/// Creates this build's functions unless the database has them already.
pub(super) fn install(db: &Db) -> Result<()> {
    let found: i64 = db.query_row(
        "SELECT COUNT(*) FROM pg_proc WHERE proname IN (?1, ?2)",
        params![
            format!("tiller_next_v{VERSION}"),
            format!("tiller_vote_v{VERSION}")
        ],
        |row| row.get(0),
    )?;
    if found == 2 {
        return Ok(());
    }
    db.batch(&functions()?)
}

/// The `CREATE OR REPLACE FUNCTION` statements of the fast path.
fn functions() -> Result<String> {
    let next = format!(
        r#"
CREATE OR REPLACE FUNCTION tiller_next_v{VERSION}(
    p_annotator BIGINT, p_campaign BIGINT, p_cutoff BIGINT, p_now BIGINT, p_swapped BOOLEAN,
    OUT o_outcome TEXT, OUT o_withdrawn_at BIGINT, OUT o_expired BIGINT,
    OUT o_assignment BIGINT, OUT o_item BIGINT, OUT o_prompt TEXT, OUT o_answer_1 TEXT,
    OUT o_answer_2 TEXT, OUT o_swapped BOOLEAN,
    OUT o_done BIGINT, OUT o_skipped BIGINT, OUT o_pending BIGINT, OUT o_available BIGINT)
LANGUAGE plpgsql AS $fn$
BEGIN
    {withdrawn} INTO o_withdrawn_at;
    IF NOT FOUND THEN o_outcome := 'missing'; RETURN; END IF;
    IF o_withdrawn_at IS NOT NULL THEN o_outcome := 'withdrawn'; RETURN; END IF;
    {expire};
    GET DIAGNOSTICS o_expired = ROW_COUNT;
    {pending} INTO o_assignment;
    IF FOUND THEN
        {touch};
    ELSE
        {free_item} INTO o_item;
        IF FOUND THEN
            {assign} RETURNING id INTO o_assignment;
        END IF;
    END IF;
    IF o_assignment IS NULL THEN
        o_outcome := 'none';
    ELSE
        o_outcome := 'assigned';
        {shown} INTO o_assignment, o_item, o_prompt, o_answer_1, o_answer_2, o_swapped;
    END IF;
    {counts} INTO o_done, o_skipped, o_pending;
    {available} INTO o_available;
END $fn$;
"#,
        withdrawn = bind(WITHDRAWN, &["p_annotator"])?,
        expire = bind(EXPIRE_LEASES, &["p_cutoff", "p_annotator"])?,
        pending = bind(PENDING, &["p_annotator"])?,
        touch = bind(TOUCH, &["o_assignment", "p_now"])?,
        free_item = bind(FREE_ITEM, &["p_campaign", "p_annotator"])?,
        assign = bind(ASSIGN, &["o_item", "p_annotator", "p_swapped", "p_now"])?,
        shown = bind(SHOWN, &["o_assignment"])?,
        counts = bind(PROGRESS_COUNTS, &["p_annotator"])?,
        available = bind(AVAILABLE, &["p_annotator"])?,
    );
    // A pending assignment takes the vote; so does one whose lease ran out, if its item
    // still has a free slot or is an arena battle, which keeps its author's slot
    // (schema migration 4; `AssignmentState::parse` names the states). Where SQLite
    // lets the schema's CHECK refuse the retake, this checks first: a failing statement
    // here would abort the whole batch.
    let vote = format!(
        r#"
CREATE OR REPLACE FUNCTION tiller_vote_v{VERSION}(
    p_annotator BIGINT, p_assignment BIGINT, p_choice TEXT, p_choice_swapped TEXT,
    p_shown TEXT, p_strength TEXT, p_rationale TEXT, p_now BIGINT,
    OUT o_outcome TEXT, OUT o_status TEXT, OUT o_released TEXT, OUT o_item BIGINT,
    OUT o_vote BIGINT)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_swapped BOOLEAN;
    v_choice TEXT;
BEGIN
    {own} INTO o_item, v_swapped, o_status, o_released;
    IF NOT FOUND THEN o_outcome := 'missing'; RETURN; END IF;
    IF o_status = 'skipped' AND o_released = 'lease' THEN
        IF NOT EXISTS (SELECT 1 FROM items WHERE id = o_item
                       AND (assigned < overlap OR author_id IS NOT NULL)) THEN
            o_outcome := 'taken'; RETURN;
        END IF;
        {retake};
    ELSIF o_status <> 'pending' OR o_released IS NOT NULL THEN
        o_outcome := 'refused'; RETURN;
    END IF;
    v_choice := CASE WHEN v_swapped THEN p_choice_swapped ELSE p_choice END;
    {insert} RETURNING id INTO o_vote;
    {mark};
    o_outcome := 'voted';
END $fn$;
"#,
        own = bind(OWN_ASSIGNMENT, &["p_assignment", "p_annotator"])?,
        retake = bind(RETAKE, &["p_assignment", "p_now"])?,
        insert = bind(
            INSERT_VOTE,
            &[
                "p_assignment",
                "o_item",
                "p_annotator",
                "v_choice",
                "p_shown",
                "p_strength",
                "p_rationale",
                "p_now",
            ],
        )?,
        mark = bind(MARK_VOTED, &["p_assignment"])?,
    );
    Ok(next + &vote)
}

/// `queue::next_with_progress` in one statement.
pub(super) fn next_with_progress(
    annotator_id: i64,
    campaign_id: i64,
    lease: Duration,
) -> Atomic<(Option<Assignment>, Progress)> {
    let sql = format!(
        "SELECT o_outcome, o_withdrawn_at, o_expired, o_assignment, o_item, o_prompt, o_answer_1,
                o_answer_2, o_swapped, o_done, o_skipped, o_pending, o_available
         FROM tiller_next_v{VERSION}(?1, ?2, ?3, ?4, ?5)"
    );
    let (cutoff, now, swapped) = (lease_cutoff(lease), now_ms(), rand::random::<bool>());
    let params = Value::owned(params![annotator_id, campaign_id, cutoff, now, swapped]);
    let read = move |row: &Row| {
        let outcome: String = row.get(0)?;
        match outcome.as_str() {
            "missing" => return Err(AppError::not_found("annotator", annotator_id)),
            "withdrawn" => return Err(super::consent::withdrawn_error(row.get(1)?)),
            _ => {}
        }
        log_expired(usize::try_from(row.get::<i64>(2)?).unwrap_or(0));
        let assignment = match outcome.as_str() {
            "assigned" => Some(shown(row, 3)?),
            "none" => None,
            other => return Err(unknown_outcome(other)),
        };
        let progress = Progress {
            done: row.get(9)?,
            skipped: row.get(10)?,
            remaining: row.get::<i64>(11)? + row.get::<i64>(12)?,
        };
        Ok((assignment, progress))
    };
    Atomic {
        sql,
        params,
        read: Box::new(read),
    }
}

/// `queue::vote` in one statement, after `queue::check_vote` checked the input.
pub(super) fn vote(
    annotator_id: i64,
    input: &VoteInput,
    rationale: Option<&str>,
) -> Atomic<VoteReceipt> {
    let sql = format!(
        "SELECT o_outcome, o_status, o_released, o_item, o_vote
         FROM tiller_vote_v{VERSION}(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    );
    let assignment_id = input.assignment_id;
    let choice = input.choice;
    let (first, second, shown_choice) = (
        choice.canonical(false),
        choice.canonical(true),
        choice.as_str(),
    );
    let (strength, now) = (input.strength.map(Strength::as_str), now_ms());
    let params = Value::owned(params![
        annotator_id,
        assignment_id,
        first,
        second,
        shown_choice,
        strength,
        rationale,
        now
    ]);
    let read = move |row: &Row| {
        let outcome: String = row.get(0)?;
        match outcome.as_str() {
            "voted" => Ok(VoteReceipt {
                vote_id: row.get(4)?,
                assignment_id,
                item_id: row.get(3)?,
            }),
            "missing" => Err(AppError::not_found("assignment", assignment_id)),
            "taken" => Err(taken_by_others(assignment_id)),
            "refused" => {
                let released: Option<String> = row.get(2)?;
                let state = AssignmentState::parse(&row.get::<String>(1)?, released.as_deref())?;
                Err(refusal(state, assignment_id).unwrap_or_else(|| unknown_outcome(&outcome)))
            }
            other => Err(unknown_outcome(other)),
        }
    };
    Atomic {
        sql,
        params,
        read: Box::new(read),
    }
}

/// `next` and a vote as the API runs them: on PostgreSQL as [`Atomic`] statements, which
/// the writer pipelines with the rest of their batch (one round trip for all of them
/// instead of one each); on SQLite as `queue.rs`'s plain calls.
impl Store {
    pub(crate) async fn next_with_progress(
        &self,
        annotator_id: i64,
        campaign_id: i64,
        lease: Duration,
    ) -> Result<(Option<Assignment>, Progress)> {
        match self.inner.backend {
            Backend::Postgres { .. } => {
                let call = next_with_progress(annotator_id, campaign_id, lease);
                self.inner.writer.run_atomic(call).await
            }
            Backend::Sqlite => {
                self.write_async(move |conn| {
                    queue::next_with_progress(conn, annotator_id, campaign_id, lease)
                })
                .await
            }
        }
    }

    pub(crate) async fn vote(&self, annotator_id: i64, input: VoteInput) -> Result<VoteReceipt> {
        match self.inner.backend {
            Backend::Postgres { .. } => {
                let call = vote(annotator_id, &input, queue::check_vote(&input)?);
                self.inner.writer.run_atomic(call).await
            }
            Backend::Sqlite => {
                self.write_async(move |conn| queue::vote(conn, annotator_id, &input))
                    .await
            }
        }
    }
}

fn unknown_outcome(outcome: &str) -> AppError {
    AppError::Unsupported(format!(
        "the database's queue function answered {outcome:?}; is a newer server's function installed?"
    ))
}
