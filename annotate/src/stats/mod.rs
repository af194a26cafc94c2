//! Statistics over the live votes of a campaign: inter-annotator agreement and the model
//! leaderboard.
//! The math lives in the submodules and works on plain data; this file only feeds it
//! from the store.

pub mod bradley_terry;
pub mod inter_annotator;

use crate::store::db::Db;
use serde::Serialize;

pub use bradley_terry::{Comparison, LeaderboardOptions, LeaderboardRow};
pub use inter_annotator::{
    AgreementOptions, AgreementReport, ItemAgreement, PairAgreement, RaterAgreement, Rating,
};

use crate::error::Result;
use crate::store::reports::{annotator_names, answered_items, live_votes};
use crate::store::{campaigns, Outcome, Store};

/// Agreement of a campaign, with annotator names beside their ids.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignAgreement {
    #[serde(flatten)]
    pub report: AgreementReport<Outcome>,
    /// Annotator id → name, for reading `pairs` and `raters`.
    pub names: std::collections::BTreeMap<i64, String>,
}

impl Store {
    /// Agreement statistics over the campaign's live votes.
    pub fn agreement(
        &self,
        campaign_id: i64,
        options: AgreementOptions,
    ) -> Result<CampaignAgreement> {
        self.read(|conn| campaign_agreement(conn, campaign_id, options))
    }

    /// Bradley–Terry leaderboard of the campaign's model tags.
    pub fn leaderboard(
        &self,
        campaign_id: i64,
        options: LeaderboardOptions,
    ) -> Result<Vec<LeaderboardRow>> {
        self.read(|conn| campaign_leaderboard(conn, campaign_id, options))
    }
}

pub(crate) fn campaign_agreement(
    conn: &Db,
    campaign_id: i64,
    options: AgreementOptions,
) -> Result<CampaignAgreement> {
    campaigns::campaign(conn, campaign_id)?;
    let ratings: Vec<Rating<Outcome>> = live_votes(conn, Some(campaign_id))?
        .into_iter()
        .map(|v| Rating {
            unit: v.item_id,
            rater: v.annotator_id,
            label: v.outcome,
        })
        .collect();
    let names = annotator_names(conn, campaign_id)?;
    Ok(CampaignAgreement {
        report: inter_annotator::agreement(&ratings, options),
        names,
    })
}

pub(crate) fn campaign_leaderboard(
    conn: &Db,
    campaign_id: i64,
    options: LeaderboardOptions,
) -> Result<Vec<LeaderboardRow>> {
    campaigns::campaign(conn, campaign_id)?;
    let items = answered_items(conn, Some(campaign_id))?;
    let comparisons: Vec<Comparison> = live_votes(conn, Some(campaign_id))?
        .into_iter()
        .filter_map(|vote| {
            let item = items.get(&vote.item_id)?;
            let score = match vote.outcome {
                Outcome::First => 1.0,
                Outcome::Second => 0.0,
                Outcome::Tie | Outcome::BothBad => 0.5,
            };
            Some(Comparison {
                first: item.model_1.clone(),
                second: item.model_2.clone(),
                score,
            })
        })
        .collect();
    Ok(bradley_terry::leaderboard(&comparisons, options))
}
