//! Request bodies of `/v1/chat/completions` and `/v1/completions`, read field by field so
//! that a bad value is a 400 whose `param` names the field (serde's own messages name a
//! line and column, not the field). Fields OpenAI defines that change nothing here
//! (`user`, `presence_penalty: 0`, ...) are accepted and ignored, as clients send them.

use serde_json::{Map, Value};
use tiller_data::ChatMessage;

use crate::error::ApiError;

/// What to complete: chat messages (through the model's template) or raw text.
#[derive(Debug, Clone)]
pub enum Prompt {
    Chat(Vec<ChatMessage>),
    Text(String),
}

/// A parsed completion request (chat or text).
#[derive(Debug, Clone)]
pub struct Request {
    pub model: String,
    pub prompt: Prompt,
    pub n: usize,
    /// None: up to the context window.
    pub max_tokens: Option<usize>,
    /// The field `max_tokens` came from, for errors.
    pub max_tokens_param: &'static str,
    pub temperature: f64,
    pub top_p: f64,
    pub stop: Vec<String>,
    pub seed: Option<u64>,
    pub stream: bool,
    pub include_usage: bool,
    /// Per-token log-probabilities wanted.
    pub logprobs: bool,
    /// How many alternatives with each token.
    pub top_logprobs: usize,
}

pub const MAX_N: usize = 16;

pub fn parse_chat(body: &[u8]) -> Result<Request, ApiError> {
    let map = object(body)?;
    let messages = match map.get("messages") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, m)| message(i, m))
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid(
                "messages",
                "`messages` must not be empty",
            ))
        }
        Some(other) => return Err(type_error("messages", "an array of messages", other)),
        None => return Err(missing("messages")),
    };
    let (max_tokens, max_tokens_param) = match uint(&map, "max_completion_tokens", 1, usize::MAX)? {
        Some(v) => (Some(v), "max_completion_tokens"),
        None => (uint(&map, "max_tokens", 1, usize::MAX)?, "max_tokens"),
    };
    let logprobs = boolean(&map, "logprobs")?.unwrap_or(false);
    let top_logprobs = uint(&map, "top_logprobs", 0, 20)?.unwrap_or(0);
    if top_logprobs > 0 && !logprobs {
        return Err(ApiError::invalid(
            "top_logprobs",
            "`top_logprobs` needs `logprobs` set to true",
        ));
    }
    common(
        &map,
        Prompt::Chat(messages),
        max_tokens,
        max_tokens_param,
        logprobs,
        top_logprobs,
    )
}

pub fn parse_completion(body: &[u8]) -> Result<Request, ApiError> {
    let map = object(body)?;
    let prompt = match map.get("prompt") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_owned()
        }
        Some(Value::String(_)) => {
            return Err(ApiError::invalid("prompt", "`prompt` must not be empty"))
        }
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid(
                "prompt",
                "`prompt` must be a string (or a list of exactly one string)",
            ))
        }
        Some(other) => return Err(type_error("prompt", "a string", other)),
        None => return Err(missing("prompt")),
    };
    let max_tokens = Some(uint(&map, "max_tokens", 1, usize::MAX)?.unwrap_or(16));
    let top = uint(&map, "logprobs", 0, 5)?;
    common(
        &map,
        Prompt::Text(prompt),
        max_tokens,
        "max_tokens",
        top.is_some(),
        top.unwrap_or(0),
    )
}

