//! Usage over time on the JSON API: `GET /v1/api-keys/{id}/usage` and `GET /v1/usage` with
//! a question in its query string, answered in GetUsage's shape (camelCase). The question is
//! checked by the request layer (`request::usage`), like GetUsage's.

use super::*;
use crate::usage::{Counts, Usage};

/// A usage question in a query string.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// The account whose keys' decisions to count (`GET /v1/usage`); the calling key's own
    /// when neither it nor `keyId` is given.
    pub(super) account_id: Option<String>,
    /// One key's decisions (`GET /v1/usage`).
    pub(super) key_id: Option<String>,
    /// `true`: decisions about no stored key (missing, malformed, unknown), the whole
    /// service's (`GET /v1/usage`, root keys only).
    pub(super) no_key: Option<bool>,
    /// With an account: one series per key, a page of keys at a time.
    pub(super) group_by_key: Option<bool>,
    /// Start of the range: a duration back from now (`7d`) or an RFC 3339 time. Required.
    pub(super) start_time: Option<String>,
    /// End of the range: a duration back from now or an RFC 3339 time; now when absent.
    pub(super) end_time: Option<String>,
    /// `minute`, `hour` or `day`; chosen from the range when absent (minutes up to 6 hours,
    /// hours up to 14 days, days beyond).
    pub(super) granularity: Option<String>,
    /// Only these outcomes, comma-separated (`VALID,RATE_LIMITED`); all when absent.
    pub(super) outcomes: Option<String>,
    /// With `groupByKey`: keys per page, 1–1000 (default 100).
    pub(super) page_size: Option<u32>,
    /// `nextPageToken` of the previous page.
    pub(super) page_token: Option<String>,
}

/// Decisions with one outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutcomeCountJson {
    /// The code: `VALID`, `RATE_LIMITED`, `INSUFFICIENT_SCOPE`, …
    pub(super) code: &'static str,
    /// How many.
    pub(super) count: u64,
}

/// One bucket; buckets without decisions are left out.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageBucketJson {
    /// Start of the bucket (RFC 3339).
    pub(super) start_time: String,
    /// Decisions in it.
    pub(super) total: u64,
    /// By outcome, in code order.
    pub(super) counts: Vec<OutcomeCountJson>,
}

/// One key's decisions over time (or an account's keys together: `keyId` `null`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageSeriesJson {
    /// The key; `null` for an account's keys summed together.
    pub(super) key_id: Option<String>,
    /// Decisions over the range.
    pub(super) total: u64,
    /// Over the range, by outcome.
    pub(super) counts: Vec<OutcomeCountJson>,
    /// The buckets with decisions, oldest first.
    pub(super) buckets: Vec<UsageBucketJson>,
}

/// The range and buckets answered.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageSeriesData {
    /// `minute`, `hour` or `day`.
    pub(super) granularity: &'static str,
    /// Start of the first bucket.
    pub(super) start_time: String,
    /// End of the last bucket.
    pub(super) end_time: String,
    /// One series, or one per key on this page.
    pub(super) series: Vec<UsageSeriesJson>,
}

/// `{"data": …, "nextPageToken"}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageSeriesAnswer {
    pub(super) data: UsageSeriesData,
    /// Pass as `pageToken` for the next page of keys; `null` on the last.
    pub(super) next_page_token: Option<String>,
}

/// What `GET /v1/usage` answers: the calling key's own check without a query string, a
/// usage series with one.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum UsageResponse {
    /// The calling key's record and rate-limit state.
    Key(Box<UsageAnswer>),
    /// The usage series asked for.
    Series(UsageSeriesAnswer),
}

fn counts(counts: &Counts) -> Vec<OutcomeCountJson> {
    counts
        .iter()
        .map(|(code, count)| OutcomeCountJson {
            code: code.as_str(),
            count: *count,
        })
        .collect()
}

fn seconds(secs: i64) -> String {
    rfc3339(Timestamp::from_micros(secs.saturating_mul(1_000_000)))
}

