//! Campaigns, annotators and tokens (consent acceptance and withdrawal: `consent.rs`).
//!
//! Tokens are 256-bit random secrets shown once; the store keeps only their sha256, so a
//! leaked database does not leak working links.

use super::db::{params, Db};
use serde::{Deserialize, Serialize};

pub use super::arena::CampaignKind;
pub use super::policy::{CampaignPolicy, OnWithdrawal};
use super::Store;
use crate::error::{AppError, Result};
use crate::util::{new_token, now_ms, random_hex, sha256_hex};

/// The consent statement used when a campaign does not give its own.
pub const DEFAULT_CONSENT: &str = "I agree that my choices, the time of each choice and my \
optional comments are stored and may be used, under a pseudonym, to train and evaluate \
language models. I can stop at any time.";

/// The longest campaign or annotator name, in characters (not bytes).
pub const MAX_NAME_CHARS: usize = 200;

/// What it takes to create a campaign (also the body of `POST /api/admin/campaigns`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    pub name: String,
    #[serde(default)]
    pub guidelines: String,
    /// The consent statement annotators accept; [`DEFAULT_CONSENT`] when absent.
    #[serde(default)]
    pub consent: Option<String>,
    /// How many distinct annotators judge each item.
    pub overlap: u32,
    /// Names of the annotators to create links for.
    #[serde(default)]
    pub annotators: Vec<String>,
    #[serde(default)]
    pub policy: CampaignPolicy,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Campaign {
    pub id: i64,
    pub name: String,
    pub guidelines: String,
    /// The current consent statement; `consent_version` counts its revisions from 1.
    pub consent: String,
    pub consent_version: i64,
    pub consent_sha256: String,
    pub overlap: u32,
    pub created_at: i64,
    pub policy: CampaignPolicy,
    /// `pairwise` (uploaded or generated items) or `arena` (live answers, `arena.rs`).
    pub kind: CampaignKind,
}

/// A campaign with its counts, for listings.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignSummary {
    #[serde(flatten)]
    pub campaign: Campaign,
    pub annotators: i64,
    pub items: i64,
    /// Items that have both answers and can be assigned.
    pub ready_items: i64,
    /// Live votes, withdrawn annotators' left out.
    pub votes: i64,
}

/// A newly created annotator and their secret token (shown once, stored hashed).
#[derive(Debug, Clone, Serialize)]
pub struct AnnotatorLink {
    pub annotator_id: i64,
    pub name: String,
    pub token: String,
    /// Path of the annotator's page; prefix it with the server's base URL.
    pub path: String,
}

impl AnnotatorLink {
    fn new(annotator_id: i64, name: String, token: String) -> AnnotatorLink {
        // The token travels in the fragment: browsers never send it to the server or in
        // Referer headers, and it stays out of access logs.
        let path = format!("/annotate#token={token}");
        AnnotatorLink {
            annotator_id,
            name,
            token,
            path,
        }
    }

    /// The full link given the server's base URL, e.g. `http://127.0.0.1:8080`.
    pub fn url(&self, base: &str) -> String {
        format!("{}{}", base.trim_end_matches('/'), self.path)
    }
}

/// Who a bearer token belongs to.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    Admin,
    Annotator {
        id: i64,
        campaign_id: i64,
        name: String,
        /// When they last accepted a consent statement.
        consent_at: Option<i64>,
        /// They accepted the campaign's current statement and have not withdrawn.
        consent_current: bool,
        withdrawn_at: Option<i64>,
    },
}

impl Store {
    /// Creates a campaign and one link per annotator named in `new.annotators`.
    pub fn create_campaign(&self, new: NewCampaign) -> Result<(Campaign, Vec<AnnotatorLink>)> {
        self.write(move |conn| create_campaign(conn, &new))
    }

    /// Adds annotators to an existing campaign; returns their links (tokens shown once).
    pub fn add_annotators(
        &self,
        campaign_id: i64,
        names: Vec<String>,
    ) -> Result<Vec<AnnotatorLink>> {
        self.write(move |conn| add_annotators(conn, campaign_id, &names))
    }

    /// Every campaign with its counts, oldest first.
    pub fn campaigns(&self) -> Result<Vec<CampaignSummary>> {
        self.read(campaigns)
    }

