//! Content hashes for cache keys and manifests: files, checkpoint directories, and the
//! rows a data file holds. Hashes of large files are remembered for the process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use tiller_eval::report::card::{hex, sha256_file};

/// Path → (size, mtime, sha256).
type Memo = HashMap<PathBuf, (u64, std::time::SystemTime, String)>;
static MEMO: Mutex<Option<Memo>> = Mutex::new(None);

/// sha256 of a file, remembered by (path, size, mtime) for the rest of the process (a
/// stage's base model is hashed once per run, not once per stage).
pub fn file_sha256(path: &Path) -> Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let Ok(modified) = meta.modified() else {
        return Ok(sha256_file(path)?);
    };
    let key = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let lock = || {
        MEMO.lock()
            .map_err(|_| anyhow::anyhow!("hash cache poisoned"))
    };
    if let Some((len, m, sha)) = lock()?.as_ref().and_then(|memo| memo.get(&key)) {
        if *len == meta.len() && *m == modified {
            return Ok(sha.clone());
        }
    }
    let sha = sha256_file(path)?;
    lock()?
        .get_or_insert_with(HashMap::new)
        .insert(key, (meta.len(), modified, sha.clone()));
    Ok(sha)
}

/// sha256 of an output: a file's own hash, or for a directory a hash over the names and
/// hashes of its top-level `.json` and `.safetensors` files (weights, config, tokenizer,
/// adapter, report.json) — not the manifest, metrics or resume checkpoints.
pub fn output_sha256(path: &Path) -> Result<String> {
    if !path.is_dir() {
        return file_sha256(path);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            (name.ends_with(".json") || name.ends_with(".safetensors"))
                && name != crate::pipeline::manifest::MANIFEST_FILE
        })
        .collect();
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        hasher.update(name.unwrap_or_default().as_bytes());
        hasher.update([0]);
        hasher.update(file_sha256(&file)?.as_bytes());
        hasher.update([b'\n']);
    }
    Ok(hex(&hasher.finalize()))
}

/// sha256 of a string.
pub fn text_sha256(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// Rows of a data file: non-empty lines of JSONL, records of Parquet, CSV lines after the
/// header; None for other files (and for JSON arrays).
pub fn count_rows(path: &Path) -> Result<Option<usize>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let lines = || -> Result<usize> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(text.lines().filter(|l| !l.trim().is_empty()).count())
    };
    Ok(match ext {
        "jsonl" | "ndjson" => Some(lines()?),
        "csv" => Some(lines()?.saturating_sub(1)),
        "parquet" => Some(tiller_data::read_table(path)?.len()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_hash_covers_weights_not_metrics() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        std::fs::write(dir.path().join("model.safetensors"), "w1").unwrap();
        let first = output_sha256(dir.path()).unwrap();
        std::fs::write(dir.path().join("metrics.jsonl"), "{}\n").unwrap();
        std::fs::write(dir.path().join("manifest.json"), "{}").unwrap();
        assert_eq!(output_sha256(dir.path()).unwrap(), first);
        std::fs::write(dir.path().join("model.safetensors"), "w2").unwrap();
        assert_ne!(output_sha256(dir.path()).unwrap(), first);
        let csv = dir.path().join("x.csv");
        std::fs::write(&csv, "a,b\n1,2\n3,4\n").unwrap();
        assert_eq!(count_rows(&csv).unwrap(), Some(2));
    }
}
