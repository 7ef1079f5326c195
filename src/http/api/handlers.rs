//! The handlers: each reads its request, calls the same domain function ManageService does,
//! and answers in the API's shape.

use super::*;

/// Creates a key. The answer carries the full key this one time.
#[utoipa::path(
    post,
    path = "/v1/api-keys",
    tag = "api-keys",
    request_body = CreateKeyBody,
    responses(
        (status = 201, description = "Created; `data.key` is the secret, shown only now", body = NewKeyAnswer),
        (status = 400, description = "Not JSON, or wrong types", body = ErrorAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
        (status = 403, description = "The key may not do this", body = ErrorAnswer),
        (status = 409, description = "The account has its maximum of active keys", body = ErrorAnswer),
        (status = 422, description = "A field is invalid", body = ErrorAnswer),
    )
)]
pub(super) async fn create_key(
    State(state): State<Arc<HttpState>>,
    call: Call,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Write).await?;
    let body: CreateKeyBody = read_json(&headers, body)?;
    let mut extra = Vec::new();
    let account_id = account_or_own(&caller, body.account_id)?;
    let environment = match body.environment.as_deref().map(str::trim) {
        None => caller.environment(),
        Some(text) => crate::key::Environment::parse(text).unwrap_or_else(|| {
            extra.push(violation("environment", "must be live or test"));
            caller.environment()
        }),
    };
    let expiry = match (body.expires_in.as_deref(), body.expires_at.as_deref()) {
        (Some(_), Some(_)) => {
            extra.push(violation(
                "expiresIn",
                "give expiresIn or expiresAt, not both",
            ));
            ExpiryInput::Default
        }
        (Some(text), None) => {
            let ttl = |days: u64| ExpiryInput::Ttl(RawDuration::from_secs(days * 86_400));
            match text {
                "30d" => ttl(30),
                "60d" => ttl(60),
                "90d" => ttl(90),
                "1y" => ttl(365),
                "never" => ExpiryInput::Never(true),
                _ => {
                    extra.push(violation("expiresIn", "must be 30d, 60d, 90d, 1y or never"));
                    ExpiryInput::Default
                }
            }
        }
        (None, Some(at)) => {
            parse_time(&mut extra, "expiresAt", at).map_or(ExpiryInput::Default, ExpiryInput::At)
        }
        (None, None) => ExpiryInput::Default,
    };
    let granted = !body.scopes.is_empty() || body.preset.is_some() || body.grant_all;
    let preset = match (&body.preset, &state.api.default_preset) {
        (Some(preset), _) => Some(preset.clone()),
        (None, Some(default)) if !granted => Some(default.clone()),
        _ => None,
    };
    let rate_limit = body
        .rate_limit
        .and_then(|rl| rate_limit_input(&mut extra, rl));
    let input = CreateKeyInput {
        credits: body.credits.as_ref().map(CreditsJson::input),
        account_id,
        name: body.name,
        environment: Ok(Some(environment)),
        scopes: body.scopes,
        preset,
        grant_all: body.grant_all,
        expiry,
        restrictions: body.restrictions.map(Into::into),
        rate_limit,
        meta: body.meta,
        bad_interval: BAD_INTERVAL,
    };
    let create = with_violations(extra, request::create_key(Violations::default(), input))?;
    let (secret, key) = state.service.create_key(&caller, create).await?;
    let location = HeaderValue::from_str(&format!("/v1/api-keys/{}", key.id)).ok();
    let mut response = json(&NewKeyAnswer {
        data: NewKeyJson {
            key: secret.expose().to_owned(),
            api_key: (&key).into(),
            previous_api_key: None,
        },
    });
    *response.status_mut() = StatusCode::CREATED;
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Which keys to list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// The account; the calling key's own when absent (a root key must name one).
    pub(super) account_id: Option<String>,
    /// Include revoked keys (hidden by default).
    pub(super) include_revoked: Option<bool>,
    /// Only keys not used since then: a duration back from now (`30d`) or an RFC 3339 time.
    pub(super) unused_since: Option<String>,
    /// Keys per page, 1–1000 (default 100).
    pub(super) page_size: Option<u32>,
    /// `nextPageToken` of the previous page.
    pub(super) page_token: Option<String>,
    /// `usage desc`: the most used keys first, each with its count in `usage`.
    pub(super) order_by: Option<String>,
    /// With `orderBy`: count decisions since then, a duration back from now (`7d`) or an
    /// RFC 3339 time (30 days when absent).
    pub(super) usage_since: Option<String>,
}

