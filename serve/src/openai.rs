//! OpenAI's response shapes for chat and text completions, whole or as stream chunks,
//! built from what the engine thread sends (`worker::Out`).

use serde_json::{json, Map, Value};
use tiller_data::Tokenizer;
use tiller_model::FinishReason;

/// Which endpoint a response is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Text,
}

/// One sampled token with its log-probability and alternatives.
#[derive(Debug, Clone)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// The parts of a response that stay the same across its chunks.
#[derive(Debug, Clone)]
pub struct Header {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub endpoint: Endpoint,
}

pub fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Eos | FinishReason::StopString => "stop",
        FinishReason::Length => "length",
    }
}

pub fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

fn piece(tokenizer: &Tokenizer, id: u32) -> String {
    tokenizer.decode(&[id], false).unwrap_or_default()
}

/// `logprobs` of a choice, `offset` being where these tokens' text starts (text only).
pub fn logprobs(
    tokenizer: &Tokenizer,
    endpoint: Endpoint,
    tokens: &[TokenLogprob],
    offset: usize,
) -> Value {
    match endpoint {
        Endpoint::Chat => {
            let entry = |id: u32, logprob: f32| {
                let text = piece(tokenizer, id);
                json!({"token": text, "logprob": logprob, "bytes": text.as_bytes()})
            };
            let content: Vec<Value> = tokens
                .iter()
                .map(|t| {
                    let mut e = entry(t.token, t.logprob);
                    let top: Vec<Value> = t.top.iter().map(|&(id, lp)| entry(id, lp)).collect();
                    e["top_logprobs"] = Value::Array(top);
                    e
                })
                .collect();
            json!({"content": content, "refusal": null})
        }
        Endpoint::Text => {
            let mut offsets = Vec::with_capacity(tokens.len());
            let mut at = offset;
            let texts: Vec<String> = tokens
                .iter()
                .map(|t| {
                    let text = piece(tokenizer, t.token);
                    offsets.push(at);
                    at += text.len();
                    text
                })
                .collect();
            let top: Vec<Value> = tokens
                .iter()
                .map(|t| {
                    let map: Map<String, Value> = t
                        .top
                        .iter()
                        .map(|&(id, lp)| (piece(tokenizer, id), json!(lp)))
                        .collect();
                    Value::Object(map)
                })
                .collect();
            json!({
                "tokens": texts,
                "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                "top_logprobs": top,
                "text_offset": offsets,
            })
        }
    }
}

/// A whole choice of a non-streamed response.
pub fn choice(
    h: &Header,
    index: usize,
    text: &str,
    logprobs: Option<Value>,
    finish: FinishReason,
) -> Value {
    let logprobs = logprobs.unwrap_or(Value::Null);
    match h.endpoint {
        Endpoint::Chat => json!({
            "index": index,
            "message": {"role": "assistant", "content": text, "refusal": null},
            "logprobs": logprobs,
            "finish_reason": finish_reason(finish),
        }),
        Endpoint::Text => json!({
            "index": index,
            "text": text,
            "logprobs": logprobs,
            "finish_reason": finish_reason(finish),
        }),
    }
}

/// The whole response.
pub fn response(h: &Header, choices: Vec<Value>, usage: Value) -> Value {
    let object = match h.endpoint {
        Endpoint::Chat => "chat.completion",
        Endpoint::Text => "text_completion",
    };
    json!({
        "id": h.id, "object": object, "created": h.created, "model": h.model,
        "choices": choices, "usage": usage,
    })
}

/// One stream chunk for choice `index`: new `text` (with the role on a chat's first
/// chunk), its tokens' log-probabilities, and the finish reason on the last one.
pub fn chunk(
    h: &Header,
    index: usize,
    text: &str,
    first: bool,
    logprobs: Option<Value>,
    finish: Option<FinishReason>,
) -> Value {
    let logprobs = logprobs.unwrap_or(Value::Null);
    let finish = finish.map(finish_reason);
    match h.endpoint {
        Endpoint::Chat => {
            let mut delta = Map::new();
            if first {
                delta.insert("role".into(), json!("assistant"));
            }
            if !text.is_empty() || first {
                delta.insert("content".into(), json!(text));
            }
            json!({
                "id": h.id, "object": "chat.completion.chunk", "created": h.created,
                "model": h.model,
                "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
            })
        }
        Endpoint::Text => json!({
            "id": h.id, "object": "text_completion", "created": h.created, "model": h.model,
            "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}],
        }),
    }
}

/// The chunk `stream_options.include_usage` asks for: no choices, the usage.
pub fn usage_chunk(h: &Header, usage: Value) -> Value {
    let object = match h.endpoint {
        Endpoint::Chat => "chat.completion.chunk",
        Endpoint::Text => "text_completion",
    };
    json!({
        "id": h.id, "object": object, "created": h.created, "model": h.model,
        "choices": [], "usage": usage,
    })
}
