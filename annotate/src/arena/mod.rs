//! Live battles of arena campaigns: two models drawn at random answer an annotator's
//! prompt at once, streamed to the page side by side as newline-delimited JSON events
//! ([`ArenaEvent`]); when both have finished the battle is stored as an item with the
//! author's pending assignment (`store::arena::record`), and the page votes on it as on
//! any other item.
//!
//! Invariants:
//! - The browser only talks to this server; endpoint URLs and keys never reach it, and
//!   which model is A or B is only told after the vote (`store::arena::reveal`).
//! - No store call waits on a model: the models are called from a spawned task with no
//!   connection or lock held, and the battle is written in one short transaction after.
//! - A failed or slow endpoint fails the battle with a message for the annotator (the
//!   page offers a retry), logged with the model's name and URL; nothing is stored.
//! - An annotator who closes the page stops the battle: both upstream requests are
//!   dropped, which closes their connections, so the endpoints stop generating.

pub mod client;
pub mod sse;

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::store::arena::{record, Battle};
use crate::store::{Answer, ArenaConfig, ArenaModel, Assignment, Message, Prompt, Store};
use client::{stream_answer, Finish};

/// The side of the page an answer is shown on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Side {
    A,
    B,
}

/// One line of a battle's stream (`POST /api/me/arena/battles`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum ArenaEvent {
    /// More text of one side's answer.
    Delta { side: Side, text: String },
    /// One side's answer is complete.
    Done { side: Side, finish: Finish },
    /// The battle failed; nothing was stored. `message` is for the annotator.
    Failed { message: String },
    /// Both answers are stored: vote on this assignment.
    Ready { assignment: Assignment },
}

/// Who asks, what, and which two models (in stored order) on which side.
pub struct BattleRequest {
    pub annotator_id: i64,
    pub campaign_id: i64,
    pub prompt: String,
    pub config: ArenaConfig,
    /// `models[0]` answers as the item's first answer, `models[1]` as its second.
    pub models: [ArenaModel; 2],
    /// The second answer is shown as A.
    pub swapped: bool,
}

/// Draws two different models of `config` (uniformly) and which is shown as A.
pub fn draw(config: &ArenaConfig) -> Option<([ArenaModel; 2], bool)> {
    use rand::Rng;
    let n = config.models.len();
    if n < 2 {
        return None;
    }
    let mut rng = rand::rng();
    let first = rng.random_range(0..n);
    let mut second = rng.random_range(0..n - 1);
    if second >= first {
        second += 1;
    }
    let models = [config.models[first].clone(), config.models[second].clone()];
    Some((models, rng.random::<bool>()))
}

/// Starts the battle and returns its event stream as the HTTP response.
pub fn start(store: Store, battle: BattleRequest) -> Response {
    let (events, rx) = mpsc::unbounded_channel::<ArenaEvent>();
    tokio::spawn(async move {
        let watch = events.clone();
        let annotator = battle.annotator_id;
        tokio::select! {
            () = watch.closed() => tracing::info!(
                annotator,
                "arena battle stopped: the annotator left"
            ),
            () = run(store, battle, events) => {}
        }
    });
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let mut line = serde_json::to_vec(&event).unwrap_or_else(|_| b"{}".to_vec());
        line.push(b'\n');
        Some((Ok::<_, Infallible>(Bytes::from(line)), rx))
    });
    let mut response = Body::from_stream(lines).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    // Proxies (nginx) must pass the lines on as they come.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

async fn run(store: Store, battle: BattleRequest, events: mpsc::UnboundedSender<ArenaEvent>) {
    let side = |index: usize| match (index == 0) != battle.swapped {
        true => Side::A,
        false => Side::B,
    };
    let answer = |index: usize| {
        let events = events.clone();
        let model = &battle.models[index];
        let config = &battle.config;
        let prompt = battle.prompt.as_str();
        async move {
            let side = side(index);
            let mut text = String::new();
            let finish = stream_answer(model, config, prompt, |piece| {
                text.push_str(piece);
                events
                    .send(ArenaEvent::Delta {
                        side,
                        text: piece.to_string(),
                    })
                    .is_ok()
            })
            .await
            .map_err(|err| {
                tracing::warn!(
                    campaign = battle.campaign_id,
                    model = %model.name,
                    base_url = %model.base_url,
                    error = %err,
                    "arena model failed"
                );
                format!("Answer {side:?} failed: {err}.")
            })?;
            let _ = events.send(ArenaEvent::Done { side, finish });
            Ok::<_, String>(Answer {
                model: model.name.clone(),
                text,
            })
        }
    };
    // The first failure drops the other request: a battle needs both answers.
    let answers = futures_util::future::try_join(answer(0), answer(1)).await;
    let event = match answers {
        Err(message) => ArenaEvent::Failed {
            message: format!("{message} Nothing was stored; press Retry to ask two models again."),
        },
        Ok((first, second)) => {
            let stored = Battle {
                annotator_id: battle.annotator_id,
                campaign_id: battle.campaign_id,
                prompt: Prompt::Messages(vec![Message {
                    role: "user".into(),
                    content: battle.prompt.clone(),
                }]),
                answers: [first, second],
                swapped: battle.swapped,
            };
            match store.write_async(move |conn| record(conn, stored)).await {
                Ok(assignment) => ArenaEvent::Ready { assignment },
                Err(err) => {
                    tracing::warn!(annotator = battle.annotator_id, error = %err, "arena battle not stored");
                    ArenaEvent::Failed {
                        message: format!("The answers could not be stored: {err}"),
                    }
                }
            }
        }
    };
    let _ = events.send(event);
}
