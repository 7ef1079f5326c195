//! Portal sessions on the JSON API (`docs/portal.md`): a product's backend creates one for an
//! account and redirects its signed-in user to the answer's one-time `url`; operators list
//! and end them.

use super::*;
use crate::portal::PortalSession;

/// What the customer may do in the portal.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortalPermissionsBody {
    /// Catalog presets the customer may choose (`read_only`).
    #[serde(default)]
    presets: Vec<String>,
    /// Scopes the customer may pick one by one; never a reserved scope.
    #[serde(default)]
    scopes: Vec<String>,
    /// Longest lifetime of a key the customer creates (`90d`); absent: the service's.
    max_ttl: Option<String>,
    /// Whether the customer may rotate keys.
    #[serde(default)]
    rotate: bool,
    /// Whether the customer may revoke keys.
    #[serde(default)]
    revoke: bool,
    /// Whether the customer may see usage over time.
    #[serde(default)]
    usage: bool,
}

/// How the portal looks.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrandingBody {
    /// The product's name (`Acme Video`).
    #[serde(default)]
    product_name: String,
    /// `#rrggbb`.
    #[serde(default)]
    accent_color: String,
    /// `https://…` on one of `portal_logo_origins`.
    #[serde(default)]
    logo_url: String,
}

/// A portal session to create.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePortalSessionBody {
    /// The account whose keys the customer manages (a root key must name one; an account key
    /// its own by default).
    account_id: Option<String>,
    /// What the customer may do.
    #[serde(default)]
    permissions: PortalPermissionsBody,
    /// Whom the page greets.
    #[serde(default)]
    display_name: String,
    /// Where the page's "Back to …" link leads (`https://app.example.com/settings`).
    #[serde(default)]
    return_url: String,
    /// How the page looks.
    #[serde(default)]
    branding: BrandingBody,
}

/// A portal session as the API shows it (never its secrets).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortalSessionJson {
    /// `ps_…`, the actor of the session's audit events.
    id: String,
    account_id: String,
    display_name: String,
    return_url: String,
    /// `pending` (link not opened), `active`, `expired` or `revoked`.
    status: &'static str,
    presets: Vec<String>,
    scopes: Vec<String>,
    max_ttl_secs: Option<u64>,
    may_rotate: bool,
    may_revoke: bool,
    may_see_usage: bool,
    created_by: String,
    created_at: String,
    link_expires_at: String,
    opened_at: Option<String>,
    last_seen_at: Option<String>,
    expires_at: String,
    revoked_at: Option<String>,
}

impl PortalSessionJson {
    fn of(s: &PortalSession, idle: std::time::Duration) -> Self {
        let p = &s.permissions;
        PortalSessionJson {
            id: s.id.clone(),
            account_id: s.account_id.as_str().to_owned(),
            display_name: s.display_name.clone(),
            return_url: s.return_url.clone(),
            status: s.status(Timestamp::now(), idle),
            presets: p.presets.clone(),
            scopes: p.scopes.clone(),
            max_ttl_secs: p.max_ttl_secs,
            may_rotate: p.rotate,
            may_revoke: p.revoke,
            may_see_usage: p.usage,
            created_by: s.created_by.clone(),
            created_at: s.created_at.to_rfc3339(),
            link_expires_at: s.link_expires_at.to_rfc3339(),
            opened_at: s.opened_at.map(Timestamp::to_rfc3339),
            last_seen_at: s.last_seen_at.map(Timestamp::to_rfc3339),
            expires_at: s.expires_at.to_rfc3339(),
            revoked_at: s.revoked_at.map(Timestamp::to_rfc3339),
        }
    }
}

/// A new session: its one-time link and its record (no `Debug`: the link is a secret).
#[derive(Serialize, ToSchema)]
pub struct NewPortalSessionData {
    /// Redirect the signed-in user here: it works once, for 5 minutes.
    url: String,
    session: PortalSessionJson,
}

/// `{"data": {"url", "session"}}`.
#[derive(Serialize, ToSchema)]
pub struct NewPortalSessionAnswer {
    data: NewPortalSessionData,
}

/// `{"data": [sessions]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PortalSessionsAnswer {
    data: Vec<PortalSessionJson>,
}

/// `{"data": session}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PortalSessionAnswer {
    data: PortalSessionJson,
}

/// Which account's sessions.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PortalSessionsParams {
    /// The account (a root key must name one).
    account_id: Option<String>,
}

/// Most sessions a list answers.
const LIST_LIMIT: u32 = 200;