/// Lists an account's keys: metadata only, never a secret.
#[utoipa::path(
    get,
    path = "/v1/api-keys",
    tag = "api-keys",
    params(ListParams),
    responses(
        (status = 200, description = "One page of keys", body = KeyListAnswer),
        (status = 400, description = "A bad query string", body = ErrorAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
        (status = 403, description = "The key may not do this", body = ErrorAnswer),
        (status = 422, description = "A parameter is invalid", body = ErrorAnswer),
    )
)]
pub(super) async fn list_keys(
    State(state): State<Arc<HttpState>>,
    call: Call,
    uri: axum::http::Uri,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Read).await?;
    let axum::extract::Query(params) = axum::extract::Query::<ListParams>::try_from_uri(&uri)
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut extra = Vec::new();
    let account_id = account_or_own(&caller, params.account_id)?;
    let include_revoked = params.include_revoked.unwrap_or(false);
    let unused_text = params.unused_since.unwrap_or_default();
    let unused_since = match unused_text.trim() {
        "" => None,
        text => moment(&mut extra, "unusedSince", text),
    };
    let order_by = params.order_by.unwrap_or_default();
    let usage_text = params.usage_since.unwrap_or_default();
    let usage_since = match usage_text.trim() {
        "" => None,
        text => moment(&mut extra, "usageSince", text),
    };
    // The page token is bound to the query as given: `30d` means the same on every page.
    let fingerprint = query_fingerprint(&[
        "http-keys",
        &account_id,
        if include_revoked { "1" } else { "0" },
        unused_text.trim(),
        order_by.trim(),
        usage_text.trim(),
    ]);
    let tokens = state.service.page_tokens();
    let page_token = params.page_token.as_deref().unwrap_or("");
    let after = (tokens.open(page_token, caller.key_id(), fingerprint)).unwrap_or_else(|e| {
        extra.push(violation("pageToken", e));
        None
    });
    let input = ListKeysInput {
        account_id,
        include_revoked,
        unused_since,
        page_size: params.page_size.unwrap_or(0),
        page_token: String::new(),
        order_by,
        usage_since,
    };
    let mut query = with_violations(
        extra,
        request::list_keys(
            Violations::default(),
            &input,
            tokens,
            caller.key_id(),
            fingerprint,
        ),
    )?;
    query.after = after;
    if query.by_usage.is_some() {
        let page = state.service.list_keys_by_usage(&caller, &query).await?;
        let next = tokens.seal(page.next, caller.key_id(), fingerprint);
        return Ok(json(&KeyListAnswer {
            data: page.items.iter().map(|(key, _)| key.into()).collect(),
            next_page_token: (!next.is_empty()).then_some(next),
            usage: Some(
                page.items
                    .iter()
                    .map(|(key, used)| (key.id.to_string(), *used))
                    .collect(),
            ),
        }));
    }
    let page = state.service.list_keys(&caller, &query).await?;
    let next = tokens.seal(page.next, caller.key_id(), fingerprint);
    Ok(json(&KeyListAnswer {
        data: page.items.iter().map(Into::into).collect(),
        next_page_token: (!next.is_empty()).then_some(next),
        usage: None,
    }))
}

/// One key's record.
#[utoipa::path(
    get,
    path = "/v1/api-keys/{id}",
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id, `key_…`")),
    responses(
        (status = 200, description = "The key", body = KeyAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
        (status = 403, description = "The key may not do this", body = ErrorAnswer),
        (status = 404, description = "No such key", body = ErrorAnswer),
        (status = 422, description = "Not a key id", body = ErrorAnswer),
    )
)]
pub(super) async fn get_key(
    State(state): State<Arc<HttpState>>,
    call: Call,
    KeyPath(id): KeyPath,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Read).await?;
    let id = request::key_id(&id)?;
    let key = state.service.get_key(&caller, &id).await?;
    Ok(json(&KeyAnswer {
        data: (&key).into(),
    }))
}