    /// The campaign called `name`.
    pub fn campaign_by_name(&self, name: &str) -> Result<Campaign> {
        self.read(|conn| {
            let id: Option<i64> = conn.query_opt(
                "SELECT id FROM campaigns WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )?;
            campaign(
                conn,
                id.ok_or_else(|| AppError::not_found("campaign", name))?,
            )
        })
    }

    /// Replaces every admin token with a new one and returns it (shown once): the
    /// recovery for a lost admin link, and the way to revoke a leaked one. A running
    /// server stops accepting the old token within a few seconds (its identity cache).
    pub fn rotate_admin_token(&self) -> Result<String> {
        let token = self.write(|conn| {
            conn.execute("DELETE FROM admin_tokens", params![])?;
            let token = new_token();
            conn.execute(
                "INSERT INTO admin_tokens (token_hash, created_at) VALUES (?1, ?2)",
                params![sha256_hex(token.as_bytes()), now_ms()],
            )?;
            Ok(token)
        })?;
        self.forget_identities();
        Ok(token)
    }

    /// The id of the annotator called `name` in a campaign.
    pub fn annotator_id(&self, campaign_id: i64, name: &str) -> Result<i64> {
        self.read(|conn| {
            conn.query_opt(
                "SELECT id FROM annotators WHERE campaign_id = ?1 AND name = ?2",
                params![campaign_id, name.trim()],
                |row| row.get(0),
            )?
            .ok_or_else(|| AppError::not_found("annotator", name))
        })
    }

    /// Sets a campaign's withdrawal and gold policy.
    pub fn set_policy(&self, campaign_id: i64, policy: CampaignPolicy) -> Result<Campaign> {
        self.write(move |conn| set_policy(conn, campaign_id, &policy))
    }

    /// Creates a new admin token (older ones stay valid) and returns it; shown once.
    pub fn create_admin_token(&self) -> Result<String> {
        self.write(|conn| {
            let token = new_token();
            conn.execute(
                "INSERT INTO admin_tokens (token_hash, created_at) VALUES (?1, ?2)",
                params![sha256_hex(token.as_bytes()), now_ms()],
            )?;
            Ok(token)
        })
    }

    /// Whether any admin token exists (a fresh database has none).
    pub fn has_admin_token(&self) -> Result<bool> {
        self.read(|conn| {
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM admin_tokens)",
                params![],
                |row| row.get(0),
            )
        })
    }
}

pub(crate) fn create_campaign(
    conn: &Db,
    new: &NewCampaign,
) -> Result<(Campaign, Vec<AnnotatorLink>)> {
    let name = new.name.trim();
    check_name(name, "name")?;
    new.policy.validate()?;
    if !(1..=1000).contains(&new.overlap) {
        return Err(AppError::field("overlap", "must be between 1 and 1000"));
    }
    let taken: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM campaigns WHERE name = ?1)",
        params![name],
        |row| row.get(0),
    )?;
    if taken {
        return Err(AppError::Conflict(format!(
            "a campaign named {name:?} already exists"
        )));
    }
    let consent = new
        .consent
        .clone()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_CONSENT.into());
    let now = now_ms();
    let id = conn.insert(
        "INSERT INTO campaigns (name, guidelines, consent, overlap, created_at, on_withdrawal, min_gold_accuracy)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            name,
            new.guidelines,
            consent,
            new.overlap,
            now,
            new.policy.on_withdrawal.as_str(),
            new.policy.min_gold_accuracy
        ],
    )?;
    conn.execute(
        "INSERT INTO consent_versions (campaign_id, version, text, sha256, created_at) VALUES (?1, 1, ?2, ?3, ?4)",
        params![id, consent, sha256_hex(consent.as_bytes()), now],
    )?;
    let links = add_annotators(conn, id, &new.annotators)?;
    Ok((campaign(conn, id)?, links))
}

pub(crate) fn add_annotators(
    conn: &Db,
    campaign_id: i64,
    names: &[String],
) -> Result<Vec<AnnotatorLink>> {
    campaign(conn, campaign_id)?;
    let mut links = Vec::with_capacity(names.len());
    for (index, raw) in names.iter().enumerate() {
        let name = raw.trim();
        check_name(name, &format!("annotators[{index}]"))?;
        let taken: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM annotators WHERE campaign_id = ?1 AND name = ?2)",
            params![campaign_id, name],
            |row| row.get(0),
        )?;
        if taken {
            return Err(AppError::Conflict(format!(
                "annotator {name:?} already exists in this campaign"
            )));
        }
        let token = new_token();
        let annotator_id = conn.insert(
            "INSERT INTO annotators (campaign_id, name, token_hash, pseudonym, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                campaign_id,
                name,
                sha256_hex(token.as_bytes()),
                format!("ann-{}", random_hex(6)),
                now_ms()
            ],
        )?;
        links.push(AnnotatorLink::new(annotator_id, name.to_string(), token));
    }
    Ok(links)
}

/// Names are counted in characters, as the message says (60 emoji are 60, not 240).
fn check_name(name: &str, field: &str) -> Result<()> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(AppError::field(
            field,
            format!("must be 1 to {MAX_NAME_CHARS} characters (got {chars})"),
        ));
    }
    Ok(())
}

