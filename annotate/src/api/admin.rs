//! The admin API (`/api/admin/...`): campaigns, annotator links, item uploads,
//! progress, agreement, leaderboard and export; consent texts, withdrawals, gold items
//! and re-queueing. Every handler takes the [`Admin`] extractor, so annotator tokens are
//! refused before any work is done.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::extract::{parse_id, Admin, JsonBody, QueryParams, TextBody};
use super::wire::{
    Agreement, AnnotatorsCreated, CampaignChanged, CampaignCreated, CampaignList, CampaignProgress,
    ConsentTextInput, Export, GoldInput, GoldSet, ItemsUploaded, Leaderboard, NewAnnotators,
    RequeueInput, Requeued, Withdrawn,
};
use super::AppState;
use crate::error::{AppError, Result};
use crate::export::{Aggregation, ExportFormat, ExportOptions, TiePolicy};
use crate::stats::{
    campaign_agreement, campaign_leaderboard, AgreementOptions, LeaderboardOptions,
};
use crate::store::{
    campaigns, items, parse_items_jsonl, reports, CampaignPolicy, NewCampaign, RecordedBy, Store,
};

/// Runs a blocking store call from async code.
async fn blocking<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(Store) -> Result<T> + Send + 'static,
) -> Result<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store))
        .await
        .map_err(|err| AppError::Background(err.to_string()))?
}

/// `GET /api/admin/campaigns`: every campaign with counts.
pub async fn list_campaigns(State(state): State<AppState>, _: Admin) -> Result<Json<CampaignList>> {
    let campaigns = state.store.read_async(campaigns::campaigns).await?;
    Ok(Json(CampaignList { campaigns }))
}

/// `POST /api/admin/campaigns`: creates a campaign and its annotator links.
pub async fn create_campaign(
    State(state): State<AppState>,
    _: Admin,
    JsonBody(new): JsonBody<NewCampaign>,
) -> Result<(StatusCode, Json<CampaignCreated>)> {
    let (campaign, annotators) = state
        .store
        .write_async(move |conn| campaigns::create_campaign(conn, &new))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CampaignCreated {
            campaign,
            annotators,
        }),
    ))
}

/// `POST /api/admin/campaigns/{id}/annotators`: more annotator links.
pub async fn add_annotators(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<NewAnnotators>,
) -> Result<(StatusCode, Json<AnnotatorsCreated>)> {
    let campaign_id = parse_id("campaign id", &id)?;
    let annotators = state
        .store
        .write_async(move |conn| campaigns::add_annotators(conn, campaign_id, &input.names))
        .await?;
    Ok((StatusCode::CREATED, Json(AnnotatorsCreated { annotators })))
}

/// `POST /api/admin/campaigns/{id}/annotators/{annotator}/withdraw`: records an
/// annotator's withdrawal of consent (asked for by mail, say).
pub async fn withdraw_annotator(
    State(state): State<AppState>,
    _: Admin,
    Path((id, annotator)): Path<(String, String)>,
) -> Result<Json<Withdrawn>> {
    let campaign_id = parse_id("campaign id", &id)?;
    let annotator_id = parse_id("annotator id", &annotator)?;
    let member = state
        .store
        .read_async(move |conn| campaigns::annotator_campaign(conn, annotator_id))
        .await?;
    if member != Some(campaign_id) {
        return Err(AppError::not_found("annotator", annotator_id));
    }
    let withdrawal = blocking(&state.store, move |store| {
        store.withdraw(annotator_id, RecordedBy::Admin)
    })
    .await?;
    Ok(Json(Withdrawn { withdrawal }))
}

/// `POST /api/admin/campaigns/{id}/consent` `{"text"}`: a new consent statement (the
/// next version); every annotator is asked to accept it before their next vote.
pub async fn set_consent(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<ConsentTextInput>,
) -> Result<Json<CampaignChanged>> {
    let campaign_id = parse_id("campaign id", &id)?;
    let campaign = blocking(&state.store, move |store| {
        store.set_consent_text(campaign_id, input.text)
    })
    .await?;
    Ok(Json(CampaignChanged { campaign }))
}

