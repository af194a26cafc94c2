//! A tiny byte-level tokenizer built in code (one token per byte, ChatML special tokens)
//! and a SmolLM2-style chat template, written to a temporary model directory.

#![allow(dead_code)]

use std::path::Path;

use tiller_data::Tokenizer;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

/// SmolLM2-135M-Instruct's template.
pub const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A Llama-2-like template whose turns do not end with EOS text (EOS must be appended).
pub const NO_EOS: &str = "{% for message in messages %}{{ '[' + message['role'] + '] ' + message['content'] + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '[assistant] ' }}{% endif %}";

pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Writes tokenizer.json + tokenizer_config.json to `dir` and loads them.
pub fn tokenizer(dir: &Path, template: Option<&str>) -> Tokenizer {
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort();
    let vocab: tokenizers::models::bpe::Vocab = alphabet
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, vec![])
        .build()
        .unwrap();
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tok.with_decoder(Some(ByteLevel::default()));
    let specials: Vec<AddedToken> = SPECIALS
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    tok.add_special_tokens(specials).unwrap();
    tok.save(dir.join("tokenizer.json"), false).unwrap();
    let mut config = serde_json::json!({
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
    });
    if let Some(t) = template {
        config["chat_template"] = serde_json::Value::String(t.to_owned());
    }
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    Tokenizer::from_dir(dir).unwrap()
}

/// Decodes the tokens whose mask is true, keeping special tokens, as one string.
pub fn masked_text(tok: &Tokenizer, ids: &[i64], mask: &[bool], want: bool) -> String {
    let picked: Vec<u32> = ids
        .iter()
        .zip(mask)
        .filter(|(_, &m)| m == want)
        .map(|(&id, _)| id as u32)
        .collect();
    tok.decode(&picked, false).unwrap()
}
