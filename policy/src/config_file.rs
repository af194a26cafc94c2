//! Reading a trainer's TOML file: unknown keys, wrong types and failed checks are all
//! errors that name the file (and, from serde, the key and line).

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{PolicyError, Result};

/// Parses `path` as `T`, then runs `validate` on it.
pub(crate) fn read<T: DeserializeOwned>(
    path: &Path,
    validate: impl FnOnce(&T) -> std::result::Result<(), String>,
) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError::io(path, e))?;
    let config: T = toml::from_str(&text).map_err(|e| PolicyError::Config {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    validate(&config).map_err(|message| PolicyError::Config {
        path: path.to_owned(),
        message,
    })?;
    Ok(config)
}
