//! The reference log-prob cache. The reference is frozen, so the two summed log-probs of
//! every row under it (DPO: the chosen and the rejected answer; KTO: the completion and
//! its mismatched KL pair) are computed once and stored in `<cache_dir>/<key>.json`,
//! reused across epochs and runs.
//!
//! The key is a SHA-256 over the reference's weight and config files, the tokenizer
//! files, the dtype, and the tokenized rows themselves. The token ids are exactly what
//! the chat template, the data file and the max lengths produce, so a change to any of
//! them changes the key; nothing stale is ever read.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tiller_data::TokenizedPair;

use crate::error::{PolicyError, Result};

const CACHE_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format_version: u32,
    key: String,
    /// Per row: two reference summed log-probs ([chosen, rejected] or [completion, KL]).
    logps: Vec<[f64; 2]>,
}

/// Hex SHA-256 identifying the reference log-probs of preference `pairs`.
pub fn cache_key(
    reference_dirs: &[&Path],
    tokenizer_dir: &Path,
    dtype: &str,
    pairs: &[TokenizedPair],
) -> Result<String> {
    let rows: Vec<[&[i64]; 3]> = pairs
        .iter()
        .map(|p| [&p.prompt_ids[..], &p.chosen_ids[..], &p.rejected_ids[..]])
        .collect();
    rows_key("dpo", reference_dirs, tokenizer_dir, dtype, &rows)
}

/// Hex SHA-256 identifying the reference log-probs of `rows` (three token lists each)
/// for the algorithm `what`.
pub fn rows_key(
    what: &str,
    reference_dirs: &[&Path],
    tokenizer_dir: &Path,
    dtype: &str,
    rows: &[[&[i64]; 3]],
) -> Result<String> {
    let mut h = Sha256::new();
    h.update(format!("tiller-{what}-ref-cache v{CACHE_VERSION}\ndtype {dtype}\n").as_bytes());
    for dir in reference_dirs {
        for path in files(dir, &["safetensors", "json"])? {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("tokenizer")
                || name == "train_state.json"
                || name == "optimizer.safetensors"
            {
                continue;
            }
            h.update(name.as_bytes());
            hash_file(&mut h, &path)?;
        }
    }
    for name in ["tokenizer.json", "tokenizer_config.json"] {
        let path = tokenizer_dir.join(name);
        if path.is_file() {
            h.update(name.as_bytes());
            hash_file(&mut h, &path)?;
        }
    }
    for row in rows {
        for ids in row {
            h.update((ids.len() as u64).to_le_bytes());
            for id in ids.iter() {
                h.update(id.to_le_bytes());
            }
        }
    }
    Ok(tiller_data::hex(&h.finalize()))
}

fn files(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| PolicyError::io(dir, e))? {
        let path = entry.map_err(|e| PolicyError::io(dir, e))?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if path.is_file() && exts.contains(&ext) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn hash_file(h: &mut Sha256, path: &Path) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(|e| PolicyError::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| PolicyError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

/// The cached log-probs for `key`, if present and complete for `num_rows` rows.
pub fn load(dir: &Path, key: &str, num_rows: usize) -> Result<Option<Vec<[f64; 2]>>> {
    let path = dir.join(format!("{key}.json"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let file: CacheFile = match serde_json::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(
                "{}: unreadable reference cache ({e}); recomputing",
                path.display()
            );
            return Ok(None);
        }
    };
    if file.format_version != CACHE_VERSION || file.key != key || file.logps.len() != num_rows {
        tracing::warn!(
            "{}: reference cache does not match; recomputing",
            path.display()
        );
        return Ok(None);
    }
    Ok(Some(file.logps))
}

/// Writes the cache atomically (a temporary file renamed into place).
pub fn store(dir: &Path, key: &str, logps: &[[f64; 2]]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| PolicyError::io(dir, e))?;
    let path = dir.join(format!("{key}.json"));
    let tmp = dir.join(format!(".{key}.json.tmp"));
    let file = CacheFile {
        format_version: CACHE_VERSION,
        key: key.to_owned(),
        logps: logps.to_vec(),
    };
    let text = serde_json::to_string(&file)
        .map_err(|e| PolicyError::Invalid(format!("reference cache: {e}")))?;
    std::fs::write(&tmp, text).map_err(|e| PolicyError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| PolicyError::io(&path, e))
}
