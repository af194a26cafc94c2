//! The HTTP handlers: `/v1/chat/completions`, `/v1/completions`, `/v1/models`, `/health`,
//! `/metrics`. A completion request is checked here (auth, fields, model, context window,
//! queue room), becomes a `worker::Job`, and its answer is collected whole or streamed as
//! server-sent events ending in `data: [DONE]`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tiller_model::generate::row_seed;
use tiller_model::{FinishReason, Sampling, SamplingOption, SeqParams};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::error::ApiError;
use crate::openai::{self, Endpoint, Header, TokenLogprob};
use crate::params::{parse_chat, parse_completion, Prompt, Request};
use crate::worker::{Job, Out};
use crate::{AppState, ModelHandle};

pub async fn chat(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    complete(&state, &headers, &body, Endpoint::Chat)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    complete(&state, &headers, &body, Endpoint::Text)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = state.authorize(&headers) {
        return e.into_response();
    }
    let data: Vec<Value> = state
        .models
        .iter()
        .map(|m| json!({"id": m.name, "object": "model", "created": m.created, "owned_by": "tiller"}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

pub async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = crate::metrics::render(state.models.iter().map(|m| (m.name.as_str(), &*m.metrics)));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

pub async fn fallback(uri: Uri) -> Response {
    ApiError::not_found(uri.path()).into_response()
}

async fn complete(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    state.authorize(headers)?;
    let req = match endpoint {
        Endpoint::Chat => parse_chat(body)?,
        Endpoint::Text => parse_completion(body)?,
    };
    let model = state
        .model(&req.model)
        .ok_or_else(|| ApiError::model_not_found(&req.model))?;
    let (prompt, samples) = job_parts(model, &req)?;
    let n = samples.len();
    if !model.metrics.try_reserve(n, state.limit) {
        model
            .metrics
            .rejected
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        return Err(ApiError::queue_full(state.limit));
    }
    let (tx, rx) = unbounded_channel();
    let job = Job {
        prompt,
        samples,
        tx,
        submitted: Instant::now(),
    };
    if !model.submit(job) {
        model.metrics.release(n);
        return Err(ApiError::unavailable("The server is shutting down"));
    }
    let header = Header {
        id: format!(
            "{}-{}",
            match endpoint {
                Endpoint::Chat => "chatcmpl",
                Endpoint::Text => "cmpl",
            },
            state.next_id()
        ),
        created: now(),
        model: model.name.clone(),
        endpoint,
    };
    let answer = Answer::new(model.clone(), header, n, req.logprobs, req.include_usage);
    if req.stream {
        Ok(stream(answer, rx).into_response())
    } else {
        collect(answer, rx).await
    }
}

/// The prompt's token ids and one `SeqParams` per sample, with every check that needs
/// the model (template, context window).
fn job_parts(model: &ModelHandle, req: &Request) -> Result<(Vec<u32>, Vec<SeqParams>), ApiError> {
    let (prompt, prompt_param) = match &req.prompt {
        Prompt::Chat(messages) => {
            let template = model
                .tokenizer
                .require_chat_template()
                .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
            let text = template
                .apply(messages, true)
                .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
            let ids = model.tokenizer.encode(&text, false);
            (
                ids.map_err(|e| ApiError::invalid("messages", e.to_string()))?,
                "messages",
            )
        }
        Prompt::Text(text) => {
            let ids = model.tokenizer.encode(text, true);
            (
                ids.map_err(|e| ApiError::invalid("prompt", e.to_string()))?,
                "prompt",
            )
        }
    };
    let context = model.info.context;
    if prompt.is_empty() {
        return Err(ApiError::invalid(prompt_param, "The prompt has no tokens"));
    }
    if prompt.len() >= context {
        return Err(ApiError::invalid(
            prompt_param,
            format!(
                "This model's maximum context length is {context} tokens; the prompt has {} tokens",
                prompt.len()
            ),
        )
        .with_code("context_length_exceeded"));
    }
    let max_new_tokens = match req.max_tokens {
        Some(m) if prompt.len() + m > context => {
            return Err(ApiError::invalid(
                req.max_tokens_param,
                format!(
                    "This model's maximum context length is {context} tokens; the prompt has {} tokens and `{}` asks for {m} more",
                    prompt.len(),
                    req.max_tokens_param
                ),
            )
            .with_code("context_length_exceeded"))
        }
        Some(m) => m,
        None => context - prompt.len(),
    };
    let sampling = Sampling::try_from_options(req.temperature, None, Some(req.top_p)).map_err(
        |(option, message)| {
            let param = match option {
                SamplingOption::Temperature => "temperature",
                SamplingOption::TopP => "top_p",
            };
            ApiError::invalid(param, format!("`{param}` {message}"))
        },
    )?;
    let seed = req.seed.unwrap_or_else(random_seed);
    let samples = (0..req.n)
        .map(|i| SeqParams {
            max_new_tokens,
            sampling,
            seed: row_seed(seed, i),
            stop_token_ids: model.info.stop_token_ids.clone(),
            stop_strings: req.stop.clone(),
            top_logprobs: req.top_logprobs,
        })
        .collect();
    Ok((prompt, samples))
}

/// A response being put together from the engine's outputs.
struct Answer {
    model: Arc<ModelHandle>,
    header: Header,
    logprobs: bool,
    include_usage: bool,
    choices: Vec<ChoiceState>,
    prompt_tokens: usize,
}

#[derive(Default)]
struct ChoiceState {
    text: String,
    tokens: Vec<TokenLogprob>,
    completion_tokens: usize,
    finish: Option<FinishReason>,
    started: bool,
}

impl Answer {
    fn new(
        model: Arc<ModelHandle>,
        header: Header,
        n: usize,
        logprobs: bool,
        include_usage: bool,
    ) -> Self {
        Answer {
            model,
            header,
            logprobs,
            include_usage,
            choices: (0..n).map(|_| ChoiceState::default()).collect(),
            prompt_tokens: 0,
        }
    }

    fn done(&self) -> bool {
        self.choices.iter().all(|c| c.finish.is_some())
    }

    fn usage(&self) -> Value {
        openai::usage(
            self.prompt_tokens,
            self.choices.iter().map(|c| c.completion_tokens).sum(),
        )
    }

    /// Applies one output; returns the stream chunk it makes, if any.
    fn apply(&mut self, out: Out) -> Result<Option<Value>, ApiError> {
        match out {
            Out::Token {
                index,
                token,
                logprob,
                top_logprobs,
                text,
            } => {
                let Some(c) = self.choices.get_mut(index) else {
                    return Ok(None);
                };
                let offset = c.text.len();
                c.text.push_str(&text);
                let entry = TokenLogprob {
                    token,
                    logprob,
                    top: top_logprobs,
                };
                c.tokens.push(entry.clone());
                if text.is_empty() && !self.logprobs && c.started {
                    return Ok(None);
                }
                let first = !c.started;
                c.started = true;
                let logprobs = self.logprobs.then(|| {
                    openai::logprobs(
                        &self.model.tokenizer,
                        self.header.endpoint,
                        &[entry],
                        offset,
                    )
                });
                Ok(Some(openai::chunk(
                    &self.header,
                    index,
                    &text,
                    first,
                    logprobs,
                    None,
                )))
            }
            Out::Finished {
                index,
                finish,
                text,
                tokens,
                prompt_tokens,
            } => {
                self.prompt_tokens = prompt_tokens;
                let Some(c) = self.choices.get_mut(index) else {
                    return Ok(None);
                };
                c.text.push_str(&text);
                c.completion_tokens = tokens.len();
                c.finish = Some(finish);
                if finish == FinishReason::Eos {
                    c.tokens.pop(); // the stop token is not part of the answer
                }
                let first = !c.started;
                c.started = true;
                Ok(Some(openai::chunk(
                    &self.header,
                    index,
                    &text,
                    first,
                    None,
                    Some(finish),
                )))
            }
            Out::Failed(message) => Err(ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message,
                kind: "server_error",
                param: None,
                code: None,
                retry_after: None,
            }),
        }
    }

    fn whole(&self) -> Value {
        let choices = self
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let logprobs = self.logprobs.then(|| {
                    openai::logprobs(&self.model.tokenizer, self.header.endpoint, &c.tokens, 0)
                });
                openai::choice(
                    &self.header,
                    i,
                    &c.text,
                    logprobs,
                    c.finish.unwrap_or(FinishReason::Length),
                )
            })
            .collect();
        openai::response(&self.header, choices, self.usage())
    }
}

