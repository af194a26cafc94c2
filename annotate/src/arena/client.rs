//! One streamed answer from an OpenAI-compatible endpoint: `POST
//! {base}/v1/chat/completions` with `stream: true`, read as server-sent events, each piece
//! of text handed on as it arrives.
//!
//! The HTTP client is hyper-util's (already in the build through axum; plain HTTP, no TLS,
//! so https endpoints are refused when configured). Every wait is bounded: the TCP
//! connection (`connect_timeout_secs`), the first piece of text (`first_token_timeout_secs`,
//! counted from the request) and the whole answer (`answer_timeout_secs`); an answer
//! longer than `max_answer_chars` is cut and its stream closed. An endpoint that ignores
//! `stream` and answers one JSON body is read too.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::http::{header, Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::time::{timeout_at, Instant};

use super::sse::SseReader;
use crate::error::{AppError, Result};
use crate::store::{ArenaConfig, ArenaModel};

/// How much of an error body is read for its message.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// How an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    /// The model stopped by itself (or the endpoint did not say why).
    Stop,
    /// `max_tokens` or `max_answer_chars` cut it.
    Length,
}

/// The chat completions URL of `base_url`, or why it cannot be used.
pub fn chat_url(base_url: &str) -> std::result::Result<Uri, String> {
    let base = base_url.trim().trim_end_matches('/');
    if base.starts_with("https://") {
        return Err(
            "https is not supported: the arena's HTTP client has no TLS; reach the \
                    endpoint over http on loopback or a private network (or a local TLS proxy)"
                .into(),
        );
    }
    if !base.starts_with("http://") {
        return Err(format!("{base_url:?} is not an http:// URL"));
    }
    let base = base.strip_suffix("/v1").unwrap_or(base);
    let uri: Uri = format!("{base}/v1/chat/completions")
        .parse()
        .map_err(|err| format!("{base_url:?} is not a valid URL: {err}"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{base_url:?} has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("{base_url:?}: a base URL takes no query string"));
    }
    Ok(uri)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Streams `model`'s answer to a one-turn chat `prompt`, calling `on_text` with each new
/// piece; `on_text` returning false (nobody listens any more) stops early. Returns how
/// the answer ended. Failures are [`AppError::ModelEndpoint`] with a message fit for the
/// annotator (it never names the model or its URL; the caller logs those).
pub async fn stream_answer(
    model: &ArenaModel,
    config: &ArenaConfig,
    prompt: &str,
    mut on_text: impl FnMut(&str) -> bool,
) -> Result<Finish> {
    let fail = |message: String| AppError::ModelEndpoint(message);
    let uri = chat_url(&model.base_url).map_err(fail)?;
    let mut body = json!({
        "model": model.model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": true,
        "max_tokens": config.max_tokens,
    });
    if let Some(t) = config.temperature {
        body["temperature"] = json!(t);
    }
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "text/event-stream");
    if let Some(key) = &model.api_key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|err| fail(format!("cannot build the request: {err}")))?;

    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(secs(config.connect_timeout_secs)));
    connector.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);

    let start = Instant::now();
    let whole = start + secs(config.answer_timeout_secs);
    let first = (start + secs(config.first_token_timeout_secs)).min(whole);
    let too_slow = |deadline: Instant| {
        if deadline == whole {
            fail(format!(
                "the model did not finish its answer within {} s",
                config.answer_timeout_secs
            ))
        } else {
            fail(format!(
                "the model did not start answering within {} s",
                config.first_token_timeout_secs
            ))
        }
    };
    let response = match timeout_at(first, client.request(request)).await {
        Err(_) => return Err(too_slow(first)),
        Ok(Err(err)) if err.is_connect() => {
            return Err(fail(format!(
                "cannot connect to the model's endpoint ({})",
                root_cause(&err)
            )))
        }
        Ok(Err(err)) => {
            return Err(fail(format!(
                "the model's endpoint failed: {}",
                root_cause(&err)
            )))
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let mut body = response.into_body();
    if !status.is_success() {
        let text = read_some(&mut body, first, MAX_ERROR_BODY).await;
        return Err(fail(status_message(status, &text)));
    }
    if is_json {
        // An endpoint that does not stream: the whole answer in one body.
        let text = read_some(&mut body, whole, usize::MAX).await;
        let value: Value = serde_json::from_str(&text)
            .map_err(|err| fail(format!("the endpoint's answer is not JSON: {err}")))?;
        let content = value["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| {
                fail("the endpoint's answer has no `choices[0].message.content`".into())
            })?;
        let (cut, was_cut) = cut_to(content, config.max_answer_chars);
        on_text(cut);
        let length = was_cut || value["choices"][0]["finish_reason"] == "length";
        return Ok(if length { Finish::Length } else { Finish::Stop });
    }

    let mut reader = SseReader::default();
    let mut chars = 0usize;
    let mut started = false;
    let mut finish = None;
    loop {
        let deadline = if started { whole } else { first };
        let frame = match timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(too_slow(deadline)),
            Ok(None) => break,
            Ok(Some(Err(err))) => {
                return Err(fail(format!(
                    "the answer's stream broke: {}",
                    root_cause(&err)
                )))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        for event in reader.push(data) {
            if event.trim() == "[DONE]" {
                return Ok(finish.unwrap_or(Finish::Stop));
            }
            let value: Value = serde_json::from_str(&event)
                .map_err(|err| fail(format!("the stream sent an event that is not JSON: {err}")))?;
            if let Some(error) = value.get("error") {
                let message = error["message"].as_str().unwrap_or("no message");
                return Err(fail(format!("the endpoint reported an error: {message}")));
            }
            let choice = &value["choices"][0];
            match choice["finish_reason"].as_str() {
                Some("length") => finish = Some(Finish::Length),
                Some(_) => finish = Some(Finish::Stop),
                None => {}
            }
            let text = choice["delta"]["content"].as_str().unwrap_or("");
            if text.is_empty() {
                started |= finish.is_some();
                continue;
            }
            started = true;
            let (piece, was_cut) = cut_to(text, config.max_answer_chars - chars);
            chars += piece.chars().count();
            if !piece.is_empty() && !on_text(piece) {
                return Ok(Finish::Stop);
            }
            if was_cut {
                // Dropping the body closes the connection: the endpoint stops generating.
                return Ok(Finish::Length);
            }
        }
    }
    match finish {
        Some(finish) => Ok(finish),
        None if reader.finish().is_some_and(|e| e.trim() == "[DONE]") => Ok(Finish::Stop),
        None => Err(fail(
            "the answer's stream ended before `data: [DONE]`".into(),
        )),
    }
}

/// The first `max` characters of `text`, and whether anything was cut.
fn cut_to(text: &str, max: usize) -> (&str, bool) {
    match text.char_indices().nth(max) {
        Some((at, _)) => (&text[..at], true),
        None => (text, false),
    }
}

/// Reads up to `limit` bytes of `body` before `deadline` (what arrived so far on timeout).
async fn read_some(body: &mut Incoming, deadline: Instant, limit: usize) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < limit {
        match timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    bytes.truncate(limit.min(bytes.len()));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// "the endpoint answered 404 Not Found: model `x` not found" from an OpenAI-style error
/// body (`{"error": {"message"}}`), or the start of whatever text it sent.
fn status_message(status: StatusCode, body: &str) -> String {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| match &v["error"] {
            Value::String(s) => Some(s.clone()),
            e => e["message"].as_str().map(str::to_string),
        })
        .unwrap_or_else(|| cut_to(body.trim(), 200).0.to_string());
    if message.is_empty() {
        format!("the endpoint answered {status}")
    } else {
        format!("the endpoint answered {status}: {message}")
    }
}

/// The innermost error's text ("Connection refused (os error 111)").
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(
            chat_url("http://127.0.0.1:8000").unwrap().to_string(),
            "http://127.0.0.1:8000/v1/chat/completions"
        );
        assert_eq!(
            chat_url("http://host:1/v1/").unwrap().to_string(),
            "http://host:1/v1/chat/completions"
        );
        assert!(chat_url("https://api.example.com")
            .unwrap_err()
            .contains("TLS"));
        assert!(chat_url("ftp://x").unwrap_err().contains("not an http://"));
        assert!(chat_url("http://").is_err());
    }

    #[test]
    fn cuts_count_characters() {
        assert_eq!(cut_to("héllo", 2), ("hé", true));
        assert_eq!(cut_to("hé", 2), ("hé", false));
        assert_eq!(
            status_message(
                StatusCode::NOT_FOUND,
                r#"{"error": {"message": "no model x"}}"#
            ),
            "the endpoint answered 404 Not Found: no model x"
        );
    }
}
