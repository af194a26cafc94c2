//! The annotator's API (`/api/me/...`): everything is scoped to the caller's token, so
//! an annotator can only see and change their own assignments and votes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::extract::{Annotator, JsonBody};
use super::wire::{
    ConsentAccepted, ConsentInput, Me, MeCampaign, Next, SkipInput, Skipped, Undone, WithdrawInput,
    Withdrawn,
};
use super::AppState;
use crate::error::{AppError, Result};
use crate::store::{campaigns, consent, queue, RecordedBy, VoteInput, VoteReceipt};

/// `GET /api/me`: who I am, the campaign's guidelines and consent text, my progress.
pub async fn me(State(state): State<AppState>, me: Annotator) -> Result<Json<Me>> {
    let (campaign, progress) = state
        .store
        .read_async(move |conn| {
            Ok((
                campaigns::campaign(conn, me.campaign_id)?,
                queue::progress(conn, me.id)?,
            ))
        })
        .await?;
    Ok(Json(Me {
        name: me.name,
        campaign: MeCampaign {
            name: campaign.name,
            guidelines: campaign.guidelines,
            consent: campaign.consent,
            consent_version: campaign.consent_version,
            consent_sha256: campaign.consent_sha256,
            kind: campaign.kind,
            max_prompt_chars: crate::store::MAX_PROMPT_CHARS,
        },
        consent_at: me.consent_at,
        consent_current: me.consent_current,
        withdrawn_at: me.withdrawn_at,
        progress,
    }))
}

/// `POST /api/me/consent` with `{"accept": true, "version": N}`: accepts the current
/// consent statement (the first time per version is kept).
pub async fn consent(
    State(state): State<AppState>,
    me: Annotator,
    JsonBody(input): JsonBody<ConsentInput>,
) -> Result<Json<ConsentAccepted>> {
    if !input.accept {
        return Err(AppError::field(
            "accept",
            "must be true to take part; close the page to decline",
        ));
    }
    let statement = state
        .store
        .write_async(move |conn| consent::accept(conn, me.id, input.version))
        .await?;
    state.store.forget_identities();
    Ok(Json(statement.into()))
}

/// `POST /api/me/withdraw` with `{"confirm": true}`: withdraws my consent. My votes leave
/// every export; this link stops working for votes.
pub async fn withdraw(
    State(state): State<AppState>,
    me: Annotator,
    JsonBody(input): JsonBody<WithdrawInput>,
) -> Result<Json<Withdrawn>> {
    if !input.confirm {
        return Err(AppError::field(
            "confirm",
            "must be true: withdrawing cannot be undone",
        ));
    }
    let store = state.store.clone();
    let withdrawal =
        tokio::task::spawn_blocking(move || store.withdraw(me.id, RecordedBy::Annotator))
            .await
            .map_err(|err| AppError::Background(err.to_string()))??;
    Ok(Json(Withdrawn { withdrawal }))
}

/// `POST /api/me/next`: my current item (the same one until I vote or skip; showing it
/// restarts its lease), or `"assignment": null` when my queue is finished. A POST because
/// it writes: it assigns an item and releases expired leases.
pub async fn next(State(state): State<AppState>, me: Annotator) -> Result<Json<Next>> {
    me.require_consent()?;
    let lease = state.limits.lease;
    let (assignment, progress) = state
        .store
        .next_with_progress(me.id, me.campaign_id, lease)
        .await?;
    Ok(Json(Next {
        assignment,
        progress,
    }))
}

/// `POST /api/me/votes`: votes on one of my pending assignments. Answered only after the
/// vote is committed to disk.
pub async fn vote(
    State(state): State<AppState>,
    me: Annotator,
    JsonBody(input): JsonBody<VoteInput>,
) -> Result<(StatusCode, Json<VoteReceipt>)> {
    me.require_consent()?;
    let receipt = state.store.vote(me.id, input).await?;
    Ok((StatusCode::CREATED, Json(receipt)))
}

/// `POST /api/me/skip`: hands a pending item back; I will not get it again.
pub async fn skip(
    State(state): State<AppState>,
    me: Annotator,
    JsonBody(input): JsonBody<SkipInput>,
) -> Result<Json<Skipped>> {
    me.require_consent()?;
    state
        .store
        .write_async(move |conn| queue::skip(conn, me.id, input.assignment_id))
        .await?;
    Ok(Json(Skipped {
        skipped: input.assignment_id,
    }))
}

/// `POST /api/me/undo`: withdraws my last vote; its item becomes my current one again.
pub async fn undo(State(state): State<AppState>, me: Annotator) -> Result<Json<Undone>> {
    me.require_consent()?;
    let undone = state
        .store
        .write_async(move |conn| queue::undo(conn, me.id))
        .await?;
    Ok(Json(Undone { undone }))
}
