//! The key page for a product's own customers at `/portal` (`docs/portal.md`): a one-time
//! link (`/portal/open/{token}`) becomes a cookie session; the page, embedded in the binary
//! like the admin page, then manages the session's account through the JSON API with that
//! cookie and a CSRF header. The link's and the session's secrets are never logged.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use super::HttpState;
use crate::error::Error;

/// The cookie that carries a session's secret.
pub const COOKIE: &str = "keyward_portal";
/// The header every portal call carries: the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The admin page in portal mode: its script reads the mode and signs in with the session.
static INDEX: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    super::admin::INDEX
        .replace("<body>", "<body data-mode=\"portal\">")
        .replace("\"/admin/", "\"/portal/")
});
const SCRIPT: &str = super::admin::SCRIPT;
const STYLE: &str = super::admin::STYLE;

/// `/portal`, its assets, the link exchange, the session's own answer and signing out.
pub fn router() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/portal", get(page))
        .route(
            "/portal/app.js",
            get(|State(s): State<Arc<HttpState>>| async move {
                asset(&s, "text/javascript; charset=utf-8", SCRIPT)
            }),
        )
        .route(
            "/portal/app.css",
            get(|State(s): State<Arc<HttpState>>| async move {
                asset(&s, "text/css; charset=utf-8", STYLE)
            }),
        )
        .route("/portal/open/{token}", get(open))
        .route("/portal/session", get(session))
        .route("/portal/sign-out", post(sign_out))
}

/// The session's secret from the request's `Cookie` headers, if it carries the cookie once.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=')
                && name == COOKIE
            {
                if found.is_some() {
                    // Two: refused as none (a cookie planted beside the real one).
                    return None;
                }
                found = Some(value.to_owned());
            }
        }
    }
    found
}

/// The page's policy: its own script, style and API; images also from the logo origins;
/// framed only by the configured ancestors.
fn policy(state: &HttpState) -> String {
    let settings = state.service.portal_settings();
    let mut img = String::from("'self' data:");
    for origin in &settings.logo_origins {
        img.push(' ');
        img.push_str(origin);
    }
    let ancestors = if state.api.portal_frame_ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        state.api.portal_frame_ancestors.join(" ")
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src {img}; form-action 'none'; frame-ancestors {ancestors}; base-uri 'none'"
    )
}

fn with_headers(state: &HttpState, mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(value) = HeaderValue::from_str(&policy(state)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    if state.api.portal_frame_ancestors.is_empty() {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

fn asset(state: &HttpState, content_type: &'static str, body: &'static str) -> Response {
    with_headers(
        state,
        ([(header::CONTENT_TYPE, content_type)], body).into_response(),
    )
}

async fn page(State(state): State<Arc<HttpState>>) -> Response {
    asset(&state, "text/html; charset=utf-8", INDEX.as_str())
}

/// A plain page saying why, for a person who followed a link.
fn refusal_page(state: &HttpState, status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"/portal/app.css\"></head>\
         <body><main class=\"refusal\"><h1>{title}</h1><p>{text}</p></main></body></html>"
    );
    with_headers(
        state,
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
    )
}

fn cookie(state: &HttpState, value: &str, max_age_secs: u64) -> HeaderValue {
    let secure = if state.api.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("keyward_portal=; Max-Age=0"))
}

/// `GET /portal/open/{token}`: the one-time link. Opened, it sets the session cookie and
/// sends the browser to `/portal` (the link leaves the address bar); refused, it says so.
async fn open(State(state): State<Arc<HttpState>>, token: Option<Path<String>>) -> Response {
    let token = token.map(|Path(t)| t).unwrap_or_default();
    match state.service.open_portal_link(&token).await {
        Ok((secret, session)) => {
            let lifetime = session
                .expires_at
                .micros()
                .saturating_sub(crate::time::Timestamp::now().micros())
                .max(0)
                / 1_000_000;
            let mut response = (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, HeaderValue::from_static("/portal"))],
            )
                .into_response();
            response.headers_mut().insert(
                header::SET_COOKIE,
                cookie(&state, &secret, lifetime.unsigned_abs()),
            );
            with_headers(&state, response)
        }
        Err(Error::Unauthenticated(_)) => {
            tracing::info!("portal link refused (used, expired or unknown)");
            refusal_page(
                &state,
                StatusCode::UNAUTHORIZED,
                "This link does not work",
                "It was used already, it expired, or it is not a link to this page. Go back \
                 to the product and open the API keys page again: it makes a new link.",
            )
        }
        Err(e) => {
            e.log_internal();
            refusal_page(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again in a moment",
                "The key page is unavailable just now.",
            )
        }
    }
}

/// What the page learns of its session.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionJson {
    id: String,
    csrf_token: String,
    account_id: String,
    display_name: String,
    return_url: String,
    presets: Vec<String>,
    scopes: Vec<String>,
    max_ttl_secs: Option<u64>,
    may_rotate: bool,
    may_revoke: bool,
    may_see_usage: bool,
    product_name: String,
    accent_color: String,
    logo_url: String,
    expires_at: String,
}

fn json_error(state: &HttpState, status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"code": code, "message": message}).to_string();
    with_headers(
        state,
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
    )
}

/// `GET /portal/session`: the session's account, permissions, branding and CSRF token, for its
/// page (a same-origin read: no other site can read it).
async fn session(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let Some(secret) = session_cookie(&headers) else {
        return json_error(
            &state,
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "no portal session: open a new link from the product",
        );
    };
    match state.service.authenticate_portal(&secret).await {
        Ok((_, s)) => {
            let p = s.permissions;
            let body = SessionJson {
                id: s.id,
                csrf_token: crate::portal::csrf_token(&secret),
                account_id: s.account_id.as_str().to_owned(),
                display_name: s.display_name,
                return_url: s.return_url,
                presets: p.presets,
                scopes: p.scopes,
                max_ttl_secs: p.max_ttl_secs,
                may_rotate: p.rotate,
                may_revoke: p.revoke,
                may_see_usage: p.usage,
                product_name: s.branding.product_name,
                accent_color: s.branding.accent_color,
                logo_url: s.branding.logo_url,
                expires_at: s.expires_at.to_rfc3339(),
            };
            let text = serde_json::to_string(&body).unwrap_or_default();
            with_headers(
                &state,
                ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
            )
        }
        Err(Error::Unauthenticated(why)) => {
            json_error(&state, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", &why)
        }
        Err(e) => {
            e.log_internal();
            json_error(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the key page is unavailable just now",
            )
        }
    }
}

/// `POST /portal/sign-out`: ends the session (CSRF header required) and clears the cookie.
async fn sign_out(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let Some(secret) = session_cookie(&headers) else {
        return json_error(
            &state,
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "no portal session",
        );
    };
    let csrf = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !crate::portal::same(csrf, &crate::portal::csrf_token(&secret)) {
        return json_error(
            &state,
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "a portal call needs its x-csrf-token header",
        );
    }
    let ended = match state.service.authenticate_portal(&secret).await {
        Ok((caller, _)) => state.service.sign_out_portal(&caller).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &ended {
        e.log_internal();
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&state, "", 0));
    with_headers(&state, response)
}