/// Changes a key's name, scopes, restrictions, rate limit, metadata or expiry; the next
/// verification on every replica sees the change.
#[utoipa::path(
    patch,
    path = "/v1/api-keys/{id}",
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id, `key_…`")),
    request_body = UpdateKeyBody,
    responses(
        (status = 200, description = "The changed key", body = KeyAnswer),
        (status = 400, description = "Not JSON, or wrong types", body = ErrorAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
        (status = 403, description = "The key may not do this", body = ErrorAnswer),
        (status = 404, description = "No such key", body = ErrorAnswer),
        (status = 409, description = "The key cannot change so (revoked, or root)", body = ErrorAnswer),
        (status = 422, description = "A field is invalid", body = ErrorAnswer),
    )
)]
pub(super) async fn update_key(
    State(state): State<Arc<HttpState>>,
    call: Call,
    KeyPath(id): KeyPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Write).await?;
    let id = request::key_id(&id)?;
    // Which fields are given (`null` included) is the update mask.
    let fields: serde_json::Map<String, serde_json::Value> = read_json(&headers, body)?;
    let body: UpdateKeyBody =
        serde_json::from_value(serde_json::Value::Object(fields.clone())).map_err(bad_json)?;
    let mut extra = Vec::new();
    let mut paths = Vec::new();
    for name in fields.keys() {
        paths.push(match name.as_str() {
            "grantAll" => "grant_all".to_owned(),
            "rateLimit" => "rate_limit".to_owned(),
            "expiresAt" => "expires_at".to_owned(),
            "addCredits" => "add_credits".to_owned(),
            other => other.to_owned(),
        });
    }
    if paths.is_empty() {
        extra.push(violation(
            "body",
            "give at least one of name, scopes, grantAll, restrictions, rateLimit, meta, expiresAt, credits, addCredits",
        ));
    }
    let expires_at = body
        .expires_at
        .as_deref()
        .and_then(|at| parse_time(&mut extra, "expiresAt", at));
    let rate_limit = body
        .rate_limit
        .and_then(|rl| rate_limit_input(&mut extra, rl));
    let input = UpdateKeyInput {
        credits: body.credits.as_ref().map(CreditsJson::input),
        add_credits: body.add_credits.unwrap_or(0),
        name: body.name.unwrap_or_default(),
        scopes: body.scopes.unwrap_or_default(),
        grant_all: body.grant_all.unwrap_or(false),
        restrictions: body.restrictions.map(Into::into),
        rate_limit,
        meta: body.meta.unwrap_or_default(),
        expires_at,
        paths,
        bad_interval: BAD_INTERVAL,
    };
    if !extra.is_empty() {
        return Err(Error::InvalidArgument(extra).into());
    }
    let patch = request::update_key(Violations::default(), &input)?;
    let key = state.service.update_key(&caller, &id, &patch).await?;
    Ok(json(&KeyAnswer {
        data: (&key).into(),
    }))
}

/// Revokes a key at once and for good: its next use, on any replica, is refused.
#[utoipa::path(
    delete,
    path = "/v1/api-keys/{id}",
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id, `key_…`")),
    responses(
        (status = 200, description = "Revoked", body = RevokedAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
        (status = 403, description = "The key may not do this", body = ErrorAnswer),
        (status = 404, description = "No such key", body = ErrorAnswer),
    )
)]
pub(super) async fn revoke_key(
    State(state): State<Arc<HttpState>>,
    call: Call,
    KeyPath(id): KeyPath,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Write).await?;
    let id = request::key_id(&id)?;
    let key = state.service.revoke_key(&caller, &id).await?;
    Ok(json(&RevokedAnswer {
        success: true,
        message: "API key revoked successfully",
        data: (&key).into(),
    }))
}

/// Replaces a key by a new one with the same grant; the old one keeps working for the grace
/// period, then expires. The answer carries the new secret this one time.
#[utoipa::path(
    post,
    path = "/v1/api-keys/{id}/rotate",
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id, `key_…`")),
    request_body(content = RotateKeyBody, description = "Optional"),
    responses(
        (status = 201, description = "The new key (and the old one's record)", body = NewKeyAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
        (status = 403, description = "The key may not do this", body = ErrorAnswer),
        (status = 404, description = "No such key", body = ErrorAnswer),
        (status = 409, description = "The key was revoked or replaced already", body = ErrorAnswer),
        (status = 422, description = "A field is invalid", body = ErrorAnswer),
    )
)]
pub(super) async fn rotate_key(
    State(state): State<Arc<HttpState>>,
    call: Call,
    KeyPath(id): KeyPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Write).await?;
    let id = request::key_id(&id)?;
    let body: RotateKeyBody = read_json(&headers, body)?;
    let grace = match body.grace_period.as_deref().map(crate::duration::parse) {
        None => None,
        Some(Ok(grace)) => Some(RawDuration::from_secs(grace.as_secs())),
        Some(Err(e)) => return Err(Error::invalid("gracePeriod", e).into()),
    };
    let grace = request::grace(grace).map_err(|e| match e {
        Error::InvalidArgument(v) => Error::InvalidArgument(
            v.into_iter()
                .map(|v| violation(&camel(&v.field), v.description))
                .collect(),
        ),
        other => other,
    })?;
    let (secret, new, old) = state.service.rotate_key(&caller, &id, grace).await?;
    let mut response = json(&NewKeyAnswer {
        data: NewKeyJson {
            key: secret.expose().to_owned(),
            api_key: (&new).into(),
            previous_api_key: Some((&old).into()),
        },
    });
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