/// Creates a portal session for an account: the answer's `url` opens the key page for the
/// product's signed-in user, once, within 5 minutes.
#[utoipa::path(
    post,
    path = "/v1/portal-sessions",
    tag = "portal",
    request_body = CreatePortalSessionBody,
    responses(
        (status = 201, description = "Created; redirect the user to `data.url`", body = NewPortalSessionAnswer),
        (status = 400, description = "Not JSON, or wrong types", body = ErrorAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
        (status = 403, description = "The key may not do this (or grant these scopes)", body = ErrorAnswer),
        (status = 422, description = "A field is invalid", body = ErrorAnswer),
    )
)]
pub(super) async fn create_portal_session(
    State(state): State<Arc<HttpState>>,
    call: Call,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Write).await?;
    let body: CreatePortalSessionBody = read_json(&headers, body)?;
    let account_id = account_or_own(&caller, body.account_id)?;
    let p = body.permissions;
    let mut extra = Vec::new();
    let max_ttl = match p.max_ttl.as_deref().map(crate::duration::parse) {
        None => None,
        Some(Ok(d)) => Some(RawDuration::from_secs(d.as_secs())),
        Some(Err(e)) => {
            extra.push(violation("permissions.maxTtl", e));
            None
        }
    };
    let input = request::PortalSessionInput {
        account_id,
        presets: p.presets,
        scopes: p.scopes,
        max_ttl,
        rotate: p.rotate,
        revoke: p.revoke,
        usage: p.usage,
        display_name: body.display_name,
        return_url: body.return_url,
        product_name: body.branding.product_name,
        accent_color: body.branding.accent_color,
        logo_url: body.branding.logo_url,
    };
    let new = with_violations(extra, request::portal_session(Violations::default(), input))?;
    let link = state.service.create_portal_session(&caller, new).await?;
    let idle = state.service.portal_settings().idle_timeout;
    let mut response = json(&NewPortalSessionAnswer {
        data: NewPortalSessionData {
            url: link.url,
            session: PortalSessionJson::of(&link.session, idle),
        },
    });
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

/// An account's portal sessions, newest first (at most 200), with their status.
#[utoipa::path(
    get,
    path = "/v1/portal-sessions",
    tag = "portal",
    params(PortalSessionsParams),
    responses(
        (status = 200, description = "The sessions", body = PortalSessionsAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
        (status = 403, description = "The key may not do this", body = ErrorAnswer),
    )
)]
pub(super) async fn list_portal_sessions(
    State(state): State<Arc<HttpState>>,
    call: Call,
    params: Result<
        axum::extract::Query<PortalSessionsParams>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Read).await?;
    let axum::extract::Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let account_id = account_or_own(&caller, params.account_id)?;
    let account_id =
        crate::ids::AccountId::parse(&account_id).map_err(|e| Error::invalid("account_id", e))?;
    let sessions = state
        .service
        .list_portal_sessions(&caller, &account_id, LIST_LIMIT)
        .await?;
    let idle = state.service.portal_settings().idle_timeout;
    Ok(json(&PortalSessionsAnswer {
        data: sessions
            .iter()
            .map(|s| PortalSessionJson::of(s, idle))
            .collect(),
    }))
}

/// Ends a portal session at once: its next call is refused and its link no longer opens.
#[utoipa::path(
    delete,
    path = "/v1/portal-sessions/{id}",
    tag = "portal",
    params(("id" = String, Path, description = "The session's id, `ps_…`"), PortalSessionsParams),
    responses(
        (status = 200, description = "Ended", body = PortalSessionAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
        (status = 403, description = "The key may not do this", body = ErrorAnswer),
        (status = 404, description = "No such session in the account", body = ErrorAnswer),
    )
)]
pub(super) async fn revoke_portal_session(
    State(state): State<Arc<HttpState>>,
    call: Call,
    KeyPath(id): KeyPath,
    params: Result<
        axum::extract::Query<PortalSessionsParams>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Write).await?;
    let axum::extract::Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let account_id = account_or_own(&caller, params.account_id)?;
    let account_id =
        crate::ids::AccountId::parse(&account_id).map_err(|e| Error::invalid("account_id", e))?;
    let session = state
        .service
        .revoke_portal_session(&caller, &account_id, &id)
        .await?;
    let idle = state.service.portal_settings().idle_timeout;
    Ok(json(&PortalSessionAnswer {
        data: PortalSessionJson::of(&session, idle),
    }))
}
