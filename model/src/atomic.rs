//! Atomic writes: a file or a directory that a crash leaves either complete or untouched.
//!
//! Both write under a hidden temporary name beside the target (`.NAME.tmp`), fsync what
//! they wrote, rename it over the target and fsync the parent, so that the rename itself
//! survives a crash. A directory is synced all the way down (its subdirectories' files
//! too: a PPO checkpoint keeps its critic one level down), not only its top level.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// Writes the file `path`: `fill` writes the temporary file it is given. A failed `fill`
/// leaves no temporary.
pub fn write_file(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let (parent, tmp) = temporary_beside(path);
    let written = fill(&tmp).and_then(|()| fsync(&tmp));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))?;
    fsync(&parent)
}

/// Writes the directory `dir`: `fill` writes files (and subdirectories) into the empty
/// temporary directory it is given. A `dir` that already exists is replaced; a failed
/// `fill` leaves no temporary and the old `dir` as it was.
pub fn write_dir<E: From<ModelError>>(
    dir: &Path,
    fill: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let (parent, tmp) = temporary_beside(dir);
    if tmp.exists() {
        // Left by an attempt that was killed mid-write.
        std::fs::remove_dir_all(&tmp).map_err(|e| E::from(ModelError::io(&tmp, e)))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| E::from(ModelError::io(&tmp, e)))?;
    let written = fill(&tmp).and_then(|()| fsync_tree(&tmp).map_err(E::from));
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| E::from(ModelError::io(dir, e)))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| E::from(ModelError::io(dir, e)))?;
    fsync(&parent).map_err(E::from)
}

/// The parent directory of `path` and the hidden temporary name beside it.
fn temporary_beside(path: &Path) -> (PathBuf, PathBuf) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("tmp");
    let tmp = parent.join(format!(".{name}.tmp"));
    (parent, tmp)
}

/// fsyncs every file and directory under `dir`, children before their directory.
fn fsync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))? {
        let entry = entry.map_err(|e| ModelError::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| ModelError::io(&path, e))?;
        if kind.is_dir() {
            fsync_tree(&path)?;
        } else {
            fsync(&path)?;
        }
    }
    fsync(dir)
}

fn fsync(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|e| ModelError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_directory_with_a_subdirectory_replaces_the_old_one_whole() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("checkpoint-2");
        std::fs::create_dir_all(dir.join("stale")).expect("old dir");
        write_dir(&dir, |tmp| {
            std::fs::create_dir(tmp.join("critic")).map_err(|e| ModelError::io(tmp, e))?;
            std::fs::write(tmp.join("critic/model.safetensors"), b"weights")
                .map_err(|e| ModelError::io(tmp, e))?;
            std::fs::write(tmp.join("train_state.json"), b"{}").map_err(|e| ModelError::io(tmp, e))
        })
        .expect("write_dir");
        assert_eq!(names(&dir), ["critic", "train_state.json"]);
        let weights = std::fs::read(dir.join("critic/model.safetensors")).expect("nested file");
        assert_eq!(weights, b"weights");
        assert_eq!(names(root.path()), ["checkpoint-2"], "no temporary left");
    }

    #[test]
    fn a_failed_fill_leaves_the_old_directory_and_no_temporary() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("critic");
        std::fs::create_dir(&dir).expect("old dir");
        std::fs::write(dir.join("config.json"), b"old").expect("old file");
        let err = write_dir(&dir, |tmp| {
            std::fs::write(tmp.join("config.json"), b"new").map_err(|e| ModelError::io(tmp, e))?;
            Err(ModelError::InvalidArgument("disk full".into()))
        })
        .expect_err("fill failed");
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(std::fs::read(dir.join("config.json")).expect("old"), b"old");
        assert_eq!(names(root.path()), ["critic"]);
    }

    #[test]
    fn a_file_is_renamed_into_place_and_a_failed_fill_leaves_nothing() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("model.safetensors");
        write_file(&path, |tmp| {
            std::fs::write(tmp, b"abc").map_err(|e| ModelError::io(tmp, e))
        })
        .expect("write_file");
        assert_eq!(std::fs::read(&path).expect("written"), b"abc");
        let failed = write_file(&path, |tmp| {
            std::fs::write(tmp, b"half").map_err(|e| ModelError::io(tmp, e))?;
            Err(ModelError::InvalidArgument("interrupted".into()))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).expect("kept"), b"abc");
        assert_eq!(names(root.path()), ["model.safetensors"]);
    }
}
