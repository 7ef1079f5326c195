//! The admin page at `/admin`: one HTML page, a script and a stylesheet, embedded in the
//! binary (no CDN, no build step), that manages keys through the JSON API with a key the
//! admin pastes (kept in `sessionStorage`, sent as a bearer header: no cookies, so no CSRF).
//! Served with a strict Content-Security-Policy: no inline script or style, nothing from
//! elsewhere, no framing.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::HttpState;

/// The page; the portal (`/portal`) serves it too, marked `data-mode="portal"`.
pub(crate) const INDEX: &str = include_str!("admin/index.html");
/// The page's script, for both pages.
pub(crate) const SCRIPT: &str = include_str!("admin/app.js");
/// The page's stylesheet, for both pages.
pub(crate) const STYLE: &str = include_str!("admin/app.css");

/// The page's policy: its own script, style and API only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; \
     frame-ancestors 'none'; base-uri 'none'";

/// `/admin` and its assets.
pub fn router() -> Router<Arc<HttpState>> {
    Router::new()
        .route(
            "/admin",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route("/admin/", get(|| async { Redirect::permanent("/admin") }))
        .route(
            "/admin/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/admin/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .layer(axum::middleware::map_response(page_headers))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Security headers every answer of the page and of the API carries.
fn common_headers(response: &mut Response) {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// The page's headers: the common ones and the Content-Security-Policy.
async fn page_headers(mut response: Response) -> Response {
    common_headers(&mut response);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

/// The API's headers: the common ones (`Cache-Control: no-store` above all: an answer may
/// carry a new key) and a policy that lets a JSON answer run nothing if opened as a page.
pub async fn api_headers(mut response: Response) -> Response {
    common_headers(&mut response);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    response
}
