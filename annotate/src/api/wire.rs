//! Every JSON body the API answers with, in one place: the contract with the pages'
//! JavaScript (`web/static/*.js`) and any other client. Handlers return these types,
//! never ad-hoc `json!` values. Request bodies are the `*Input` types beside them.

use serde::{Deserialize, Serialize};

use crate::export::ExportBundle;
use crate::stats::{CampaignAgreement, LeaderboardRow};
use crate::store::{
    AnnotatorLink, AnnotatorProgress, ArenaConfig, Assignment, Campaign, CampaignKind,
    CampaignSummary, ConsentStatement, ItemProgress, Progress, VoteReceipt, Withdrawal,
};

/// `{"error": "..."}`, the body of every 4xx and 5xx.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: String,
}

/// `GET /healthz`.
#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub schema_version: i64,
    pub supported_schema_version: i64,
}

/// The campaign as an annotator sees it.
#[derive(Debug, Serialize)]
pub struct MeCampaign {
    pub name: String,
    pub guidelines: String,
    /// The current consent statement, its version and sha256.
    pub consent: String,
    pub consent_version: i64,
    pub consent_sha256: String,
    /// `arena`: the page asks for a prompt and streams two live answers.
    pub kind: CampaignKind,
    /// The longest prompt an arena takes, in characters.
    pub max_prompt_chars: usize,
}

/// `GET /api/me`.
#[derive(Debug, Serialize)]
pub struct Me {
    pub name: String,
    pub campaign: MeCampaign,
    /// When a consent statement was last accepted.
    pub consent_at: Option<i64>,
    /// The accepted statement is the current one; `false` means "ask again".
    pub consent_current: bool,
    pub withdrawn_at: Option<i64>,
    pub progress: Progress,
}

/// `POST /api/me/consent` body. `version` is the version the page showed; when given,
/// acceptance of a statement changed since is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    pub accept: bool,
    #[serde(default)]
    pub version: Option<i64>,
}

/// `POST /api/me/consent` answer.
#[derive(Debug, Serialize)]
pub struct ConsentAccepted {
    pub consent_at: Option<i64>,
    pub version: i64,
    pub sha256: String,
}

impl From<ConsentStatement> for ConsentAccepted {
    fn from(statement: ConsentStatement) -> Self {
        ConsentAccepted {
            consent_at: statement.accepted_at,
            version: statement.version,
            sha256: statement.sha256,
        }
    }
}

/// `POST /api/me/withdraw` body: the page's explicit confirmation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawInput {
    pub confirm: bool,
}

/// `POST /api/me/withdraw` and the admin's withdrawal answer.
#[derive(Debug, Serialize)]
pub struct Withdrawn {
    pub withdrawal: Withdrawal,
}

/// `POST /api/me/next`.
#[derive(Debug, Serialize)]
pub struct Next {
    pub assignment: Option<Assignment>,
    pub progress: Progress,
}

/// `POST /api/me/skip` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipInput {
    pub assignment_id: i64,
}

/// `POST /api/me/skip` answer.
#[derive(Debug, Serialize)]
pub struct Skipped {
    pub skipped: i64,
}

/// `POST /api/me/undo` answer.
#[derive(Debug, Serialize)]
pub struct Undone {
    pub undone: VoteReceipt,
}

/// `GET /api/admin/campaigns`.
#[derive(Debug, Serialize)]
pub struct CampaignList {
    pub campaigns: Vec<CampaignSummary>,
}

/// `POST /api/admin/campaigns` answer.
#[derive(Debug, Serialize)]
pub struct CampaignCreated {
    pub campaign: Campaign,
    pub annotators: Vec<AnnotatorLink>,
}

/// A campaign after a change (consent text, policy).
#[derive(Debug, Serialize)]
pub struct CampaignChanged {
    pub campaign: Campaign,
}

/// `POST /api/admin/campaigns/{id}/annotators` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAnnotators {
    pub names: Vec<String>,
}

/// `POST /api/admin/campaigns/{id}/annotators` answer.
#[derive(Debug, Serialize)]
pub struct AnnotatorsCreated {
    pub annotators: Vec<AnnotatorLink>,
}

/// `POST /api/admin/campaigns/{id}/consent` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentTextInput {
    pub text: String,
}

/// `POST /api/admin/campaigns/{id}/items` answer.
#[derive(Debug, Serialize)]
pub struct ItemsUploaded {
    pub added: usize,
    pub ready: usize,
    pub pending: usize,
}

/// `POST /api/admin/campaigns/{id}/gold` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldInput {
    pub items: Vec<crate::store::GoldMark>,
}

/// `POST /api/admin/campaigns/{id}/gold` answer.
#[derive(Debug, Serialize)]
pub struct GoldSet {
    pub updated: usize,
}

/// `POST /api/admin/campaigns/{id}/items/{item}/requeue` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequeueInput {
    #[serde(default = "one")]
    pub extra: u32,
}

fn one() -> u32 {
    1
}

/// `POST /api/admin/campaigns/{id}/items/{item}/requeue` answer.
#[derive(Debug, Serialize)]
pub struct Requeued {
    pub item_id: i64,
    pub overlap: u32,
}

/// `GET /api/admin/campaigns/{id}/progress`.
#[derive(Debug, Serialize)]
pub struct CampaignProgress {
    pub annotators: Vec<AnnotatorProgress>,
    pub items: Vec<ItemProgress>,
}

/// `GET /api/admin/campaigns/{id}/agreement`.
pub type Agreement = CampaignAgreement;

/// `GET /api/admin/campaigns/{id}/leaderboard`.
#[derive(Debug, Serialize)]
pub struct Leaderboard {
    pub models: Vec<LeaderboardRow>,
}

/// `GET /api/admin/campaigns/{id}/export`.
pub type Export = ExportBundle;

/// `POST /api/me/arena/battles` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BattleInput {
    pub prompt: String,
}

/// `GET` and `POST /api/admin/campaigns/{id}/arena` answer: the models (keys as `***`),
/// `null` for a pairwise campaign.
#[derive(Debug, Serialize)]
pub struct ArenaSettings {
    pub arena: Option<ArenaConfig>,
}
