//! Rewards that need no model, configurable from TOML:
//!
//! ```toml
//! [[rules]]
//! kind = "regex"           # 1 when `pattern` matches (or, with when = "absent", when it does not)
//! pattern = "(?i)cheers"
//! weight = 1.0
//!
//! [[rules]]
//! kind = "length"          # 1 within `tolerance` words of `target_words`, falling linearly to 0
//! target_words = 20        # at a distance of `target_words` beyond the tolerance
//! tolerance = 5
//!
//! [[rules]]
//! kind = "refusal"         # 1 for a refusal (full or partial, by tiller's one refusal
//!                          # classifier) when prefer = "refuse", else 1 for an answer
//! prefer = "answer"
//!
//! [[rules]]
//! kind = "json"            # 1 when the completion (``` fences allowed) is valid JSON
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Result, RewardError};
use crate::reward::{Reward, RewardInput, WeightedSum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegexWhen {
    #[default]
    Matches,
    Absent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prefer {
    #[default]
    Answer,
    Refuse,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleConfig {
    Regex {
        pattern: String,
        #[serde(default)]
        when: RegexWhen,
        #[serde(default = "one")]
        weight: f64,
    },
    Length {
        target_words: usize,
        #[serde(default)]
        tolerance: usize,
        #[serde(default = "one")]
        weight: f64,
    },
    Refusal {
        #[serde(default)]
        prefer: Prefer,
        #[serde(default = "one")]
        weight: f64,
    },
    Json {
        #[serde(default = "one")]
        weight: f64,
    },
}

fn one() -> f64 {
    1.0
}

/// Whether the answer refuses, fully or in part: the project's one refusal classifier
/// ([`crate::refusal::classify`]), the same verdict `tiller eval` reports.
pub fn looks_like_refusal(text: &str) -> bool {
    crate::refusal::classify(text).is_refusal()
}

/// One compiled rule.
pub enum Rule {
    Regex { re: regex::Regex, when: RegexWhen },
    Length { target: usize, tolerance: usize },
    Refusal { prefer: Prefer },
    Json,
}

impl Rule {
    pub fn new(config: &RuleConfig) -> Result<(f64, Rule)> {
        Ok(match config {
            RuleConfig::Regex {
                pattern,
                when,
                weight,
            } => {
                let re = regex::Regex::new(pattern)
                    .map_err(|e| RewardError::Config(format!("rule regex `{pattern}`: {e}")))?;
                (*weight, Rule::Regex { re, when: *when })
            }
            RuleConfig::Length {
                target_words,
                tolerance,
                weight,
            } => {
                if *target_words == 0 {
                    return Err(RewardError::Config(
                        "rule length: target_words must be > 0".into(),
                    ));
                }
                (
                    *weight,
                    Rule::Length {
                        target: *target_words,
                        tolerance: *tolerance,
                    },
                )
            }
            RuleConfig::Refusal { prefer, weight } => (*weight, Rule::Refusal { prefer: *prefer }),
            RuleConfig::Json { weight } => (*weight, Rule::Json),
        })
    }

    pub fn apply(&self, completion: &str) -> f64 {
        match self {
            Rule::Regex { re, when } => {
                let hit = re.is_match(completion);
                f64::from(u8::from(hit == (*when == RegexWhen::Matches)))
            }
            Rule::Length { target, tolerance } => {
                let words = completion.split_whitespace().count();
                let off = words.abs_diff(*target).saturating_sub(*tolerance);
                (1.0 - off as f64 / *target as f64).max(0.0)
            }
            Rule::Refusal { prefer } => f64::from(u8::from(
                looks_like_refusal(completion) == (*prefer == Prefer::Refuse),
            )),
            Rule::Json => {
                let t = completion.trim();
                let t = t
                    .strip_prefix("```json")
                    .or_else(|| t.strip_prefix("```"))
                    .unwrap_or(t);
                let t = t.strip_suffix("```").unwrap_or(t);
                f64::from(u8::from(
                    serde_json::from_str::<serde_json::Value>(t.trim()).is_ok(),
                ))
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Rule::Regex { .. } => "regex",
            Rule::Length { .. } => "length",
            Rule::Refusal { .. } => "refusal",
            Rule::Json => "json",
        }
    }
}

impl Reward for Rule {
    fn name(&self) -> String {
        self.name().to_owned()
    }
    fn score(&self, batch: &[RewardInput]) -> Result<Vec<f64>> {
        Ok(batch.iter().map(|r| self.apply(&r.completion)).collect())
    }
}

/// The weighted sum of the configured rules.
pub fn rules_reward(configs: &[RuleConfig]) -> Result<WeightedSum> {
    let parts = configs
        .iter()
        .map(|c| Rule::new(c).map(|(w, r)| (w, Box::new(r) as Box<dyn Reward>)))
        .collect::<Result<Vec<_>>>()?;
    Ok(WeightedSum { parts })
}
