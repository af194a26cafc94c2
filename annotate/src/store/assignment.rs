//! Where an assignment stands. The database keeps `status` (`pending`, `voted`,
//! `skipped`) and, for a release the annotator did not ask for, `released` (`lease`,
//! `withdrawn`); code sees one enum, parsed strictly at the edge.

use serde::Serialize;

use crate::error::{AppError, Result};

/// Where an assignment stands, parsed from its `status` and `released` columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentState {
    Pending,
    Voted,
    /// The annotator gave it back.
    Skipped,
    /// Its lease ran out and it went back to the queue.
    Expired,
    /// Released because its annotator withdrew consent.
    Withdrawn,
}

impl AssignmentState {
    /// The state as the API writes it.
    pub fn name(self) -> &'static str {
        match self {
            AssignmentState::Pending => "pending",
            AssignmentState::Voted => "voted",
            AssignmentState::Skipped => "skipped",
            AssignmentState::Expired => "expired",
            AssignmentState::Withdrawn => "withdrawn",
        }
    }

    /// Parses the stored pair; anything unknown is an error, never a guess.
    pub(crate) fn parse(status: &str, released: Option<&str>) -> Result<AssignmentState> {
        match (status, released) {
            ("pending", None) => Ok(AssignmentState::Pending),
            ("voted", None) => Ok(AssignmentState::Voted),
            ("skipped", None) => Ok(AssignmentState::Skipped),
            ("skipped", Some("lease")) => Ok(AssignmentState::Expired),
            ("skipped", Some("withdrawn")) => Ok(AssignmentState::Withdrawn),
            (status, released) => Err(AppError::Unsupported(format!(
                "unknown assignment status {status:?} (released {released:?}) in database"
            ))),
        }
    }
}