/// `POST /api/admin/campaigns/{id}/policy` `{"on_withdrawal", "min_gold_accuracy"}`.
pub async fn set_policy(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    JsonBody(policy): JsonBody<CampaignPolicy>,
) -> Result<Json<CampaignChanged>> {
    let campaign_id = parse_id("campaign id", &id)?;
    let campaign = state
        .store
        .write_async(move |conn| campaigns::set_policy(conn, campaign_id, &policy))
        .await?;
    Ok(Json(CampaignChanged { campaign }))
}

/// `POST /api/admin/campaigns/{id}/gold` `{"items": [{"item_id", "answer"}]}`: marks
/// items with their known answer (`first` = the uploaded `answers[0]`), or unmarks them
/// with `null`.
pub async fn set_gold(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<GoldInput>,
) -> Result<Json<GoldSet>> {
    let campaign_id = parse_id("campaign id", &id)?;
    let updated = state
        .store
        .write_async(move |conn| crate::store::review::set_gold(conn, campaign_id, &input.items))
        .await?;
    Ok(Json(GoldSet { updated }))
}

/// `POST /api/admin/campaigns/{id}/items/{item}/requeue` `{"extra": 1}`: asks for more
/// votes on a disputed item.
pub async fn requeue(
    State(state): State<AppState>,
    _: Admin,
    Path((id, item)): Path<(String, String)>,
    JsonBody(input): JsonBody<RequeueInput>,
) -> Result<Json<Requeued>> {
    let campaign_id = parse_id("campaign id", &id)?;
    let item_id = parse_id("item id", &item)?;
    let overlap = state
        .store
        .write_async(move |conn| {
            crate::store::review::requeue(conn, campaign_id, item_id, input.extra)
        })
        .await?;
    Ok(Json(Requeued { item_id, overlap }))
}

/// `POST /api/admin/campaigns/{id}/items` with a JSONL body: queues items, all or
/// nothing; a bad line is a 400 naming the line and field.
pub async fn upload_items(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    TextBody(text): TextBody,
) -> Result<(StatusCode, Json<ItemsUploaded>)> {
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
        Json(ItemsUploaded {
            added: added.item_ids.len(),
            ready: added.ready,
            pending: added.pending,
        }),
    ))
}

/// `GET /api/admin/campaigns/{id}/progress`: per annotator and per item.
pub async fn progress(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<CampaignProgress>> {
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
    Ok(Json(CampaignProgress { annotators, items }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementQuery {
    min_pair_overlap: Option<usize>,
    min_majority_items: Option<usize>,
    flag_below: Option<f64>,
    item_flag_below: Option<f64>,
}

/// `GET /api/admin/campaigns/{id}/agreement`: raw agreement, κ per pair, α, flags.
pub async fn agreement(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<AgreementQuery>,
) -> Result<Json<Agreement>> {
    let campaign_id = parse_id("campaign id", &id)?;
    let defaults = AgreementOptions::default();
    let options = AgreementOptions {
        min_pair_overlap: query.min_pair_overlap.unwrap_or(defaults.min_pair_overlap),
        min_majority_items: query
            .min_majority_items
            .unwrap_or(defaults.min_majority_items),
        flag_below: query.flag_below.unwrap_or(defaults.flag_below),
        item_flag_below: query.item_flag_below.unwrap_or(defaults.item_flag_below),
    };
    let report = state
        .store
        .read_async(move |conn| campaign_agreement(conn, campaign_id, options))
        .await?;
    Ok(Json(report))
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
) -> Result<Json<Leaderboard>> {
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
    Ok(Json(Leaderboard { models: rows }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    #[serde(default)]
    format: ExportFormat,
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
) -> Result<Json<Export>> {
    let campaign_id = parse_id("campaign id", &id)?;
    let bundle = blocking(&state.store, move |store| {
        let name = store
            .read(|conn| campaigns::campaign(conn, campaign_id))?
            .name;
        let options = ExportOptions {
            campaign: Some(name),
            format: query.format,
            ties: query.ties,
            aggregation: query.aggregation,
        };
        store.export_bundle(&options)
    })
    .await?;
    Ok(Json(bundle))
}
