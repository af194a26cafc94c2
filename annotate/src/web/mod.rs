//! The pages and their static files, embedded in the binary with `include_str!`.
//! Pages carry no inline script or style (the CSP forbids both); all behaviour lives
//! in the `.js` files, and every piece of model or user text is inserted with
//! `textContent`, never parsed as HTML.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::api::AppState;

const INDEX_HTML: &str = include_str!("static/index.html");
const ANNOTATE_HTML: &str = include_str!("static/annotate.html");
const ADMIN_HTML: &str = include_str!("static/admin.html");
const STYLE_CSS: &str = include_str!("static/style.css");
const COMMON_JS: &str = include_str!("static/common.js");
const ANNOTATE_JS: &str = include_str!("static/annotate.js");
const ADMIN_JS: &str = include_str!("static/admin.js");
const ARENA_JS: &str = include_str!("static/arena.js");

/// Routes for `/`, `/annotate`, `/admin` and `/static/*`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| page(INDEX_HTML)))
        .route("/annotate", get(|| page(ANNOTATE_HTML)))
        .route("/admin", get(|| page(ADMIN_HTML)))
        .route(
            "/static/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE_CSS)),
        )
        .route(
            "/static/common.js",
            get(|| asset("text/javascript; charset=utf-8", COMMON_JS)),
        )
        .route(
            "/static/annotate.js",
            get(|| asset("text/javascript; charset=utf-8", ANNOTATE_JS)),
        )
        .route(
            "/static/arena.js",
            get(|| asset("text/javascript; charset=utf-8", ARENA_JS)),
        )
        .route(
            "/static/admin.js",
            get(|| asset("text/javascript; charset=utf-8", ADMIN_JS)),
        )
}

async fn page(html: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html)
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type)], body)
}