fn common(
    map: &Map<String, Value>,
    prompt: Prompt,
    max_tokens: Option<usize>,
    max_tokens_param: &'static str,
    logprobs: bool,
    top_logprobs: usize,
) -> Result<Request, ApiError> {
    let model = match map.get("model") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(type_error("model", "a string", other)),
        None => return Err(missing("model")),
    };
    let temperature = number(map, "temperature", 0.0, 2.0)?.unwrap_or(1.0);
    let top_p = number(map, "top_p", 0.0, 1.0)?.unwrap_or(1.0);
    if top_p == 0.0 {
        return Err(ApiError::invalid("top_p", "`top_p` must be in (0, 1]"));
    }
    let stop = match map.get("stop") {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.len() <= 4 => items
            .iter()
            .map(|s| match s {
                Value::String(s) => Ok(s.clone()),
                other => Err(type_error(
                    "stop",
                    "a string or a list of up to 4 strings",
                    other,
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid("stop", "`stop` takes at most 4 strings"))
        }
        Some(other) => {
            return Err(type_error(
                "stop",
                "a string or a list of up to 4 strings",
                other,
            ))
        }
    };
    let seed = match map.get("seed") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_i64().is_some() || n.as_u64().is_some() => {
            Some(n.as_u64().unwrap_or_else(|| n.as_i64().unwrap_or(0) as u64))
        }
        Some(other) => return Err(type_error("seed", "an integer", other)),
    };
    let include_usage = match map.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(type_error(
                    "stream_options.include_usage",
                    "a boolean",
                    other,
                ))
            }
        },
        Some(other) => return Err(type_error("stream_options", "an object", other)),
    };
    for (field, neutral) in [("presence_penalty", 0.0), ("frequency_penalty", 0.0)] {
        if let Some(v) = number(map, field, -2.0, 2.0)? {
            if v != neutral {
                return Err(ApiError::invalid(
                    field,
                    format!("`{field}` is not supported (only 0)"),
                ));
            }
        }
    }
    Ok(Request {
        model,
        prompt,
        n: uint(map, "n", 1, MAX_N)?.unwrap_or(1),
        max_tokens,
        max_tokens_param,
        temperature,
        top_p,
        stop,
        seed,
        stream: boolean(map, "stream")?.unwrap_or(false),
        include_usage,
        logprobs,
        top_logprobs,
    })
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError {
            param: None,
            ..ApiError::invalid("", "The request body must be a JSON object")
        }),
        Err(e) => Err(ApiError {
            param: None,
            ..ApiError::invalid("", format!("The request body is not valid JSON: {e}"))
        }),
    }
}

fn message(i: usize, m: &Value) -> Result<ChatMessage, ApiError> {
    let Value::Object(m) = m else {
        return Err(type_error(&format!("messages[{i}]"), "an object", m));
    };
    let role = match m.get("role") {
        Some(Value::String(r))
            if ["system", "developer", "user", "assistant", "tool"].contains(&r.as_str()) =>
        {
            if r == "developer" {
                "system".to_owned()
            } else {
                r.clone()
            }
        }
        Some(Value::String(r)) => {
            return Err(ApiError::invalid(
                &format!("messages[{i}].role"),
                format!("unknown role `{r}` (system, developer, user, assistant, tool)"),
            ))
        }
        Some(other) => {
            return Err(type_error(
                &format!("messages[{i}].role"),
                "a string",
                other,
            ))
        }
        None => return Err(missing(&format!("messages[{i}].role"))),
    };
    let param = format!("messages[{i}].content");
    let content = match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        // Content parts: only text parts can be read by a text model.
        Some(Value::Array(parts)) => parts
            .iter()
            .map(
                |p| match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => Ok(t.as_str()),
                    _ => Err(ApiError::invalid(
                        &param,
                        "only text content parts are supported",
                    )),
                },
            )
            .collect::<Result<Vec<_>, _>>()?
            .concat(),
        Some(Value::Null) | None if role == "assistant" => String::new(),
        Some(other) => return Err(type_error(&param, "a string", other)),
        None => return Err(missing(&param)),
    };
    Ok(ChatMessage::new(role, content))
}

fn missing(param: &str) -> ApiError {
    ApiError::invalid(param, format!("Missing required parameter: `{param}`"))
        .with_code("missing_required_parameter")
}

fn type_error(param: &str, expected: &str, got: &Value) -> ApiError {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ApiError::invalid(param, format!("`{param}` must be {expected}, got {kind}"))
        .with_code("invalid_type")
}

fn boolean(map: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(type_error(key, "a boolean", other)),
    }
}

fn number(
    map: &Map<String, Value>,
    key: &str,
    min: f64,
    max: f64,
) -> Result<Option<f64>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(ApiError::invalid(
                key,
                format!("`{key}` must be between {min} and {max}, got {n}"),
            )),
        },
        Some(other) => Err(type_error(key, "a number", other)),
    }
}

fn uint(
    map: &Map<String, Value>,
    key: &str,
    min: usize,
    max: usize,
) -> Result<Option<usize>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64().map(|v| v as usize) {
            Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ if max == usize::MAX => Err(ApiError::invalid(
                key,
                format!("`{key}` must be an integer >= {min}, got {n}"),
            )),
            _ => Err(ApiError::invalid(
                key,
                format!("`{key}` must be an integer from {min} to {max}, got {n}"),
            )),
        },
        Some(other) => Err(type_error(key, "an integer", other)),
    }
}
