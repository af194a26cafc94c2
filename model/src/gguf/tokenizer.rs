//! Rebuilds a GGUF's byte-level BPE tokenizer (`tokenizer.ggml.model == "gpt2"`) as the
//! tokenizer.json + tokenizer_config.json pair HF tools load — the same tokenizer
//! transformers builds from the file (ByteLevel pre-tokenizer and decoder, control tokens
//! as special added tokens).

use serde_json::{json, Map, Value};

use crate::error::Result;
use crate::gguf::reader::{GgufFile, MetadataValue};

/// GGUF token types (llama.cpp's `llama_token_type`).
pub const TOKEN_TYPE_NORMAL: i32 = 1;
pub const TOKEN_TYPE_CONTROL: i32 = 3;
pub const TOKEN_TYPE_USER_DEFINED: i32 = 4;
/// Ids the tokenizer does not use (rows that pad the embedding matrix).
pub const TOKEN_TYPE_UNUSED: i32 = 5;

pub struct RebuiltTokenizer {
    pub tokenizer_json: Value,
    pub tokenizer_config: Value,
    pub generation_config: Value,
}

fn string_array(file: &GgufFile, key: &str) -> Result<Vec<String>> {
    let items = file
        .get(key)
        .and_then(MetadataValue::as_array)
        .ok_or_else(|| file.error(format!("metadata `{key}` is missing or not an array")))?;
    items
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| file.error(format!("metadata `{key}` holds a non-string")))
        })
        .collect()
}

fn token_types(file: &GgufFile, count: usize) -> Result<Vec<i32>> {
    let Some(items) = file
        .get("tokenizer.ggml.token_type")
        .and_then(MetadataValue::as_array)
    else {
        return Ok(vec![TOKEN_TYPE_NORMAL; count]);
    };
    if items.len() != count {
        return Err(file.error(format!(
            "tokenizer.ggml.token_type has {} entries for {count} tokens",
            items.len()
        )));
    }
    Ok(items
        .iter()
        .map(|v| match *v {
            MetadataValue::I32(t) => t,
            _ => v
                .as_u64()
                .and_then(|t| i32::try_from(t).ok())
                .unwrap_or(TOKEN_TYPE_NORMAL),
        })
        .collect())
}

pub fn rebuild(file: &GgufFile) -> Result<RebuiltTokenizer> {
    let model = file
        .get("tokenizer.ggml.model")
        .and_then(MetadataValue::as_str)
        .unwrap_or("");
    if model != "gpt2" {
        return Err(file.error(format!(
            "tokenizer.ggml.model `{model}` is not supported; only byte-level BPE (`gpt2`) tokenizers can be rebuilt"
        )));
    }
    let tokens = string_array(file, "tokenizer.ggml.tokens")?;
    let merges = string_array(file, "tokenizer.ggml.merges")?;
    let types = token_types(file, tokens.len())?;

    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (id, (token, &ty)) in tokens.iter().zip(&types).enumerate() {
        vocab.insert(token.clone(), json!(id));
        if ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED {
            added.push(json!({
                "id": id, "content": token, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty == TOKEN_TYPE_CONTROL,
            }));
        }
    }
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let tokenizer_json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": merges,
        },
    });

    let token_of = |key: &str| -> Option<(u64, String)> {
        let id = file.get(key)?.as_u64()?;
        Some((id, tokens.get(id as usize)?.clone()))
    };
    let bos = token_of("tokenizer.ggml.bos_token_id");
    let eos = token_of("tokenizer.ggml.eos_token_id");
    let pad = token_of("tokenizer.ggml.padding_token_id");
    let unk = token_of("tokenizer.ggml.unknown_token_id");
    let add_bos = file
        .get("tokenizer.ggml.add_bos_token")
        .and_then(MetadataValue::as_bool);
    let mut tokenizer_json = tokenizer_json;
    if let (Some(true), Some((id, text))) = (add_bos, &bos) {
        // The model expects BOS in front of every encoded text (e.g. Llama 3).
        tokenizer_json["post_processor"] = json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": text, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": text, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {text.as_str(): {"id": text, "ids": [id], "tokens": [text]}},
        });
    }
    let mut config = Map::new();
    config.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    config.insert("clean_up_tokenization_spaces".into(), json!(false));
    config.insert("add_bos_token".into(), json!(add_bos.unwrap_or(false)));
    for (key, token) in [
        ("bos_token", &bos),
        ("eos_token", &eos),
        ("pad_token", &pad),
        ("unk_token", &unk),
    ] {
        if let Some((_, text)) = token {
            config.insert(key.into(), json!(text));
        }
    }
    if let Some(template) = file
        .get("tokenizer.chat_template")
        .and_then(MetadataValue::as_str)
    {
        config.insert("chat_template".into(), json!(template));
    }
    let mut generation = Map::new();
    for (key, token) in [
        ("bos_token_id", &bos),
        ("eos_token_id", &eos),
        ("pad_token_id", &pad),
    ] {
        if let Some((id, _)) = token {
            generation.insert(key.into(), json!(id));
        }
    }
    Ok(RebuiltTokenizer {
        tokenizer_json,
        tokenizer_config: Value::Object(config),
        generation_config: Value::Object(generation),
    })
}
