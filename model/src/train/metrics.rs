//! `metrics.jsonl`: one JSON object per logged step, with TRL's keys (`loss`,
//! `learning_rate`, `grad_norm`, `epoch`, `num_tokens`, `mean_token_accuracy`, ...), so a
//! run can be plotted next to a TRL run.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{ModelError, Result};

pub struct MetricsWriter {
    path: PathBuf,
    file: File,
}

impl MetricsWriter {
    /// Opens `path` for appending. When resuming from `resume_step`, lines logged after
    /// that step (by the run that was interrupted) are dropped first, so the file reads as
    /// one uninterrupted run; otherwise (`None`) the file starts empty.
    pub fn open(path: &Path, resume_step: Option<u64>) -> Result<Self> {
        let kept = match resume_step {
            Some(step) if path.exists() => {
                let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
                let mut kept = Vec::new();
                for line in BufReader::new(file).lines() {
                    let line = line.map_err(|e| ModelError::io(path, e))?;
                    let value: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    if value
                        .get("step")
                        .and_then(Value::as_u64)
                        .is_some_and(|s| s <= step)
                    {
                        kept.push(line);
                    }
                }
                kept
            }
            _ => Vec::new(),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(|e| ModelError::io(path, e))?;
        for line in kept {
            writeln!(file, "{line}").map_err(|e| ModelError::io(path, e))?;
        }
        Ok(MetricsWriter {
            path: path.to_owned(),
            file,
        })
    }

    /// Appends one record (flushed at once, so a killed run keeps what it logged).
    pub fn write(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let mut record = Map::new();
        for (key, value) in values {
            // JSON has no NaN: a non-finite value is logged as null.
            let v = serde_json::Number::from_f64(*value).map_or(Value::Null, Value::Number);
            record.insert((*key).to_owned(), v);
        }
        record.insert("step".into(), Value::from(step));
        writeln!(self.file, "{}", Value::Object(record)).map_err(|e| ModelError::io(&self.path, e))
    }
}
