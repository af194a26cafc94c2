//! The admin API (`/api/admin/...`): campaigns, annotator links, item uploads,
//! progress, agreement, leaderboard and export. Every handler takes the [`Admin`]
//! extractor, so annotator tokens are refused before any work is done.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{parse_id, Admin, JsonBody, QueryParams, TextBody};
use super::AppState;
use crate::error::{AppError, Result};
use crate::export::{Aggregation, ExportOptions, TiePolicy};
use crate::stats::{
    campaign_agreement, campaign_leaderboard, AgreementOptions, LeaderboardOptions,
};
use crate::store::{campaigns, items, parse_items_jsonl, reports, NewCampaign};

/// `GET /api/admin/campaigns`: every campaign with counts.
pub async fn list_campaigns(State(state): State<AppState>, _: Admin) -> Result<Json<Value>> {
    let list = state.store.read_async(campaigns::campaigns).await?;
    Ok(Json(json!({ "campaigns": list })))
}

/// `POST /api/admin/campaigns`: creates a campaign and its annotator links.
pub async fn create_campaign(
    State(state): State<AppState>,
    _: Admin,
    JsonBody(new): JsonBody<NewCampaign>,
) -> Result<(StatusCode, Json<Value>)> {
    let (campaign, links) = state
        .store
        .write_async(move |conn| campaigns::create_campaign(conn, &new))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "campaign": campaign, "annotators": links })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAnnotators {
    names: Vec<String>,
}

/// `POST /api/admin/campaigns/{id}/annotators`: more annotator links.
pub async fn add_annotators(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<NewAnnotators>,
) -> Result<(StatusCode, Json<Value>)> {
    let campaign_id = parse_id("campaign id", &id)?;
    let links = state
        .store
        .write_async(move |conn| campaigns::add_annotators(conn, campaign_id, &input.names))
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "annotators": links }))))
}

/// `POST /api/admin/campaigns/{id}/items` with a JSONL body: queues items, all or
/// nothing; a bad line is a 400 naming the line and field.
pub async fn upload_items(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    TextBody(text): TextBody,
) -> Result<(StatusCode, Json<Value>)> {
    let campaign_id = parse_id("campaign id", &id)?;
    let new_items = parse_items_jsonl(&text)?;
    if new_items.is_empty() {
        return Err(AppError::BadBody(
            "the upload holds no items (one JSON object per line)".into(),
        ));
    }
    let added = state
        .store
        .write_async(move |conn| items::add_items(conn, campaign_id, &new_items))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "added": added.item_ids.len(), "ready": added.ready, "pending": added.pending }),
        ),
    ))
}

/// `GET /api/admin/campaigns/{id}/progress`: per annotator and per item.
pub async fn progress(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let campaign_id = parse_id("campaign id", &id)?;
    let (annotators, items) = state
        .store
        .read_async(move |conn| {
            Ok((
                reports::annotator_progress(conn, campaign_id)?,
                reports::item_progress(conn, campaign_id)?,
            ))
        })
        .await?;
    Ok(Json(json!({ "annotators": annotators, "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementQuery {
    min_pair_overlap: Option<usize>,
    min_majority_items: Option<usize>,
    flag_below: Option<f64>,
}

/// `GET /api/admin/campaigns/{id}/agreement`: raw agreement, κ per pair, α, flags.
pub async fn agreement(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<AgreementQuery>,
) -> Result<Json<Value>> {
    let campaign_id = parse_id("campaign id", &id)?;
    let defaults = AgreementOptions::default();
    let options = AgreementOptions {
        min_pair_overlap: query.min_pair_overlap.unwrap_or(defaults.min_pair_overlap),
        min_majority_items: query
            .min_majority_items
            .unwrap_or(defaults.min_majority_items),
        flag_below: query.flag_below.unwrap_or(defaults.flag_below),
    };
    let report = state
        .store
        .read_async(move |conn| campaign_agreement(conn, campaign_id, options))
        .await?;
    Ok(Json(json!(report)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderboardQuery {
    bootstrap: Option<usize>,
    seed: Option<u64>,
}

/// `GET /api/admin/campaigns/{id}/leaderboard`: Bradley–Terry scores with 95% intervals.
pub async fn leaderboard(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<LeaderboardQuery>,
) -> Result<Json<Value>> {
    let campaign_id = parse_id("campaign id", &id)?;
    let bootstrap = query.bootstrap.unwrap_or(200);
    if bootstrap > 2000 {
        return Err(AppError::field("bootstrap", "must be at most 2000"));
    }
    let options = LeaderboardOptions {
        bootstrap_samples: bootstrap,
        seed: query.seed.unwrap_or(0),
        ..Default::default()
    };
    let rows = state
        .store
        .read_async(move |conn| campaign_leaderboard(conn, campaign_id, options))
        .await?;
    Ok(Json(json!({ "models": rows })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    #[serde(default)]
    ties: TiePolicy,
    #[serde(default)]
    aggregation: Aggregation,
}

/// `GET /api/admin/campaigns/{id}/export`: the manifest and the rows as JSONL text.
pub async fn export(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<ExportQuery>,
) -> Result<Json<Value>> {
    let campaign_id = parse_id("campaign id", &id)?;
    let store = state.store.clone();
    let bundle = tokio::task::spawn_blocking(move || {
        let name = store
            .read(|conn| campaigns::campaign(conn, campaign_id))?
            .name;
        let options = ExportOptions {
            campaign: Some(name),
            ties: query.ties,
            aggregation: query.aggregation,
        };
        store.export_bundle(&options)
    })
    .await
    .map_err(|err| AppError::Background(err.to_string()))??;
    Ok(Json(json!(bundle)))
}
