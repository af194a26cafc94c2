//! One call per trainer: read a file, parse its records, tokenize them, and report what
//! was skipped or cut, so a trainer logs one line instead of repeating this plumbing.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::paired::{
    tokenize_preference, tokenize_unpaired, PairOptions, TokenizedPair, TokenizedUnpaired,
};
use crate::records::{
    load_records, Loaded, OnBadRow, PreferenceRecord, Record, SftRecord, UnpairedRecord,
    MAX_SKIP_REASONS,
};
use crate::tokenize::{tokenize_sft, TokenizeOptions, TokenizedExample};
use crate::tokenizer::Tokenizer;

/// What loading a training file did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub path: PathBuf,
    /// Examples kept.
    pub examples: usize,
    /// Rows left out under [`OnBadRow::Skip`] (unparsable, or failing to tokenize).
    pub skipped: usize,
    /// The first few reasons for `skipped`, each naming file, line and field.
    pub skip_reasons: Vec<String>,
    /// Kept examples cut by the length limits.
    pub truncated: usize,
    /// Examples dropped because truncation left no token in the loss.
    pub without_loss: usize,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} examples, {} skipped, {} truncated, {} dropped with no loss tokens",
            self.path.display(),
            self.examples,
            self.skipped,
            self.truncated,
            self.without_loss
        )?;
        if let Some(first) = self.skip_reasons.first() {
            write!(f, "; first skipped: {first}")?;
        }
        Ok(())
    }
}

/// Loads and tokenizes an SFT file (`messages` or `prompt`/`completion`).
pub fn load_sft(
    path: &Path,
    tokenizer: &Tokenizer,
    options: &TokenizeOptions,
    on_bad_row: OnBadRow,
) -> Result<(Vec<TokenizedExample>, LoadReport)> {
    load(path, on_bad_row, |r: &SftRecord| {
        let example = tokenize_sft(tokenizer, r, options)?;
        let has_loss = example.num_loss_tokens() > 0;
        Ok((example.truncated, has_loss, example))
    })
}

/// Loads and tokenizes a preference file (`prompt`/`chosen`/`rejected`).
pub fn load_preferences(
    path: &Path,
    tokenizer: &Tokenizer,
    options: &PairOptions,
    on_bad_row: OnBadRow,
) -> Result<(Vec<TokenizedPair>, LoadReport)> {
    load(path, on_bad_row, |r: &PreferenceRecord| {
        let pair = tokenize_preference(tokenizer, r, options)?;
        Ok((pair.truncated, true, pair))
    })
}

/// Loads and tokenizes an unpaired-feedback file (`prompt`/`completion`/`label`).
pub fn load_unpaired(
    path: &Path,
    tokenizer: &Tokenizer,
    options: &PairOptions,
    on_bad_row: OnBadRow,
) -> Result<(Vec<TokenizedUnpaired>, LoadReport)> {
    load(path, on_bad_row, |r: &UnpairedRecord| {
        let t = tokenize_unpaired(tokenizer, r, options)?;
        Ok((t.truncated, true, t))
    })
}

/// `tokenize` returns `(truncated, has_loss_tokens, item)`.
fn load<R: Record, T>(
    path: &Path,
    on_bad_row: OnBadRow,
    mut tokenize: impl FnMut(&R) -> Result<(bool, bool, T)>,
) -> Result<(Vec<T>, LoadReport)> {
    let Loaded {
        records,
        locations,
        skipped,
        skip_reasons,
    } = load_records::<R>(path, on_bad_row)?;
    let mut report = LoadReport {
        path: path.to_owned(),
        skipped,
        skip_reasons,
        ..LoadReport::default()
    };
    let mut items = Vec::with_capacity(records.len());
    for (record, location) in records.iter().zip(&locations) {
        match tokenize(record) {
            Ok((truncated, true, item)) => {
                report.truncated += usize::from(truncated);
                items.push(item);
            }
            Ok((_, false, _)) => report.without_loss += 1,
            Err(e) => {
                let e = DataError::row(location, None, e.to_string());
                if on_bad_row == OnBadRow::Stop {
                    return Err(e);
                }
                report.skipped += 1;
                if report.skip_reasons.len() < MAX_SKIP_REASONS {
                    report.skip_reasons.push(e.to_string());
                }
            }
        }
    }
    report.examples = items.len();
    if items.is_empty() {
        return Err(DataError::Dataset(format!("no usable examples: {report}")));
    }
    Ok((items, report))
}
