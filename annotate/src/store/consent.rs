//! Consent: versioned statements, acceptances, and withdrawals.
//!
//! A campaign's consent statement has a version (1, 2, ...) and a sha256; each
//! acceptance stores both, and an annotator works only while they accepted the current
//! version, so changing the text asks everyone again. A withdrawal (by the annotator, or
//! recorded by an admin) is final for that link: their assignments go back to the queue,
//! their votes leave every export, and a `withdrawals` row keeps when it happened and
//! which votes it covered. Under [`OnWithdrawal::Erase`] the votes themselves are deleted
//! and the name replaced; the record of the withdrawal stays.

use super::db::{params, Db};
use serde::Serialize;

use super::campaigns::{campaign, Campaign, OnWithdrawal};
use super::Store;
use crate::error::{AppError, Result};
use crate::util::{now_ms, rfc3339, sha256_hex};

/// Who recorded a withdrawal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordedBy {
    Annotator,
    Admin,
}

impl RecordedBy {
    fn as_str(self) -> &'static str {
        match self {
            RecordedBy::Annotator => "annotator",
            RecordedBy::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Result<RecordedBy> {
        match text {
            "annotator" => Ok(RecordedBy::Annotator),
            "admin" => Ok(RecordedBy::Admin),
            other => Err(AppError::Unsupported(format!(
                "unknown withdrawal recorder {other:?} in database"
            ))),
        }
    }
}

/// The consent statement an annotator accepted (or is asked to accept).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConsentStatement {
    pub version: i64,
    pub sha256: String,
    /// When it was accepted; `None` for a statement not accepted yet.
    pub accepted_at: Option<i64>,
}

/// The record of a withdrawal: when, by whom, what it covered.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Withdrawal {
    pub annotator_id: i64,
    pub pseudonym: String,
    pub withdrawn_at: i64,
    pub recorded_by: RecordedBy,
    /// The votes were deleted (the campaign's policy said "erase").
    pub erased: bool,
    /// How many votes it covered (undone ones included).
    pub votes: usize,
    pub first_vote_at: Option<i64>,
    pub last_vote_at: Option<i64>,
}

/// A withdrawn annotator among those a manifest lists, and which listed votes are theirs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WithdrawnMatch {
    pub pseudonym: String,
    /// RFC 3339 time of the withdrawal.
    pub withdrawn_at: String,
    /// The listed vote ids the withdrawal covers.
    pub vote_ids: Vec<i64>,
}

/// Opens the store at `db` (which must exist) and says which of the listed votes and
/// pseudonyms (as an export manifest's `provenance` lists them) have been withdrawn.
pub fn check_consent(
    db: &std::path::Path,
    vote_ids: &[i64],
    pseudonyms: &[String],
) -> Result<Vec<WithdrawnMatch>> {
    if !crate::store::exists(db) {
        return Err(AppError::not_found("database", db.display()));
    }
    Store::open(db)?.withdrawn_among(vote_ids, pseudonyms)
}

impl Store {
    /// Records a withdrawal for `annotator_id` (idempotent: a second call returns the
    /// first record).
    pub fn withdraw(&self, annotator_id: i64, by: RecordedBy) -> Result<Withdrawal> {
        let record = self.write(move |conn| withdraw(conn, annotator_id, by))?;
        self.forget_identities();
        Ok(record)
    }

    /// Replaces a campaign's consent statement; a changed text gets the next version and
    /// every annotator is asked again.
    pub fn set_consent_text(&self, campaign_id: i64, text: String) -> Result<Campaign> {
        let campaign = self.write(move |conn| set_consent_text(conn, campaign_id, &text))?;
        self.forget_identities();
        Ok(campaign)
    }

    /// Which of the listed votes and annotator pseudonyms have been withdrawn since.
    pub fn withdrawn_among(
        &self,
        vote_ids: &[i64],
        pseudonyms: &[String],
    ) -> Result<Vec<WithdrawnMatch>> {
        let (vote_ids, pseudonyms) = (vote_ids.to_vec(), pseudonyms.to_vec());
        self.read(move |conn| withdrawn_among(conn, &vote_ids, &pseudonyms))
    }
}

