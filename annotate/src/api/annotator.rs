//! The annotator's API (`/api/me/...`): everything is scoped to the caller's token, so
//! an annotator can only see and change their own assignments and votes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Annotator, JsonBody};
use super::AppState;
use crate::error::{AppError, Result};
use crate::store::{campaigns, queue, VoteInput};

/// `GET /api/me`: who I am, the campaign's guidelines and consent text, my progress.
pub async fn me(State(state): State<AppState>, me: Annotator) -> Result<Json<Value>> {
    let (campaign, progress) = state
        .store
        .read_async(move |conn| {
            Ok((
                campaigns::campaign(conn, me.campaign_id)?,
                queue::progress(conn, me.id)?,
            ))
        })
        .await?;
    Ok(Json(json!({
        "name": me.name,
        "campaign": { "name": campaign.name, "guidelines": campaign.guidelines, "consent": campaign.consent },
        "consent_at": me.consent_at,
        "progress": progress,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    accept: bool,
}

/// `POST /api/me/consent` with `{"accept": true}`: records the time of consent (once).
pub async fn consent(
    State(state): State<AppState>,
    me: Annotator,
    JsonBody(input): JsonBody<ConsentInput>,
) -> Result<Json<Value>> {
    if !input.accept {
        return Err(AppError::field(
            "accept",
            "must be true to take part; close the page to decline",
        ));
    }
    let consent_at = state
        .store
        .write_async(move |conn| campaigns::record_consent(conn, me.id))
        .await?;
    Ok(Json(json!({ "consent_at": consent_at })))
}

/// `GET /api/me/next`: my current item (the same one until I vote or skip), or
/// `"assignment": null` when my queue is finished.
pub async fn next(State(state): State<AppState>, me: Annotator) -> Result<Json<Value>> {
    me.require_consent()?;
    let (assignment, progress) = state
        .store
        .write_async(move |conn| {
            let assignment = queue::next_assignment(conn, me.id, me.campaign_id)?;
            Ok((assignment, queue::progress(conn, me.id)?))
        })
        .await?;
    Ok(Json(
        json!({ "assignment": assignment, "progress": progress }),
    ))
}

/// `POST /api/me/votes`: votes on one of my pending assignments. Answered only after the
/// vote is committed to disk.
pub async fn vote(
    State(state): State<AppState>,
    me: Annotator,
    JsonBody(input): JsonBody<VoteInput>,
) -> Result<(StatusCode, Json<Value>)> {
    me.require_consent()?;
    let receipt = state
        .store
        .write_async(move |conn| queue::vote(conn, me.id, &input))
        .await?;
    Ok((StatusCode::CREATED, Json(json!(receipt))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipInput {
    assignment_id: i64,
}

/// `POST /api/me/skip`: hands a pending item back; I will not get it again.
pub async fn skip(
    State(state): State<AppState>,
    me: Annotator,
    JsonBody(input): JsonBody<SkipInput>,
) -> Result<Json<Value>> {
    me.require_consent()?;
    state
        .store
        .write_async(move |conn| queue::skip(conn, me.id, input.assignment_id))
        .await?;
    Ok(Json(json!({ "skipped": input.assignment_id })))
}

/// `POST /api/me/undo`: withdraws my last vote; its item becomes my current one again.
pub async fn undo(State(state): State<AppState>, me: Annotator) -> Result<Json<Value>> {
    me.require_consent()?;
    let receipt = state
        .store
        .write_async(move |conn| queue::undo(conn, me.id))
        .await?;
    Ok(Json(json!({ "undone": receipt })))
}
