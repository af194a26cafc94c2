//! The HTTP application: routes, limits and security headers. [`app`] builds the router
//! without binding a socket, so tests drive it with `tower::ServiceExt::oneshot`.

mod admin;
mod annotator;
mod arena;
pub mod extract;
pub mod wire;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::{AppError, Result};
use crate::store::{schema, Store};
use crate::web;

/// Scripts and styles come only from this origin's static files; no inline script, no
/// plugins, no framing. Untrusted text is inserted with `textContent` anyway — this is
/// the second line of defence.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Limits applied to requests, connections and held items.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest JSON body (votes, campaign creation).
    pub json_body_bytes: usize,
    /// Largest JSONL item upload.
    pub upload_bytes: usize,
    /// A request whose handling (body read included) takes longer is answered 408.
    pub request_timeout: Duration,
    /// A connection that has not sent a whole request head within this is closed.
    pub header_timeout: Duration,
    /// On shutdown, in-flight requests get this long; connections still open are closed.
    pub shutdown_grace: Duration,
    /// How long an annotator holds a pending item without looking at it.
    pub lease: Duration,
    /// Connections served at once; more wait in the kernel's accept queue until one
    /// closes, so a flood of idle connections cannot exhaust the file descriptors.
    pub max_connections: usize,
}

/// The default [`Limits::max_connections`]: well under the usual 1,024 open files.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            json_body_bytes: 64 * 1024,
            upload_bytes: 32 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            lease: crate::store::DEFAULT_LEASE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub limits: Limits,
}

impl AppState {
    /// State with the default [`Limits`].
    pub fn new(store: Store) -> AppState {
        AppState {
            store,
            limits: Limits::default(),
        }
    }
}

/// The whole application: pages, static files, the annotator and admin APIs, health.
pub fn app(state: AppState) -> Router {
    let limits = state.limits;
    let api = Router::new()
        .route("/me", get(annotator::me))
        .route("/me/consent", post(annotator::consent))
        .route("/me/next", post(annotator::next))
        .route("/me/withdraw", post(annotator::withdraw))
        .route("/me/votes", post(annotator::vote))
        .route("/me/skip", post(annotator::skip))
        .route("/me/undo", post(annotator::undo))
        .route("/me/arena/battles", post(arena::battle))
        .route("/me/arena/reveal/{assignment}", get(arena::reveal))
        .route(
            "/admin/campaigns",
            get(admin::list_campaigns).post(admin::create_campaign),
        )
        .route(
            "/admin/campaigns/{id}/annotators",
            post(admin::add_annotators),
        )
        .route(
            "/admin/campaigns/{id}/annotators/{annotator}/withdraw",
            post(admin::withdraw_annotator),
        )
        .route("/admin/campaigns/{id}/consent", post(admin::set_consent))
        .route("/admin/campaigns/{id}/policy", post(admin::set_policy))
        .route(
            "/admin/campaigns/{id}/arena",
            get(arena::get_arena).post(arena::set_arena),
        )
        .route("/admin/campaigns/{id}/gold", post(admin::set_gold))
        .route(
            "/admin/campaigns/{id}/items/{item}/requeue",
            post(admin::requeue),
        )
        .route(
            "/admin/campaigns/{id}/items",
            post(admin::upload_items).layer(DefaultBodyLimit::max(limits.upload_bytes)),
        )
        .route("/admin/campaigns/{id}/progress", get(admin::progress))
        .route("/admin/campaigns/{id}/agreement", get(admin::agreement))
        .route("/admin/campaigns/{id}/leaderboard", get(admin::leaderboard))
        .route("/admin/campaigns/{id}/export", get(admin::export))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    Router::new()
        .nest("/api", api)
        .merge(web::routes())
        .route("/healthz", get(health))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limits.json_body_bytes))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// `GET /healthz`: 200 when the database answers.
async fn health(State(state): State<AppState>) -> Result<Json<wire::Health>> {
    let version = state.store.read_async(schema::current).await?;
    Ok(Json(wire::Health {
        status: "ok",
        schema_version: version,
        supported_schema_version: schema::SCHEMA_VERSION,
    }))
}

async fn not_found(method: Method, uri: Uri) -> AppError {
    AppError::NotFound {
        what: "route",
        id: format!("{method} {}", uri.path()),
    }
}