/// Records that the annotator accepted the current statement. `version`, when given, is
/// the one the page showed: if the text changed since, nothing is recorded (409).
/// Accepting the version already accepted keeps the first time.
pub(crate) fn accept(
    conn: &Db,
    annotator_id: i64,
    version: Option<i64>,
) -> Result<ConsentStatement> {
    let (campaign_id, withdrawn_at, accepted_version, accepted_at): (
        i64,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    ) = conn.query_row(
        "SELECT campaign_id, withdrawn_at, consent_version, consent_at FROM annotators WHERE id = ?1",
        params![annotator_id],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
    )?;
    if let Some(at) = withdrawn_at {
        return Err(withdrawn_error(at));
    }
    let current = campaign(conn, campaign_id)?;
    if version.is_some_and(|v| v != current.consent_version) {
        return Err(AppError::Conflict(format!(
            "the consent statement changed (now version {}); read it again before accepting",
            current.consent_version
        )));
    }
    if accepted_version == Some(current.consent_version) {
        return Ok(ConsentStatement {
            version: current.consent_version,
            sha256: current.consent_sha256,
            accepted_at,
        });
    }
    let now = now_ms();
    conn.execute(
        "UPDATE annotators SET consent_at = ?2, consent_version = ?3, consent_sha256 = ?4 WHERE id = ?1",
        params![
            annotator_id,
            now,
            current.consent_version,
            current.consent_sha256
        ],
    )?;
    conn.execute(
        "INSERT INTO consent_acceptances (annotator_id, version, sha256, accepted_at) VALUES (?1, ?2, ?3, ?4)",
        params![annotator_id, current.consent_version, current.consent_sha256, now],
    )?;
    Ok(ConsentStatement {
        version: current.consent_version,
        sha256: current.consent_sha256,
        accepted_at: Some(now),
    })
}

/// The refusal for a link whose holder withdrew.
pub(crate) fn withdrawn_error(at: i64) -> AppError {
    AppError::Forbidden(format!(
        "consent was withdrawn at {}; this link can no longer take part",
        rfc3339(at)
    ))
}

pub(crate) fn set_consent_text(conn: &Db, campaign_id: i64, text: &str) -> Result<Campaign> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AppError::field("text", "is empty"));
    }
    let current = campaign(conn, campaign_id)?;
    if current.consent == text {
        return Ok(current);
    }
    let version = current.consent_version + 1;
    conn.execute(
        "INSERT INTO consent_versions (campaign_id, version, text, sha256, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![campaign_id, version, text, sha256_hex(text.as_bytes()), now_ms()],
    )?;
    conn.execute(
        "UPDATE campaigns SET consent = ?2, consent_version = ?3 WHERE id = ?1",
        params![campaign_id, text, version],
    )?;
    campaign(conn, campaign_id)
}

