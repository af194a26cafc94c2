//! Importer for Anthropic HH-RLHF–style transcripts:
//! `{"chosen": "\n\nHuman: …\n\nAssistant: …", "rejected": "…"}`. Both transcripts share
//! every turn but the last assistant answer; that shared part becomes the prompt (as chat
//! messages) and the two final answers become `chosen` and `rejected`. Rows whose prefixes
//! differ, or that do not parse, are reported and skipped.

use std::path::Path;

use crate::chat_template::ChatMessage;
use crate::error::{DataError, Result};
use crate::records::{PreferenceRecord, Turns};
use crate::table::{read_table, RowLocation};

const HUMAN: &str = "\n\nHuman:";
const ASSISTANT: &str = "\n\nAssistant:";

/// Splits a transcript into chat turns; None when it does not follow the format.
pub fn parse_transcript(text: &str) -> Option<Vec<ChatMessage>> {
    let mut turns = Vec::new();
    // Some dumps drop the two leading newlines.
    let mut rest = text.strip_prefix("\n\n").unwrap_or(text);
    if !rest.starts_with("Human:") {
        return None;
    }
    loop {
        let (role, body) = if let Some(b) = rest.strip_prefix("Human:") {
            ("user", b)
        } else if let Some(b) = rest.strip_prefix("Assistant:") {
            ("assistant", b)
        } else {
            return None;
        };
        let next = [body.find(HUMAN), body.find(ASSISTANT)]
            .into_iter()
            .flatten()
            .min();
        let (content, tail) = match next {
            Some(i) => (&body[..i], &body[i + 2..]),
            None => (body, ""),
        };
        turns.push(ChatMessage::new(role, content.trim()));
        if tail.is_empty() {
            break;
        }
        rest = tail;
    }
    Some(turns)
}

/// Converted pairs, and a reason for each skipped row.
#[derive(Debug, Default)]
pub struct HhImport {
    pub records: Vec<PreferenceRecord>,
    pub skipped: Vec<String>,
}

fn split(
    location: &RowLocation,
    chosen: &str,
    rejected: &str,
) -> std::result::Result<PreferenceRecord, String> {
    let bad = |what: &str| format!("{location}: {what}");
    let c = parse_transcript(chosen)
        .ok_or_else(|| bad("`chosen` is not a Human:/Assistant: transcript"))?;
    let r = parse_transcript(rejected)
        .ok_or_else(|| bad("`rejected` is not a Human:/Assistant: transcript"))?;
    let (Some(c_last), Some(r_last)) = (c.last(), r.last()) else {
        return Err(bad("empty transcript"));
    };
    if c_last.role != "assistant" || r_last.role != "assistant" {
        return Err(bad("a transcript does not end with an Assistant turn"));
    }
    let (c_prompt, r_prompt) = (&c[..c.len() - 1], &r[..r.len() - 1]);
    if c_prompt != r_prompt {
        return Err(bad(
            "`chosen` and `rejected` differ before their final answers",
        ));
    }
    if c_prompt.is_empty() || c_last.content.is_empty() || r_last.content.is_empty() {
        return Err(bad("empty prompt or answer"));
    }
    Ok(PreferenceRecord {
        prompt: Turns::Messages(c_prompt.to_vec()),
        chosen: Turns::Messages(vec![c_last.clone()]),
        rejected: Turns::Messages(vec![r_last.clone()]),
    })
}

/// Reads `path` (JSONL or Parquet with `chosen` and `rejected` string columns).
pub fn import_hh_rlhf(path: &Path) -> Result<HhImport> {
    let mut out = HhImport::default();
    for (location, row) in read_table(path)? {
        let text = |field: &str| -> Result<String> {
            row.get(field)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| DataError::row(&location, Some(field), "missing, or not a string"))
        };
        match split(&location, &text("chosen")?, &text("rejected")?) {
            Ok(record) => out.records.push(record),
            Err(reason) => out.skipped.push(reason),
        }
    }
    Ok(out)
}
