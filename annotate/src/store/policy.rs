//! A campaign's policy: what a withdrawal of consent does to the votes, and the gold
//! accuracy below which annotators are left out of exports.

use serde::{Deserialize, Serialize};

use crate::error::{AppError, Result};

/// What happens to an annotator's votes when they withdraw consent. Either way they
/// leave every export and the withdrawal itself is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnWithdrawal {
    /// The votes stay in the database (marked withdrawn), out of every export.
    #[default]
    Keep,
    /// The votes and rationales are deleted; only the withdrawal record remains.
    Erase,
}

impl OnWithdrawal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OnWithdrawal::Keep => "keep",
            OnWithdrawal::Erase => "erase",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<OnWithdrawal> {
        match text {
            "keep" => Ok(OnWithdrawal::Keep),
            "erase" => Ok(OnWithdrawal::Erase),
            other => Err(AppError::Unsupported(format!(
                "unknown on_withdrawal {other:?} in database"
            ))),
        }
    }
}

/// A campaign's rules for consent withdrawal and gold items.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignPolicy {
    #[serde(default)]
    pub on_withdrawal: OnWithdrawal,
    /// Annotators whose accuracy on gold items is below this (0..=1) are left out of
    /// exports; annotators who answered no gold item are kept.
    #[serde(default)]
    pub min_gold_accuracy: Option<f64>,
}

impl CampaignPolicy {
    pub(crate) fn validate(&self) -> Result<()> {
        match self.min_gold_accuracy {
            Some(value) if !(0.0..=1.0).contains(&value) => Err(AppError::field(
                "min_gold_accuracy",
                "must be between 0 and 1",
            )),
            _ => Ok(()),
        }
    }
}