pub(crate) fn withdraw(conn: &Db, annotator_id: i64, by: RecordedBy) -> Result<Withdrawal> {
    if let Some(existing) = withdrawal(conn, annotator_id)? {
        return Ok(existing);
    }
    let (campaign_id, pseudonym): (i64, String) = conn
        .query_opt(
            "SELECT campaign_id, pseudonym FROM annotators WHERE id = ?1",
            params![annotator_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?
        .ok_or_else(|| AppError::not_found("annotator", annotator_id))?;
    let policy = campaign(conn, campaign_id)?.policy;
    let erase = policy.on_withdrawal == OnWithdrawal::Erase;
    let votes: Vec<(i64, i64)> = conn.query_map(
        "SELECT id, created_at FROM votes WHERE annotator_id = ?1 ORDER BY id",
        params![annotator_id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let ids: Vec<i64> = votes.iter().map(|(id, _)| *id).collect();
    let now = now_ms();
    conn.execute(
        "INSERT INTO withdrawals (annotator_id, pseudonym, withdrawn_at, recorded_by, erased, vote_ids,
                                  first_vote_at, last_vote_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            annotator_id,
            pseudonym,
            now,
            by.as_str(),
            erase,
            serde_json::to_string(&ids)?.as_str(),
            votes.iter().map(|(_, at)| *at).min(),
            votes.iter().map(|(_, at)| *at).max(),
        ],
    )?;
    // Their slots go back to the queue, so the items can still reach their overlap;
    // arena prompts they wrote go nowhere (`arena::withdraw_battles`).
    super::arena::withdraw_battles(conn, annotator_id, erase)?;
    conn.execute(
        &format!(
            "UPDATE assignments SET status = 'skipped', released = 'withdrawn'
             WHERE annotator_id = ?1 AND status != 'skipped' AND {}",
            super::arena::AUTHORED_ITEMS
        ),
        params![annotator_id],
    )?;
    if erase {
        conn.execute(
            "DELETE FROM votes WHERE annotator_id = ?1",
            params![annotator_id],
        )?;
        conn.execute(
            "UPDATE annotators SET name = 'withdrawn ' || pseudonym WHERE id = ?1",
            params![annotator_id],
        )?;
    }
    conn.execute(
        "UPDATE annotators SET withdrawn_at = ?2 WHERE id = ?1",
        params![annotator_id, now],
    )?;
    withdrawal(conn, annotator_id)?
        .ok_or_else(|| AppError::Background("the withdrawal was not recorded".into()))
}

/// The withdrawal record of one annotator, if any.
pub(crate) fn withdrawal(conn: &Db, annotator_id: i64) -> Result<Option<Withdrawal>> {
    let row = conn.query_opt(
        "SELECT pseudonym, withdrawn_at, recorded_by, erased, vote_ids, first_vote_at, last_vote_at
             FROM withdrawals WHERE annotator_id = ?1",
        params![annotator_id],
        |row| {
            Ok((
                row.get::<String>(0)?,
                row.get::<i64>(1)?,
                row.get::<String>(2)?,
                row.get::<bool>(3)?,
                row.get::<String>(4)?,
                row.get::<Option<i64>>(5)?,
                row.get::<Option<i64>>(6)?,
            ))
        },
    )?;
    let Some((pseudonym, withdrawn_at, by, erased, ids, first_vote_at, last_vote_at)) = row else {
        return Ok(None);
    };
    let ids: Vec<i64> = serde_json::from_str(&ids)?;
    Ok(Some(Withdrawal {
        annotator_id,
        pseudonym,
        withdrawn_at,
        recorded_by: RecordedBy::parse(&by)?,
        erased,
        votes: ids.len(),
        first_vote_at,
        last_vote_at,
    }))
}

pub(crate) fn withdrawn_among(
    conn: &Db,
    vote_ids: &[i64],
    pseudonyms: &[String],
) -> Result<Vec<WithdrawnMatch>> {
    let rows = conn.query_map(
        "SELECT pseudonym, withdrawn_at, vote_ids FROM withdrawals ORDER BY id",
        params![],
        |row| {
            Ok((
                row.get::<String>(0)?,
                row.get::<i64>(1)?,
                row.get::<String>(2)?,
            ))
        },
    )?;
    let listed: std::collections::HashSet<i64> = vote_ids.iter().copied().collect();
    let mut out = Vec::new();
    for row in rows {
        let (pseudonym, at, ids) = row;
        let ids: Vec<i64> = serde_json::from_str(&ids)?;
        let covered: Vec<i64> = ids.into_iter().filter(|id| listed.contains(id)).collect();
        if !covered.is_empty() || pseudonyms.contains(&pseudonym) {
            out.push(WithdrawnMatch {
                pseudonym,
                withdrawn_at: rfc3339(at),
                vote_ids: covered,
            });
        }
    }
    Ok(out)
}