/// The scope catalog: every scope with its access kind and risk, and the presets, for a
/// dashboard's risk badges and preset picker.
#[utoipa::path(
    get,
    path = "/v1/scopes",
    tag = "api-keys",
    responses(
        (status = 200, description = "The catalog", body = CatalogAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
    )
)]
pub(super) async fn list_scopes(
    State(state): State<Arc<HttpState>>,
    call: Call,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Read).await?;
    let catalog = state.service.list_scopes(&caller);
    Ok(json(&CatalogAnswer {
        data: CatalogJson {
            scopes: catalog
                .scopes()
                .iter()
                .map(|s| ScopeJson {
                    name: s.name.clone(),
                    resource: s.name.split(':').next().unwrap_or_default().to_owned(),
                    description: s.description.clone(),
                    access: s.access,
                    risk: s.risk,
                    guardrail: s.guardrail.map(Into::into),
                })
                .collect(),
            presets: catalog
                .presets()
                .iter()
                .map(|p| PresetJson {
                    name: p.name.clone(),
                    description: p.description.clone(),
                    scopes: p.scopes.clone(),
                    grant_all: p.grant_all,
                    restrictions: (&p.restrictions).into(),
                })
                .collect(),
        },
    }))
}

/// Without a query string: checks the calling key the way a gateway would (as a
/// `GET /v1/usage` request: it counts against the key's rate limit) and answers its record and
/// rate-limit state: the "make a test call with the new key" step of a rotation. Any valid key
/// may ask about itself.
///
/// With a query string (`startTime` at least): decisions over time, by outcome, of a key
/// (`keyId`) or of an account's keys (`accountId`, the calling key's own by default; together
/// or `groupByKey`), under `keys:read` — GetUsage's answer.
#[utoipa::path(
    get,
    path = "/v1/usage",
    tag = "api-keys",
    params(UsageParams),
    responses(
        (status = 200, description = "Without a query: the key works, its record and rate-limit state. With one: the usage series", body = UsageResponse),
        (status = 400, description = "A bad query string", body = ErrorAnswer),
        (status = 401, description = "Missing, unknown, revoked or expired key", body = ErrorAnswer),
        (status = 403, description = "A restriction of the key refuses this request, or it may not read that usage", body = ErrorAnswer),
        (status = 422, description = "A parameter is invalid", body = ErrorAnswer),
        (status = 429, description = "The key's rate limit is used up; see Retry-After", body = ErrorAnswer),
    )
)]
pub(super) async fn usage(
    State(state): State<Arc<HttpState>>,
    call: Call,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    if uri.query().is_some_and(|q| !q.is_empty()) {
        return usage_series(&state, &call, &uri).await.into_response();
    }
    let described = crate::http::forward_auth::client_address(&state, &headers, call.peer)
        .and_then(|ip| Ok((ip, crate::http::forward_auth::single(&headers, "referer")?)));
    let (client_ip, referrer) = match described {
        Ok((ip, referrer)) => (ip, referrer.unwrap_or_default()),
        Err(rejection) => return crate::http::respond(Answer::rejected(&rejection)),
    };
    let client = ClientRequest {
        method: "GET",
        target: "/v1/usage",
        client_ip,
        referrer,
        scopes: None,
        environment: None,
    };
    let Ok(key) = &call.bearer else {
        return crate::http::respond(Answer::ambiguous_key());
    };
    let key = key.as_deref().unwrap_or_default();
    let decision = match crate::http::decide(&state, key, &client).await {
        Ok(decision) => decision,
        Err(answer) => return crate::http::respond(answer),
    };
    let (code, key, rate_limit) = (decision.code, decision.key.clone(), decision.rate_limit);
    let answer = Answer::from_decision(decision);
    let (Code::Valid, Some(key)) = (code, key) else {
        return crate::http::respond(answer);
    };
    // The cache keeps only what verification reads; the answer shows the whole record.
    let record = match state.service.key_record(&key.key.key_id()).await {
        Ok(record) => record,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut response = json(&UsageResponse::Key(Box::new(UsageAnswer {
        data: UsageJson {
            api_key: (&record).into(),
            rate_limit: rate_limit.as_ref().map(|rl| RateLimitState {
                limit: rl.limit,
                remaining: rl.remaining,
                reset_at: rfc3339(rl.reset_at),
            }),
        },
    })));
    for (name, value) in answer.rate_limit().iter().flat_map(|r| r.headers()) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            response
                .headers_mut()
                .insert(header::HeaderName::from_static(name), value);
        }
    }
    response
}

/// `GET /v1/usage` with a question in its query string.
async fn usage_series(state: &HttpState, call: &Call, uri: &axum::http::Uri) -> Answered<Response> {
    let caller = call.caller(state, Access::Read).await?;
    let axum::extract::Query(params) = axum::extract::Query::<UsageParams>::try_from_uri(uri)
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    super::usage::answer(state, &caller, params, None).await
}
