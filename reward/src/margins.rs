//! Per-pair margins for the Bradley–Terry loss, −log σ(r_c − r_r − m): TRL's `margin`
//! column as the data gives it, or Llama 2's recipe, a margin per level of the
//! annotator's `strength` (`slight`, `clear`, `strong`, as `tiller annotate export`
//! writes it), so a pair people called clearly better must be won by more.
//!
//! A row's margin is its `margin` column when it has one (and `loss.use_margin`), else,
//! with `[loss.strength_margin]` set, the margin of its `strength` (0 when the row has no
//! strength). Without `strength_margin`, a file either has `margin` on every row or on
//! none, as before.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tiller_data::{read_table, RowLocation};

use crate::error::{Result, RewardError};

/// `[loss.strength_margin]`: the margin of each strength level (levels left out: 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrengthMargin {
    #[serde(default)]
    pub slight: f64,
    #[serde(default)]
    pub clear: f64,
    #[serde(default)]
    pub strong: f64,
}

impl StrengthMargin {
    /// The margin of a `strength` value; None for a value that is not a level.
    pub fn of(&self, strength: &str) -> Option<f64> {
        match strength {
            "slight" => Some(self.slight),
            "clear" => Some(self.clear),
            "strong" => Some(self.strong),
            _ => None,
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        for (level, m) in [
            ("slight", self.slight),
            ("clear", self.clear),
            ("strong", self.strong),
        ] {
            if !m.is_finite() {
                return Err(format!(
                    "loss.strength_margin.{level} = {m}: must be finite"
                ));
            }
        }
        Ok(())
    }
}

/// Margins of the rows at `locations` (the records that were read) in `path`; None when
/// no row has a margin and no strength margin is configured.
pub fn read_margins(
    path: &Path,
    locations: &[RowLocation],
    use_margin_column: bool,
    strength: Option<&StrengthMargin>,
) -> Result<Option<Vec<f32>>> {
    if !use_margin_column && strength.is_none() {
        return Ok(None); // nothing to read: don't read the file a second time
    }
    let field = |location: &RowLocation, name: &str, message: String| {
        RewardError::Config(format!("{location}: field `{name}` {message}"))
    };
    let mut column = HashMap::new();
    let mut by_strength = HashMap::new();
    for (location, row) in read_table(path)? {
        if let Some(v) = row.get("margin").filter(|_| use_margin_column) {
            let m = v
                .as_f64()
                .ok_or_else(|| field(&location, "margin", format!("must be a number, got {v}")))?;
            column.insert(location.to_string(), m as f32);
        }
        if let Some(levels) = strength {
            let m = match row.get("strength") {
                None | Some(serde_json::Value::Null) => 0.0,
                Some(serde_json::Value::String(s)) => levels.of(s).ok_or_else(|| {
                    field(
                        &location,
                        "strength",
                        format!("is {s:?}; expected slight, clear or strong"),
                    )
                })?,
                Some(v) => {
                    return Err(field(
                        &location,
                        "strength",
                        format!("must be a string, got {v}"),
                    ))
                }
            };
            by_strength.insert(location.to_string(), m as f32);
        }
    }
    if column.is_empty() && strength.is_none() {
        return Ok(None);
    }
    locations
        .iter()
        .map(|l| {
            let key = l.to_string();
            column
                .get(&key)
                .or_else(|| by_strength.get(&key))
                .copied()
                .ok_or_else(|| {
                    RewardError::Config(format!(
                        "{l}: missing field `margin` (other rows have one)"
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::bradley_terry;
    use tch::Tensor;

    fn write(dir: &Path, lines: &[&str]) -> (std::path::PathBuf, Vec<RowLocation>) {
        let path = dir.join("pairs.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let locations = (1..=lines.len())
            .map(|l| RowLocation::line(&path, l))
            .collect();
        (path, locations)
    }

    const LEVELS: StrengthMargin = StrengthMargin {
        slight: 0.0,
        clear: 1.0,
        strong: 2.5,
    };

    #[test]
    fn strength_gives_each_pair_its_level_and_the_loss_is_the_formula() {
        let dir = tempfile::tempdir().unwrap();
        let (path, locations) = write(
            dir.path(),
            &[
                r#"{"prompt":"a","chosen":"x","rejected":"y","strength":"strong"}"#,
                r#"{"prompt":"b","chosen":"x","rejected":"y","strength":"clear"}"#,
                r#"{"prompt":"c","chosen":"x","rejected":"y","strength":null}"#,
                r#"{"prompt":"d","chosen":"x","rejected":"y"}"#,
                r#"{"prompt":"e","chosen":"x","rejected":"y","strength":"clear","margin":0.25}"#,
            ],
        );
        let margins = read_margins(&path, &locations, true, Some(&LEVELS))
            .unwrap()
            .unwrap();
        // The TRL `margin` column wins over strength; no strength is no margin.
        assert_eq!(margins, vec![2.5, 1.0, 0.0, 0.0, 0.25]);

        let chosen = [0.5f32, 1.0, -0.2, 0.3, 2.0];
        let rejected = [0.1f32, 0.4, 0.1, 0.3, -1.0];
        let out = bradley_terry(
            &Tensor::from_slice(&chosen),
            &Tensor::from_slice(&rejected),
            Some(&Tensor::from_slice(&margins)),
            None,
        );
        let expected: f64 = (0..5)
            .map(|i| {
                let z = (chosen[i] - rejected[i] - margins[i]) as f64;
                -(1.0 / (1.0 + (-z).exp())).ln()
            })
            .sum::<f64>()
            / 5.0;
        let loss = out.loss.double_value(&[]);
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
        // Without margins the same batch has a smaller loss (every margin is ≥ 0).
        let plain = bradley_terry(
            &Tensor::from_slice(&chosen),
            &Tensor::from_slice(&rejected),
            None,
            None,
        );
        assert!(plain.loss.double_value(&[]) < loss);
    }

    #[test]
    fn off_by_default_and_bad_values_name_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let (path, locations) = write(
            dir.path(),
            &[r#"{"prompt":"a","chosen":"x","rejected":"y","strength":"strong"}"#],
        );
        assert_eq!(read_margins(&path, &locations, true, None).unwrap(), None);
        let (path, locations) = write(
            dir.path(),
            &[
                r#"{"prompt":"a","chosen":"x","rejected":"y","strength":"clear"}"#,
                r#"{"prompt":"b","chosen":"x","rejected":"y","strength":"huge"}"#,
            ],
        );
        let err = read_margins(&path, &locations, true, Some(&LEVELS))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pairs.jsonl:2") && err.contains("`strength`") && err.contains("huge"),
            "{err}"
        );
        // Without strength levels, a margin on some rows only is still an error.
        let (path, locations) = write(
            dir.path(),
            &[
                r#"{"prompt":"a","chosen":"x","rejected":"y","margin":1}"#,
                r#"{"prompt":"b","chosen":"x","rejected":"y"}"#,
            ],
        );
        let err = read_margins(&path, &locations, true, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pairs.jsonl:2") && err.contains("`margin`"),
            "{err}"
        );
    }

    #[test]
    fn the_config_key_is_checked_when_read() {
        use crate::RewardTrainConfig;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reward.toml");
        let read = |loss: &str| {
            let text = format!(
                "model = \"m\"\nout = \"o\"\n[data]\ntrain = \"p.jsonl\"\n[loss]\n{loss}\n"
            );
            std::fs::write(&path, text).unwrap();
            RewardTrainConfig::from_file(&path).map_err(|e| e.to_string())
        };
        let config = read("strength_margin = { clear = 1.0, strong = 2.0 }").unwrap();
        let levels = config.loss.strength_margin.unwrap();
        assert_eq!(
            (levels.slight, levels.clear, levels.strong),
            (0.0, 1.0, 2.0)
        );
        assert_eq!(
            read("").unwrap().loss.strength_margin,
            None,
            "off by default"
        );
        let err = read("strength_margin = { strong = nan }").unwrap_err();
        assert!(
            err.contains("reward.toml") && err.contains("loss.strength_margin.strong"),
            "{err}"
        );
        let err = read("strength_margin = { huge = 3.0 }").unwrap_err();
        assert!(err.contains("unknown field `huge`"), "{err}");
    }
}
