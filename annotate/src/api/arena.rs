//! The arena's HTTP side: the admin sets a campaign's models
//! (`/api/admin/campaigns/{id}/arena`), an annotator starts a battle with a prompt
//! (`POST /api/me/arena/battles`, answered with the battle's event stream) and, after
//! voting, asks who was who (`GET /api/me/arena/reveal/{assignment}`). The battle itself
//! is `crate::arena`.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;

use super::extract::{parse_id, Admin, Annotator, JsonBody};
use super::wire::{ArenaSettings, BattleInput};
use super::AppState;
use crate::arena::{self, BattleRequest};
use crate::error::{AppError, Result};
use crate::store::arena::{
    check_free, check_prompt, config_of, reveal as reveal_models, set_config,
};
use crate::store::{ArenaConfig, Reveal};

/// `POST /api/admin/campaigns/{id}/arena`: makes the campaign an arena with these models
/// (or replaces them). Keys are answered as `***`.
pub async fn set_arena(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    JsonBody(config): JsonBody<ArenaConfig>,
) -> Result<Json<ArenaSettings>> {
    let campaign_id = parse_id("campaign id", &id)?;
    let config = state
        .store
        .write_async(move |conn| set_config(conn, campaign_id, config))
        .await?;
    Ok(Json(ArenaSettings {
        arena: Some(config.redacted()),
    }))
}

/// `GET /api/admin/campaigns/{id}/arena`: the campaign's models (`null` for a pairwise
/// campaign), keys as `***`.
pub async fn get_arena(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<ArenaSettings>> {
    let campaign_id = parse_id("campaign id", &id)?;
    let config = state
        .store
        .read_async(move |conn| {
            crate::store::campaigns::campaign(conn, campaign_id)?;
            config_of(conn, campaign_id)
        })
        .await?;
    Ok(Json(ArenaSettings {
        arena: config.map(|c| c.redacted()),
    }))
}

/// `POST /api/me/arena/battles` `{"prompt"}`: two models answer, streamed as
/// newline-delimited JSON events (`delta`, `done`, then `ready` with the assignment to
/// vote on, or `failed`). Refused before any model is called when the prompt is empty or
/// too long (400 naming `prompt`), consent is missing, the campaign is not an arena, or
/// the annotator's last battle still waits for its vote (409).
pub async fn battle(
    State(state): State<AppState>,
    me: Annotator,
    JsonBody(input): JsonBody<BattleInput>,
) -> Result<Response> {
    me.require_consent()?;
    let prompt = check_prompt(&input.prompt)?;
    let (annotator_id, campaign_id) = (me.id, me.campaign_id);
    let config = state
        .store
        .read_async(move |conn| {
            check_free(conn, annotator_id)?;
            config_of(conn, campaign_id)
        })
        .await?
        .ok_or_else(|| {
            AppError::Conflict("this campaign is not an arena: there are no models to ask".into())
        })?;
    let (models, swapped) = arena::draw(&config).ok_or_else(|| {
        AppError::Conflict("the arena has fewer than two models configured".into())
    })?;
    Ok(arena::start(
        state.store.clone(),
        BattleRequest {
            annotator_id,
            campaign_id,
            prompt,
            config,
            models,
            swapped,
        },
    ))
}

/// `GET /api/me/arena/reveal/{assignment}`: which model answered A and B, once voted.
pub async fn reveal(
    State(state): State<AppState>,
    me: Annotator,
    Path(assignment): Path<String>,
) -> Result<Json<Reveal>> {
    let assignment_id = parse_id("assignment id", &assignment)?;
    let revealed = state
        .store
        .read_async(move |conn| reveal_models(conn, me.id, assignment_id))
        .await?;
    Ok(Json(revealed))
}