async fn collect(mut answer: Answer, mut rx: UnboundedReceiver<Out>) -> Result<Response, ApiError> {
    while !answer.done() {
        match rx.recv().await {
            Some(out) => {
                answer.apply(out)?;
            }
            None => {
                return Err(ApiError::unavailable(
                    "The engine stopped before the answer was complete",
                ))
            }
        }
    }
    Ok(Json(answer.whole()).into_response())
}

/// Server-sent events: one chunk per output, the usage chunk when asked, then `[DONE]`.
/// Dropping the stream (a client that went away) drops `rx`, which cancels the job.
fn stream(
    answer: Answer,
    rx: UnboundedReceiver<Out>,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    struct Ctx {
        answer: Answer,
        rx: UnboundedReceiver<Out>,
        queued: VecDeque<SseEvent>,
        ended: bool,
    }
    let ctx = Ctx {
        answer,
        rx,
        queued: VecDeque::new(),
        ended: false,
    };
    let events = futures_util::stream::unfold(ctx, |mut ctx| async move {
        loop {
            if let Some(event) = ctx.queued.pop_front() {
                return Some((Ok(event), ctx));
            }
            if ctx.ended {
                return None;
            }
            let data = |v: &Value| SseEvent::default().data(v.to_string());
            match ctx.rx.recv().await {
                Some(out) => match ctx.answer.apply(out) {
                    Ok(Some(chunk)) => ctx.queued.push_back(data(&chunk)),
                    Ok(None) => {}
                    Err(e) => {
                        ctx.queued.push_back(data(&e.body()));
                        ctx.ended = true;
                    }
                },
                None => {
                    let e =
                        ApiError::unavailable("The engine stopped before the answer was complete");
                    ctx.queued.push_back(data(&e.body()));
                    ctx.ended = true;
                }
            }
            if !ctx.ended && ctx.answer.done() {
                if ctx.answer.include_usage {
                    let usage = openai::usage_chunk(&ctx.answer.header, ctx.answer.usage());
                    ctx.queued.push_back(data(&usage));
                }
                ctx.queued.push_back(SseEvent::default().data("[DONE]"));
                ctx.ended = true;
            }
        }
    });
    Sse::new(events)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A seed for a request that gave none: different per request.
fn random_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    row_seed(nanos, std::process::id() as usize)
}
