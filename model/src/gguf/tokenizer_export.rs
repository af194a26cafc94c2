//! An HF byte-level BPE tokenizer (tokenizer.json + tokenizer_config.json) as GGUF's
//! `tokenizer.*` metadata: the inverse of [`crate::gguf::tokenizer::rebuild`], with the
//! keys llama.cpp's converter writes (`tokenizer.ggml.model = "gpt2"`, tokens, token
//! types, merges, special ids, `tokenizer.ggml.pre`, `tokenizer.chat_template`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use tiller_data::Tokenizer;

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::gguf::reader::MetadataValue;
use crate::gguf::tokenizer::{
    TOKEN_TYPE_CONTROL, TOKEN_TYPE_NORMAL, TOKEN_TYPE_UNUSED, TOKEN_TYPE_USER_DEFINED,
};

/// llama.cpp's pre-tokenizer regexes, as HF writes them in a `Split` pre-tokenizer.
const LLAMA3_REGEX: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_REGEX: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

fn kind(v: &Value) -> &str {
    v.get("type").and_then(Value::as_str).unwrap_or("")
}

/// A ByteLevel pre-tokenizer that applies GPT-2's own split regex (`use_regex`, default on).
fn is_gpt2_byte_level(v: &Value, use_regex: bool) -> bool {
    kind(v) == "ByteLevel"
        && v.get("use_regex").and_then(Value::as_bool).unwrap_or(true) == use_regex
}

