//! Tiny, self-contained models for tests and benchmarks of mechanics: a byte-level
//! tokenizer (256 byte tokens + chat specials, no merges) and random-weight checkpoints.
//! Nothing here is downloaded; everything is written on the spot.

use std::path::Path;

use serde_json::json;
use tch::{Device, Kind};

use crate::checkpoint::CausalLm;
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};

pub const IM_START: u32 = 256;
pub const IM_END: u32 = 257;
pub const PAD: u32 = 258;
/// 256 byte tokens plus three specials.
pub const TINY_VOCAB: usize = 259;

pub const CHAT_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// GPT-2's byte-to-printable-character table used by byte-level BPE.
pub fn byte_to_char() -> Vec<char> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut extra = 0;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap_or('?')
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap_or('?')
            }
        })
        .collect()
}

/// Writes tokenizer.json and tokenizer_config.json of the tiny byte-level tokenizer.
pub fn write_tiny_tokenizer(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut vocab = serde_json::Map::new();
    for (id, c) in byte_to_char().into_iter().enumerate() {
        vocab.insert(c.to_string(), json!(id));
    }
    let specials = [
        ("<|im_start|>", IM_START),
        ("<|im_end|>", IM_END),
        ("<pad>", PAD),
    ];
    for (text, id) in specials {
        vocab.insert(text.to_owned(), json!(id));
    }
    let added: Vec<_> = specials
        .iter()
        .map(|(text, id)| json!({"id": id, "content": text, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []},
    });
    let config = json!({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<pad>",
        "chat_template": CHAT_TEMPLATE, "tokenizer_class": "PreTrainedTokenizerFast",
    });
    for (name, value) in [
        ("tokenizer.json", tokenizer),
        ("tokenizer_config.json", config),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, value.to_string()).map_err(|e| ModelError::io(&path, e))?;
    }
    Ok(())
}

/// The tiny configuration with the tiny tokenizer's special ids.
pub fn tiny_config() -> LlamaConfig {
    let mut config = LlamaConfig::tiny(TINY_VOCAB);
    config.eos_token_id = Some(crate::config::TokenIds::One(IM_END));
    config.pad_token_id = Some(PAD);
    config
}

/// Writes a random-weight tiny checkpoint (weights + tokenizer) and returns the model.
pub fn write_tiny_checkpoint(dir: &Path, seed: i64) -> Result<CausalLm> {
    let lm = CausalLm::random(&tiny_config(), Device::Cpu, Kind::Float, seed);
    lm.save(dir, None)?;
    write_tiny_tokenizer(dir)?;
    Ok(lm)
}