impl From<&Usage> for UsageSeriesData {
    fn from(usage: &Usage) -> Self {
        let q = &usage.query;
        UsageSeriesData {
            granularity: q.granularity.as_str(),
            start_time: seconds(q.start),
            end_time: seconds(q.end),
            series: usage
                .series
                .iter()
                .map(|s| UsageSeriesJson {
                    key_id: s.key_id.as_ref().map(ToString::to_string),
                    total: s.total,
                    counts: counts(&s.counts),
                    buckets: s
                        .buckets
                        .iter()
                        .map(|b| UsageBucketJson {
                            start_time: seconds(b.start),
                            total: b.total,
                            counts: counts(&b.counts),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// A moment in a query string: a duration back from now (`7d`) or an RFC 3339 time.
pub(super) fn moment(extra: &mut Vec<FieldViolation>, field: &str, text: &str) -> Option<RawTime> {
    match crate::duration::parse(text) {
        Ok(ago) => {
            let ago = i64::try_from(ago.as_micros()).unwrap_or(i64::MAX);
            let at = Timestamp::now().micros().saturating_sub(ago).max(0);
            Some(RawTime::from(Timestamp::from_micros(at)))
        }
        Err(_) => parse_time(extra, field, text),
    }
}

/// Answers the usage question `params` asks (for key `key_id` when the path names one).
pub(super) async fn answer(
    state: &HttpState,
    caller: &Caller,
    params: UsageParams,
    key_id: Option<String>,
) -> Answered<Response> {
    let mut extra = Vec::new();
    let no_key = params.no_key.unwrap_or(false);
    let (key_id, account_id) = match (key_id, params.key_id, params.account_id) {
        (Some(path), _, _) => (path, String::new()),
        (None, Some(key), account) => (key, account.unwrap_or_default()),
        // The request layer refuses a key or an account given with `noKey`.
        (None, None, account) if no_key => (String::new(), account.unwrap_or_default()),
        (None, None, account) => (String::new(), account_or_own(caller, account)?),
    };
    let start_text = params.start_time.unwrap_or_default();
    let end_text = params.end_time.unwrap_or_default();
    let outcomes_text = params.outcomes.unwrap_or_default();
    let input = request::UsageInput {
        // The request layer names a missing start; an empty one is the same.
        start_time: match start_text.trim() {
            "" => None,
            text => moment(&mut extra, "startTime", text),
        },
        end_time: match end_text.trim() {
            "" => None,
            text => moment(&mut extra, "endTime", text),
        },
        granularity: params.granularity.clone(),
        outcomes: outcomes_text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        group_by_key: params.group_by_key.unwrap_or(false),
        page_size: params.page_size.unwrap_or(0),
        key_id,
        account_id,
        no_key,
    };
    // The page token is bound to the question as given: `7d` means the same on every page.
    let fingerprint = query_fingerprint(&[
        "http-usage",
        &input.key_id,
        &input.account_id,
        if no_key { "no_key" } else { "" },
        start_text.trim(),
        end_text.trim(),
        params.granularity.as_deref().unwrap_or(""),
        outcomes_text.trim(),
    ]);
    let tokens = state.service.page_tokens();
    let page = tokens.open(
        params.page_token.as_deref().unwrap_or(""),
        caller.key_id(),
        fingerprint,
    );
    let query = with_violations(
        extra,
        request::usage(Violations::default(), &input, page, Timestamp::now()),
    )?;
    let usage = state.service.get_usage(caller, query).await?;
    let next = match &usage.query.target {
        crate::usage::Target::AccountByKey { offset, limit, .. } if usage.more => {
            Some(offset.saturating_add(*limit))
        }
        _ => None,
    };
    let next = tokens.seal(next, caller.key_id(), fingerprint);
    Ok(json(&UsageResponse::Series(UsageSeriesAnswer {
        data: (&usage).into(),
        next_page_token: (!next.is_empty()).then_some(next),
    })))
}

/// A key's decisions over time, by outcome.
#[utoipa::path(
    get,
    path = "/v1/api-keys/{id}/usage",
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id, `key_…`"), UsageParams),
    responses(
        (status = 200, description = "The key's series", body = UsageSeriesAnswer),
        (status = 400, description = "A bad query string", body = ErrorAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
        (status = 403, description = "The key may not do this", body = ErrorAnswer),
        (status = 404, description = "No such key", body = ErrorAnswer),
        (status = 422, description = "A parameter is invalid", body = ErrorAnswer),
    )
)]
pub(super) async fn key_usage(
    State(state): State<Arc<HttpState>>,
    call: Call,
    KeyPath(id): KeyPath,
    uri: axum::http::Uri,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Read).await?;
    let axum::extract::Query(params) = axum::extract::Query::<UsageParams>::try_from_uri(&uri)
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if params.key_id.is_some() || params.account_id.is_some() || params.group_by_key.is_some() {
        return Err(ApiError::BadRequest(
            "keyId, accountId and groupByKey belong to GET /v1/usage; this path names the key"
                .to_owned(),
        ));
    }
    answer(&state, &caller, params, Some(id)).await
}