/// `tokenizer.ggml.pre`: the name llama.cpp knows the tokenizer's pre-tokenization by.
fn pre_name(pre: &Value) -> Option<&'static str> {
    if is_gpt2_byte_level(pre, true) {
        return Some("gpt2");
    }
    let steps = pre.get("pretokenizers")?.as_array()?;
    match steps.as_slice() {
        [digits, byte_level]
            if kind(digits) == "Digits"
                && digits.get("individual_digits").and_then(Value::as_bool) == Some(true)
                && is_gpt2_byte_level(byte_level, true) =>
        {
            Some("smollm")
        }
        [split, byte_level] if kind(split) == "Split" && is_gpt2_byte_level(byte_level, false) => {
            match split.pointer("/pattern/Regex").and_then(Value::as_str)? {
                LLAMA3_REGEX => Some("llama-bpe"),
                QWEN2_REGEX => Some("qwen2"),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether the ByteLevel step of a pre-tokenizer puts a space before the text.
fn adds_prefix_space(pre: &Value) -> bool {
    let steps = pre.get("pretokenizers").and_then(Value::as_array);
    std::iter::once(pre)
        .chain(steps.into_iter().flatten())
        .filter(|step| kind(step) == "ByteLevel")
        .any(|step| step.get("add_prefix_space").and_then(Value::as_bool) == Some(true))
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| ModelError::Json {
        path: path.to_owned(),
        source,
    })
}

/// `tokenizer.*` metadata for the tokenizer in `dir`, with `config.vocab_size` tokens
/// (ids the tokenizer leaves unused are filled with `[PAD<id>]`, as llama.cpp does).
pub fn tokenizer_metadata(
    dir: &Path,
    config: &LlamaConfig,
) -> Result<Vec<(String, MetadataValue)>> {
    let path = dir.join("tokenizer.json");
    let json = read_json(&path)?;
    let fail = |message: String| ModelError::Config {
        path: path.clone(),
        message,
    };
    let model = &json["model"];
    if kind(model) != "BPE" || kind(&json["decoder"]) != "ByteLevel" {
        return Err(fail(format!(
            "a `{}` model with a `{}` decoder cannot be exported: GGUF export supports byte-level BPE tokenizers (tokenizer.ggml.model `gpt2`)",
            kind(model),
            kind(&json["decoder"])
        )));
    }
    let pre = pre_name(&json["pre_tokenizer"]).ok_or_else(|| {
        fail("`pre_tokenizer` is not one llama.cpp names (supported: ByteLevel = gpt2, Digits + ByteLevel = smollm, Llama 3's and Qwen2's Split + ByteLevel)".into())
    })?;

    // id → (token, type); added tokens override the model's entry for their id.
    let mut by_id: BTreeMap<u64, (String, i32)> = BTreeMap::new();
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| fail("`model.vocab` is not an object".into()))?;
    for (token, id) in vocab {
        let id = id.as_u64().ok_or_else(|| {
            fail(format!(
                "`model.vocab`: token {token:?} has a non-integer id"
            ))
        })?;
        by_id.insert(id, (token.clone(), TOKEN_TYPE_NORMAL));
    }
    for added in json["added_tokens"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
    {
        let (Some(id), Some(content)) = (added["id"].as_u64(), added["content"].as_str()) else {
            return Err(fail(format!(
                "`added_tokens`: entry {added} lacks an id or content"
            )));
        };
        let special = added["special"].as_bool().unwrap_or(false);
        let ty = if special {
            TOKEN_TYPE_CONTROL
        } else {
            TOKEN_TYPE_USER_DEFINED
        };
        by_id.insert(id, (content.to_owned(), ty));
    }
    let count = config.vocab_size;
    if let Some((&last, _)) = by_id
        .last_key_value()
        .filter(|(id, _)| **id >= count as u64)
    {
        return Err(fail(format!(
            "token id {last} does not fit the model's vocab_size {count} (config.json)"
        )));
    }
    let (mut tokens, mut types) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for id in 0..count as u64 {
        let (token, ty) = by_id
            .remove(&id)
            .unwrap_or_else(|| (format!("[PAD{id}]"), TOKEN_TYPE_UNUSED));
        tokens.push(MetadataValue::String(token));
        types.push(MetadataValue::I32(ty));
    }
    let merges = model["merges"]
        .as_array()
        .ok_or_else(|| fail("`model.merges` is missing".into()))?
        .iter()
        .map(|m| match m {
            Value::String(s) => Some(MetadataValue::String(s.clone())),
            // Newer tokenizers write a merge as a pair.
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => {
                    Some(MetadataValue::String(format!("{a} {b}")))
                }
                _ => None,
            },
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| fail("`model.merges` holds an entry that is not a merge".into()))?;

    let tokenizer = Tokenizer::from_dir(dir)?;
    let token_config = match dir.join("tokenizer_config.json") {
        p if p.exists() => read_json(&p)?,
        _ => Value::Null,
    };
    let first = |ids: &Option<crate::config::TokenIds>| {
        ids.as_ref().and_then(|t| t.to_vec().first().copied())
    };
    let bos = tokenizer.bos_id.or_else(|| first(&config.bos_token_id));
    let pad = if token_config.get("pad_token").is_some_and(|v| !v.is_null()) {
        Some(tokenizer.pad_id)
    } else {
        config.pad_token_id
    };
    // tokenizer_config.json's `unk_token` (where the importer puts it), else the model's.
    let unk = match token_config.get("unk_token") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Object(o)) => o.get("content").and_then(Value::as_str),
        _ => model["unk_token"].as_str(),
    }
    .and_then(|t| tokenizer.token_to_id(t));
    // What the tokenizer does, not what a flag claims: BOS is added when encoding adds it.
    let add_bos = match bos {
        Some(bos) => tokenizer.encode("a", true)?.first() == Some(&bos),
        None => false,
    };

    let mut out = vec![
        (
            "tokenizer.ggml.model".to_owned(),
            MetadataValue::String("gpt2".into()),
        ),
        (
            "tokenizer.ggml.pre".to_owned(),
            MetadataValue::String(pre.into()),
        ),
        (
            "tokenizer.ggml.tokens".to_owned(),
            MetadataValue::Array(tokens),
        ),
        (
            "tokenizer.ggml.token_type".to_owned(),
            MetadataValue::Array(types),
        ),
        (
            "tokenizer.ggml.merges".to_owned(),
            MetadataValue::Array(merges),
        ),
    ];
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", bos),
        ("tokenizer.ggml.eos_token_id", Some(tokenizer.eos_id)),
        ("tokenizer.ggml.unknown_token_id", unk),
        ("tokenizer.ggml.padding_token_id", pad),
    ] {
        if let Some(id) = id {
            out.push((key.to_owned(), MetadataValue::U32(id)));
        }
    }
    out.push((
        "tokenizer.ggml.add_bos_token".to_owned(),
        MetadataValue::Bool(add_bos),
    ));
    out.push((
        "tokenizer.ggml.add_space_prefix".to_owned(),
        MetadataValue::Bool(adds_prefix_space(&json["pre_tokenizer"])),
    ));
    if let Some(template) = tokenizer.chat_template() {
        out.push((
            "tokenizer.chat_template".to_owned(),
            MetadataValue::String(template.source().to_owned()),
        ));
    }
    Ok(out)
}
