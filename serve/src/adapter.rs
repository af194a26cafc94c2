//! Does a `--adapter NAME=DIR` belong over the `--model` it is served over? A LoRA adapter
//! records its base in adapter_config.json (`base_model_name_or_path`; tiller's trainers
//! write the base directory's absolute path). When that names a local directory, it must
//! be the served model's directory or a byte-for-byte copy of it (config.json and every
//! *.safetensors file); anything else is refused, naming the adapter and both bases.
//!
//! When the recorded base is not a local directory (a Hub id such as
//! `HuggingFaceTB/SmolLM2-135M-Instruct`, a model moved since) or cannot be read, there
//! is nothing to compare here; the strict load that follows (`Lora::load`) still checks
//! every LoRA tensor against the base's layers, so an adapter for another architecture
//! is an error naming the tensor and both shapes.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use tiller_model::lora::PeftConfig;

use crate::error::ServeError;

/// Refuses adapter `dir` (served as `name`) over `base` when it records another base.
pub fn check_base(name: &str, dir: &Path, base: &Path) -> Result<(), ServeError> {
    // An unreadable adapter_config.json is reported by the load itself.
    let Ok(peft) = PeftConfig::read(dir) else {
        return Ok(());
    };
    let Some(recorded) = peft.base_dir(dir).filter(|d| d.is_dir()) else {
        return Ok(());
    };
    match same_model(&recorded, base) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ServeError::AdapterBase {
            name: name.to_owned(),
            dir: dir.to_owned(),
            recorded,
            base: base.to_owned(),
        }),
        Err(e) => {
            tracing::warn!(
                "--adapter {name}={}: cannot compare its base {} with {}: {e}",
                dir.display(),
                recorded.display(),
                base.display()
            );
            Ok(())
        }
    }
}

/// The same directory, or two whose config.json and *.safetensors files are the same
/// names with the same bytes.
fn same_model(a: &Path, b: &Path) -> io::Result<bool> {
    if a.canonicalize()? == b.canonicalize()? {
        return Ok(true);
    }
    let (files_a, files_b) = (model_files(a)?, model_files(b)?);
    if files_a != files_b {
        return Ok(false);
    }
    for name in &files_a {
        if !same_bytes(&a.join(name), &b.join(name))? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// config.json and the weight files in `dir`, sorted by name.
fn model_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut names = vec![];
    for entry in std::fs::read_dir(dir)? {
        let name = PathBuf::from(entry?.file_name());
        if name == Path::new("config.json") || name.extension().is_some_and(|e| e == "safetensors")
        {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Whether two files hold the same bytes; stops at the first difference (for two models,
/// within the first tensor).
fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    if std::fs::metadata(a)?.len() != std::fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut a, mut b) = (
        BufReader::new(File::open(a)?),
        BufReader::new(File::open(b)?),
    );
    let (mut chunk_a, mut chunk_b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut a, &mut chunk_a)?;
        if n != read_full(&mut b, &mut chunk_b)? || chunk_a[..n] != chunk_b[..n] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Fills `buf` as far as the file allows; returns how many bytes were read.
fn read_full(file: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};
    use tiller_model::testing::write_tiny_checkpoint;
    use tiller_model::{CausalLm, Lora, LoraConfig};

    use super::*;

    /// An adapter in `dir` that records `base` as its base.
    fn adapter(dir: &Path, lm: &mut CausalLm, base: &str) {
        Lora::attach(lm, &LoraConfig::default(), 3)
            .unwrap()
            .save(dir, base)
            .unwrap();
    }

    #[test]
    fn an_adapter_is_checked_against_the_base_it_records() {
        let work = tempfile::tempdir().unwrap();
        let (base, other, copy) = (
            work.path().join("base"),
            work.path().join("other"),
            work.path().join("copy"),
        );
        let mut lm = write_tiny_checkpoint(&base, 7).unwrap();
        write_tiny_checkpoint(&other, 8).unwrap();
        std::fs::create_dir_all(&copy).unwrap();
        for name in ["config.json", "model.safetensors"] {
            std::fs::copy(base.join(name), copy.join(name)).unwrap();
        }
        let tuned = work.path().join("tuned");
        adapter(&tuned, &mut lm, base.to_str().unwrap());

        check_base("tuned", &tuned, &base).unwrap();
        // A copy of the base is the same base.
        check_base("tuned", &tuned, &copy).unwrap();
        // Another model with the same shapes is not.
        let err = check_base("tuned", &tuned, &other).unwrap_err().to_string();
        assert!(
            err.contains(&format!("--adapter tuned={}", tuned.display()))
                && err.contains(&base.display().to_string())
                && err.contains(&format!("--model {}", other.display())),
            "{err}"
        );

        // A recorded base that is not a local directory (a Hub id) leaves the check to
        // the strict load.
        let hub = work.path().join("hub");
        let mut lm = CausalLm::load(&base, Device::Cpu, Kind::Float).unwrap();
        adapter(&hub, &mut lm, "HuggingFaceTB/SmolLM2-135M-Instruct");
        check_base("hub", &hub, &other).unwrap();
    }
}
