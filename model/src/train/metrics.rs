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

/// Metrics averaged over the steps of a logging window: per key a sum and a count, so a
/// mean can weigh steps (count 1 each) or tokens (the count is the step's tokens), and so
/// the window of every rank reduces into one with two sums ([`MetricWindow::reduce`]).
#[derive(Debug, Default, Clone)]
pub struct MetricWindow {
    sums: std::collections::BTreeMap<String, (f64, f64)>,
}

impl MetricWindow {
    /// Adds one observation with weight 1.
    pub fn add(&mut self, key: &str, value: f64) {
        self.add_sum(key, value, 1.0);
    }

    /// Adds `sum` over `count` units (a non-finite sum is left out of the mean; the key is
    /// still recorded, so every rank's window has the same keys in the same order).
    pub fn add_sum(&mut self, key: &str, sum: f64, count: f64) {
        let e = self.sums.entry(key.to_owned()).or_insert((0.0, 0.0));
        if sum.is_finite() && count.is_finite() {
            e.0 += sum;
            e.1 += count;
        }
    }

    /// Sums every rank's sums and counts (a no-op in a world of one). Every rank must
    /// have added the same keys.
    pub fn reduce(&mut self, collective: &dyn crate::dist::Collective) -> Result<()> {
        if collective.world_size() == 1 {
            return Ok(());
        }
        let mut flat: Vec<f64> = self.sums.values().flat_map(|(s, n)| [*s, *n]).collect();
        collective.all_reduce_sum_f64(&mut flat)?;
        for ((s, n), pair) in self.sums.values_mut().zip(flat.chunks(2)) {
            (*s, *n) = (pair[0], pair[1]);
        }
        Ok(())
    }

    /// The means so far (keys that saw no finite value left out), then an empty window.
    pub fn drain(&mut self) -> Vec<(String, f64)> {
        let out = self
            .sums
            .iter()
            .filter(|(_, (_, n))| *n > 0.0)
            .map(|(k, (s, n))| (k.clone(), s / n))
            .collect();
        self.sums.clear();
        out
    }
}
