//! The model card block: which model, its parents (from a manifest.json beside the
//! weights, when there is one), which data (path, sha256, rows), which settings, when.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{EvalError, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    /// What the file was used for (`harmful`, `benign`, `crows_pairs`, ...).
    pub role: String,
    pub path: String,
    pub sha256: String,
    /// Rows evaluated (after `--limit`).
    pub rows: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The model directory, or a note when answers came from a file.
    pub model: String,
    /// Parent checkpoints named by the model's manifest.json (`parents`, `parent` or `base_model`).
    pub parents: Vec<String>,
    pub baseline: Option<String>,
    pub data: Vec<DataFile>,
    pub settings: BTreeMap<String, String>,
    /// UTC, `YYYY-MM-DD HH:MM:SS UTC`.
    pub date: String,
    pub tiller_version: String,
}

impl ModelCard {
    pub fn new(model: String, parents: Vec<String>) -> Self {
        ModelCard {
            model,
            parents,
            baseline: None,
            data: Vec::new(),
            settings: BTreeMap::new(),
            date: utc_now(),
            tiller_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// Records a data file with its checksum; a directory (BBQ) gets one entry per file.
    pub fn add_data(&mut self, role: &str, path: &Path, rows: usize) -> Result<()> {
        let sha256 = if path.is_dir() {
            "(directory)".to_owned()
        } else {
            sha256_file(path)?
        };
        self.data.push(DataFile {
            role: role.to_owned(),
            path: path.display().to_string(),
            sha256,
            rows,
        });
        Ok(())
    }

    pub fn set(&mut self, key: &str, value: impl ToString) {
        self.settings.insert(key.to_owned(), value.to_string());
    }
}

/// Parent checkpoints from `dir/manifest.json`, if the file exists; an unreadable manifest
/// is an error (it says something about the model we would otherwise drop).
pub fn parents(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join("manifest.json");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| EvalError::io(&path, e))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| EvalError::Json {
            path: path.clone(),
            source,
        })?;
    let mut out = Vec::new();
    // `tiller run` writes objects with a `path` (parents, base_models); others write names.
    let name = |i: &serde_json::Value| match i {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(o) => o
            .get("path")
            .and_then(|p| p.as_str())
            .map_or_else(|| i.to_string(), str::to_owned),
        _ => i.to_string(),
    };
    for key in [
        "parents",
        "parent",
        "base_model",
        "base_models",
        "parent_checkpoint",
    ] {
        match value.get(key) {
            Some(serde_json::Value::String(s)) => out.push(s.clone()),
            Some(serde_json::Value::Array(items)) => out.extend(items.iter().map(name)),
            _ => {}
        }
    }
    Ok(out)
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| EvalError::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| EvalError::io(path, e))?;
    Ok(hex(&hasher.finalize()))
}

pub use tiller_data::hex;

/// The current UTC time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_now() -> String {
    format_utc(time::UtcDateTime::now())
}

/// `t` as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(t: time::UtcDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_checksums() {
        let at = |secs| format_utc(time::UtcDateTime::from_unix_timestamp(secs).unwrap());
        assert_eq!(at(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(at(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(at(1_795_000_000), "2026-11-18 11:06:40 UTC");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.txt");
        std::fs::write(&p, "abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parents_from_manifest() {
        let dir = tempfile::tempdir().unwrap();
        assert!(parents(dir.path()).unwrap().is_empty());
        std::fs::write(
            dir.path().join("manifest.json"),
            r#"{"parents": ["runs/sft"], "base_model": "smollm2"}"#,
        )
        .unwrap();
        assert_eq!(parents(dir.path()).unwrap(), ["runs/sft", "smollm2"]);
        std::fs::write(
            dir.path().join("manifest.json"),
            r#"{"parents": [{"stage": "sft", "path": "runs/loop/sft"}], "base_models": [{"path": "models/base"}]}"#,
        )
        .unwrap();
        assert_eq!(
            parents(dir.path()).unwrap(),
            ["runs/loop/sft", "models/base"]
        );
        std::fs::write(dir.path().join("manifest.json"), "{oops").unwrap();
        assert!(parents(dir.path())
            .unwrap_err()
            .to_string()
            .contains("manifest.json"));
    }
}
