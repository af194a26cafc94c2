//! Extractors whose rejections become [`AppError`]s with clear messages: bodies, query
//! strings, path ids and bearer tokens.

use axum::extract::rejection::{JsonRejection, QueryRejection, StringRejection};
use axum::extract::{FromRequest, FromRequestParts, Json, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::AppState;
use crate::error::AppError;
use crate::store::Identity;

/// A JSON body; malformed JSON, a wrong type or an unknown field is a 400 naming the
/// field, an oversize body a 413.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(AppError::BadBody(
                "expected `Content-Type: application/json`".into(),
            )),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(too_large())
            }
            Err(rejection) => Err(AppError::BadBody(rejection.body_text())),
        }
    }
}

/// A UTF-8 text body (JSONL uploads).
pub struct TextBody(pub String);

impl<S: Send + Sync> FromRequest<S> for TextBody {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        match String::from_request(req, state).await {
            Ok(text) => Ok(TextBody(text)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(too_large())
            }
            Err(StringRejection::InvalidUtf8(_)) => {
                Err(AppError::BadBody("body is not valid UTF-8".into()))
            }
            Err(rejection) => Err(AppError::BadBody(rejection.body_text())),
        }
    }
}

fn too_large() -> AppError {
    AppError::BodyTooLarge
}

/// Query-string parameters; a bad value is a 400 naming the parameter.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| QueryParams(value))
            .map_err(|rejection: QueryRejection| AppError::BadBody(rejection.body_text()))
    }
}

/// Parses a numeric id from a path segment.
pub fn parse_id(what: &'static str, raw: &str) -> Result<i64, AppError> {
    raw.parse()
        .map_err(|_| AppError::field(what, format!("`{raw}` is not a numeric id")))
}

fn bearer(parts: &Parts) -> Result<String, AppError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or(AppError::MissingToken)?;
    let value = value.to_str().map_err(|_| AppError::MissingToken)?;
    // The scheme is case-insensitive (RFC 7235 §2.1): `bearer` and `BEARER` count too.
    let (scheme, token) = value
        .trim_start()
        .split_once(' ')
        .ok_or(AppError::MissingToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AppError::MissingToken);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AppError::MissingToken);
    }
    Ok(token.to_string())
}

async fn identify(parts: &Parts, state: &AppState) -> Result<Identity, AppError> {
    state.store.identify(bearer(parts)?).await
}

/// The caller holds the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        match identify(parts, state).await? {
            Identity::Admin => Ok(Admin),
            Identity::Annotator { .. } => Err(AppError::Forbidden(
                "admin endpoints need the admin token, not an annotator's".into(),
            )),
        }
    }
}

/// The caller is an annotator.
pub struct Annotator {
    pub id: i64,
    pub campaign_id: i64,
    pub name: String,
    pub consent_at: Option<i64>,
    pub consent_current: bool,
    pub withdrawn_at: Option<i64>,
}

impl Annotator {
    /// Refuses work unless the current consent statement was accepted and not withdrawn.
    pub fn require_consent(&self) -> Result<(), AppError> {
        if let Some(at) = self.withdrawn_at {
            return Err(crate::store::consent::withdrawn_error(at));
        }
        match (self.consent_current, self.consent_at) {
            (true, _) => Ok(()),
            (false, None) => Err(AppError::Forbidden(
                "accept the consent statement first (POST /api/me/consent with {\"accept\": true})"
                    .into(),
            )),
            (false, Some(_)) => Err(AppError::Forbidden(
                "the consent statement changed since you accepted it; read it and accept again \
                 (POST /api/me/consent)"
                    .into(),
            )),
        }
    }
}

impl FromRequestParts<AppState> for Annotator {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        match identify(parts, state).await? {
            Identity::Annotator {
                id,
                campaign_id,
                name,
                consent_at,
                consent_current,
                withdrawn_at,
            } => Ok(Annotator {
                id,
                campaign_id,
                name,
                consent_at,
                consent_current,
                withdrawn_at,
            }),
            Identity::Admin => Err(AppError::Forbidden(
                "annotator endpoints need an annotator's token; the admin does not vote".into(),
            )),
        }
    }
}
