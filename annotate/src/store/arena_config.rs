//! An arena campaign's configuration: its models (OpenAI-compatible endpoints), sampling
//! and limits, checked before they are stored (`arena.rs`) so that no battle starts with
//! a config it cannot run, and shown to the admin with keys hidden.

use serde::{Deserialize, Serialize};

use super::arena::HIDDEN_KEY;
use crate::error::{AppError, Result};

/// What kind of items a campaign collects votes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CampaignKind {
    /// Items uploaded or filled by `tiller annotate generate`.
    Pairwise,
    /// Annotators' own prompts, answered live by two of the campaign's models.
    Arena,
}

impl CampaignKind {
    pub(crate) fn from_arena(is_arena: bool) -> CampaignKind {
        if is_arena {
            CampaignKind::Arena
        } else {
            CampaignKind::Pairwise
        }
    }
}

/// One OpenAI-compatible endpoint: `tiller serve`, vLLM, llama.cpp's server, Ollama.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArenaModel {
    /// The name votes, exports and the leaderboard use (unique in the campaign).
    pub name: String,
    /// `http://HOST:PORT` (a trailing `/v1` is accepted); the server posts to
    /// `{base_url}/v1/chat/completions`.
    pub base_url: String,
    /// The `model` field of the request (the endpoint's own name for it).
    pub model: String,
    /// Sent as `Authorization: Bearer ...`; never shown back (it reads [`HIDDEN_KEY`]).
    #[serde(default)]
    pub api_key: Option<String>,
}

/// An arena campaign's models and limits (`POST /api/admin/campaigns/{id}/arena`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArenaConfig {
    /// At least two; each battle draws two different ones at random.
    pub models: Vec<ArenaModel>,
    /// `max_tokens` of each request.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Sampling temperature; the endpoint's default when absent.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// An answer is cut (and its stream closed) at this many characters.
    #[serde(default = "default_max_answer_chars")]
    pub max_answer_chars: usize,
    /// Seconds to open the TCP connection.
    #[serde(default = "default_connect_secs")]
    pub connect_timeout_secs: f64,
    /// Seconds from the request to the first piece of answer text.
    #[serde(default = "default_first_token_secs")]
    pub first_token_timeout_secs: f64,
    /// Seconds for the whole answer.
    #[serde(default = "default_answer_secs")]
    pub answer_timeout_secs: f64,
}

fn default_max_tokens() -> u32 {
    512
}
fn default_max_answer_chars() -> usize {
    8000
}
fn default_connect_secs() -> f64 {
    5.0
}
fn default_first_token_secs() -> f64 {
    60.0
}
fn default_answer_secs() -> f64 {
    300.0
}

impl ArenaConfig {
    /// Refuses a config no battle could run with; the field is named (`models[1].base_url`).
    pub fn validate(&self) -> Result<()> {
        if self.models.len() < 2 {
            return Err(AppError::field(
                "models",
                format!(
                    "an arena needs at least 2 models (got {})",
                    self.models.len()
                ),
            ));
        }
        for (index, model) in self.models.iter().enumerate() {
            let field = |name: &str| format!("models[{index}].{name}");
            let chars = model.name.trim().chars().count();
            if chars == 0 || chars > super::campaigns::MAX_NAME_CHARS {
                return Err(AppError::field(
                    field("name"),
                    format!(
                        "must be 1 to {} characters (got {chars})",
                        super::campaigns::MAX_NAME_CHARS
                    ),
                ));
            }
            if self.models[..index]
                .iter()
                .any(|m| m.name.trim() == model.name.trim())
            {
                return Err(AppError::field(
                    field("name"),
                    format!("{:?} is already used by another model", model.name.trim()),
                ));
            }
            if model.model.trim().is_empty() {
                return Err(AppError::field(field("model"), "is empty"));
            }
            // It goes into an HTTP header: visible ASCII only (no spaces, no newlines).
            if let Some(key) = &model.api_key {
                if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(AppError::field(
                        field("api_key"),
                        "must be printable ASCII without spaces",
                    ));
                }
            }
            crate::arena::client::chat_url(&model.base_url)
                .map_err(|message| AppError::field(field("base_url"), message))?;
        }
        if !(1..=32_768).contains(&self.max_tokens) {
            return Err(AppError::field("max_tokens", "must be between 1 and 32768"));
        }
        if !(1..=100_000).contains(&self.max_answer_chars) {
            return Err(AppError::field(
                "max_answer_chars",
                "must be between 1 and 100000",
            ));
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(AppError::field("temperature", "must be between 0 and 2"));
            }
        }
        for (name, secs) in [
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("first_token_timeout_secs", self.first_token_timeout_secs),
            ("answer_timeout_secs", self.answer_timeout_secs),
        ] {
            // `contains` is false for NaN too.
            if !(0.001..=3600.0).contains(&secs) {
                return Err(AppError::field(
                    name,
                    "must be between 0.001 and 3600 seconds",
                ));
            }
        }
        Ok(())
    }

    /// The config as the admin page shows it: keys replaced by [`HIDDEN_KEY`].
    pub fn redacted(&self) -> ArenaConfig {
        let mut shown = self.clone();
        for model in &mut shown.models {
            if model.api_key.is_some() {
                model.api_key = Some(HIDDEN_KEY.into());
            }
        }
        shown
    }
}