pub(crate) fn campaign(conn: &Db, id: i64) -> Result<Campaign> {
    let row = conn.query_opt(
            "SELECT c.id, c.name, c.guidelines, c.consent, c.overlap, c.created_at, c.consent_version,
                    v.sha256, c.on_withdrawal, c.min_gold_accuracy,
                    EXISTS (SELECT 1 FROM arena_configs a WHERE a.campaign_id = c.id)
             FROM campaigns c JOIN consent_versions v ON v.campaign_id = c.id AND v.version = c.consent_version
             WHERE c.id = ?1",
            params![id],
            |row| {
                Ok((
                    Campaign {
                        id: row.get(0)?,
                        name: row.get(1)?,
                        guidelines: row.get(2)?,
                        consent: row.get(3)?,
                        overlap: row.get(4)?,
                        created_at: row.get(5)?,
                        consent_version: row.get(6)?,
                        consent_sha256: row.get(7)?,
                        policy: CampaignPolicy {
                            on_withdrawal: OnWithdrawal::Keep,
                            min_gold_accuracy: row.get(9)?,
                        },
                        kind: CampaignKind::from_arena(row.get(10)?),
                    },
                    row.get::<String>(8)?,
                ))
            },
        )?;
    let (mut campaign, on_withdrawal) = row.ok_or_else(|| AppError::not_found("campaign", id))?;
    campaign.policy.on_withdrawal = OnWithdrawal::parse(&on_withdrawal)?;
    Ok(campaign)
}

pub(crate) fn set_policy(conn: &Db, campaign_id: i64, policy: &CampaignPolicy) -> Result<Campaign> {
    policy.validate()?;
    campaign(conn, campaign_id)?;
    conn.execute(
        "UPDATE campaigns SET on_withdrawal = ?2, min_gold_accuracy = ?3 WHERE id = ?1",
        params![
            campaign_id,
            policy.on_withdrawal.as_str(),
            policy.min_gold_accuracy
        ],
    )?;
    campaign(conn, campaign_id)
}

pub(crate) fn campaigns(conn: &Db) -> Result<Vec<CampaignSummary>> {
    let ids: Vec<i64> =
        conn.query_map("SELECT id FROM campaigns ORDER BY id", params![], |row| {
            row.get(0)
        })?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let count =
            |sql: &str| -> Result<i64> { conn.query_row(sql, params![id], |row| row.get(0)) };
        out.push(CampaignSummary {
            campaign: campaign(conn, id)?,
            annotators: count("SELECT COUNT(*) FROM annotators WHERE campaign_id = ?1")?,
            items: count("SELECT COUNT(*) FROM items WHERE campaign_id = ?1")?,
            ready_items: count(
                "SELECT COUNT(*) FROM items WHERE campaign_id = ?1 AND answer_1 IS NOT NULL",
            )?,
            votes: count(
                "SELECT COUNT(*) FROM votes v JOIN items i ON i.id = v.item_id
                 JOIN annotators n ON n.id = v.annotator_id
                 WHERE i.campaign_id = ?1 AND v.undone_at IS NULL AND n.withdrawn_at IS NULL",
            )?,
        });
    }
    Ok(out)
}

/// The campaign an annotator belongs to, if the annotator exists.
pub(crate) fn annotator_campaign(conn: &Db, annotator_id: i64) -> Result<Option<i64>> {
    conn.query_opt(
        "SELECT campaign_id FROM annotators WHERE id = ?1",
        params![annotator_id],
        |row| row.get(0),
    )
}

/// Looks a bearer token up by its hash.
pub(crate) fn authenticate(conn: &Db, token: &str) -> Result<Identity> {
    let hash = sha256_hex(token.as_bytes());
    let admin: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM admin_tokens WHERE token_hash = ?1)",
        params![hash],
        |row| row.get(0),
    )?;
    if admin {
        return Ok(Identity::Admin);
    }
    conn.query_opt(
        "SELECT n.id, n.campaign_id, n.name, n.consent_at, n.withdrawn_at,
                n.consent_at IS NOT NULL AND n.withdrawn_at IS NULL AND n.consent_version = c.consent_version
         FROM annotators n JOIN campaigns c ON c.id = n.campaign_id WHERE n.token_hash = ?1",
        params![hash],
        |row| {
            Ok(Identity::Annotator {
                id: row.get(0)?,
                campaign_id: row.get(1)?,
                name: row.get(2)?,
                consent_at: row.get(3)?,
                withdrawn_at: row.get(4)?,
                consent_current: row.get(5)?,
            })
        },
    )?
    .ok_or(AppError::UnknownToken)
}
