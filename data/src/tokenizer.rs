//! A model's tokenizer as HF ships it: tokenizer.json (loaded by the `tokenizers` crate)
//! plus tokenizer_config.json (special tokens, chat template) or chat_template.jinja.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::chat_template::ChatTemplate;
use crate::error::{DataError, Result};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    dir: PathBuf,
    pub bos_id: Option<u32>,
    pub eos_id: u32,
    pub pad_id: u32,
    chat_template: Option<ChatTemplate>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("dir", &self.dir)
            .field("vocab_size", &self.vocab_size())
            .field("eos_id", &self.eos_id)
            .finish()
    }
}

/// tokenizer_config.json writes special tokens as a string or as `{"content": ...}`.
fn token_string(config: &Value, key: &str) -> Option<String> {
    match config.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// `chat_template` is a string, or a list of `{name, template}` of which "default" is used.
fn chat_template_source(config: &Value) -> Option<String> {
    match config.get("chat_template")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(str::to_owned)),
        _ => None,
    }
}

impl Tokenizer {
    /// Loads tokenizer.json and, when present, tokenizer_config.json and chat_template.jinja.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let tokenizer_path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| {
            DataError::Tokenizer {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            }
        })?;
        let config_path = dir.join("tokenizer_config.json");
        let config: Value = if config_path.exists() {
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| DataError::io(&config_path, e))?;
            serde_json::from_str(&text).map_err(|source| DataError::Json {
                path: config_path.clone(),
                source,
            })?
        } else {
            Value::Null
        };
        let id_of =
            |key: &str| token_string(&config, key).and_then(|token| inner.token_to_id(&token));
        let bos_id = id_of("bos_token");
        let eos_id = id_of("eos_token").ok_or_else(|| DataError::Tokenizer {
            path: config_path.clone(),
            message: "no `eos_token` that the tokenizer knows".into(),
        })?;
        let pad_id = id_of("pad_token").unwrap_or(eos_id);

        let jinja_path = dir.join("chat_template.jinja");
        let template_source = if jinja_path.exists() {
            Some(std::fs::read_to_string(&jinja_path).map_err(|e| DataError::io(&jinja_path, e))?)
        } else {
            chat_template_source(&config)
        };
        let chat_template = match template_source {
            Some(source) => Some(ChatTemplate::new(
                &source,
                &token_string(&config, "bos_token").unwrap_or_default(),
                &token_string(&config, "eos_token").unwrap_or_default(),
            )?),
            None => None,
        };
        Ok(Tokenizer {
            inner,
            dir: dir.to_owned(),
            bos_id,
            eos_id,
            pad_id,
            chat_template,
        })
    }

    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// The template, or an error naming the model directory that lacks one.
    pub fn require_chat_template(&self) -> Result<&ChatTemplate> {
        self.chat_template.as_ref().ok_or_else(|| DataError::Tokenizer {
            path: self.dir.clone(),
            message: "the model has no chat template (tokenizer_config.json `chat_template` or chat_template.jinja)".into(),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes text. Special tokens written in the text (e.g. `<|im_start|>`) map to their
    /// ids; `add_special_tokens` applies the tokenizer's post-processor (BOS etc.) if it has one.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| DataError::Encode(e.to_string()))
    }

    pub fn encode_batch(
        &self,
        texts: &[String],
        add_special_tokens: bool,
    ) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        self.inner
            .encode_batch(inputs, add_special_tokens)
            .map(|all| all.iter().map(|e| e.get_ids().to_vec()).collect())
            .map_err(|e| DataError::Encode(e.to_string()))
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| DataError::Encode(e.to_string()))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
