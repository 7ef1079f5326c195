//! The JSON shapes of the API: request bodies and answers, camelCase, with their OpenAPI
//! schemas.

use super::*;

/// A key's record: everything but its secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyJson {
    /// Public id, `key_…`.
    pub(super) id: String,
    /// The owning account.
    pub(super) account_id: String,
    /// Human-readable name.
    pub(super) name: String,
    /// The key's first 16 characters, to recognise it by.
    pub(super) prefix: String,
    /// `live` or `test`.
    pub(super) environment: &'static str,
    /// Scopes held.
    pub(super) scopes: Vec<String>,
    /// Holds every current and future scope.
    pub(super) grant_all: bool,
    /// Where the key may be used; empty lists restrict nothing.
    pub(super) restrictions: RestrictionsJson,
    /// The key's own rate limit; `null`: the service default.
    pub(super) rate_limit: Option<RateLimitJson>,
    /// The key's usage credits; `null`: unlimited.
    pub(super) credits: Option<CreditsJson>,
    /// Free-form metadata.
    pub(super) meta: BTreeMap<String, String>,
    /// When the key was made (RFC 3339).
    pub(super) created_at: String,
    /// When the key last changed.
    pub(super) updated_at: String,
    /// When the key expires; `null`: never.
    pub(super) expires_at: Option<String>,
    /// When the key was last used (within the documented lag); `null`: never.
    pub(super) last_used_at: Option<String>,
    /// Whether the key is revoked.
    pub(super) revoked: bool,
    /// When it was revoked.
    pub(super) revoked_at: Option<String>,
    /// On a key made by rotation, the key it replaced.
    pub(super) previous_key_id: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub(super) status: &'static str,
}

pub(super) fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339()
}

impl From<&crate::model::Restrictions> for RestrictionsJson {
    fn from(r: &crate::model::Restrictions) -> Self {
        RestrictionsJson {
            allowed_cidrs: r.allowed_cidrs.iter().map(ToString::to_string).collect(),
            allowed_referrers: r
                .allowed_referrers
                .iter()
                .map(ToString::to_string)
                .collect(),
            allowed_paths: r.allowed_paths.iter().map(ToString::to_string).collect(),
            allowed_methods: r
                .allowed_methods
                .iter()
                .map(|m| m.as_str().to_owned())
                .collect(),
        }
    }
}

impl From<crate::model::RateLimit> for RateLimitJson {
    fn from(rl: crate::model::RateLimit) -> Self {
        RateLimitJson {
            limit: rl.limit,
            window: crate::duration::format(rl.window()),
        }
    }
}

impl From<&ApiKey> for ApiKeyJson {
    fn from(k: &ApiKey) -> Self {
        ApiKeyJson {
            id: k.id.to_string(),
            account_id: k.account_id.to_string(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            environment: k.environment.as_str(),
            scopes: k.scopes.clone(),
            grant_all: k.grant_all,
            restrictions: (&k.restrictions).into(),
            rate_limit: k.rate_limit.map(Into::into),
            credits: k.credits.map(|c| CreditsJson {
                remaining: c.remaining,
                refill: c.refill.map(|r| RefillJson {
                    amount: r.amount,
                    interval: match r.interval {
                        crate::model::RefillInterval::Daily => "daily".into(),
                        crate::model::RefillInterval::Monthly => "monthly".into(),
                    },
                    day_of_month: r.day_of_month.map(u32::from),
                }),
                refilled_at: Some(rfc3339(c.refilled_at)),
            }),
            meta: k.meta.clone(),
            created_at: rfc3339(k.created_at),
            updated_at: rfc3339(k.updated_at),
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            revoked: k.is_revoked(),
            revoked_at: k.revoked_at.map(rfc3339),
            previous_key_id: k.previous_key_id.as_ref().map(ToString::to_string),
            status: if k.is_revoked() {
                "revoked"
            } else if k.is_expired(Timestamp::now()) {
                "expired"
            } else {
                "active"
            },
        }
    }
}

/// Where a key may be used. Every list is optional; an empty list restricts nothing.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RestrictionsJson {
    /// IPv4/IPv6 CIDRs the end client's address must be in.
    pub(super) allowed_cidrs: Vec<String>,
    /// Referrer patterns with `*` wildcards.
    pub(super) allowed_referrers: Vec<String>,
    /// Request-path patterns with `*` wildcards.
    pub(super) allowed_paths: Vec<String>,
    /// HTTP methods.
    pub(super) allowed_methods: Vec<String>,
}

impl From<RestrictionsJson> for RestrictionsInput {
    fn from(r: RestrictionsJson) -> Self {
        RestrictionsInput {
            allowed_cidrs: r.allowed_cidrs,
            allowed_referrers: r.allowed_referrers,
            allowed_paths: r.allowed_paths,
            allowed_methods: r.allowed_methods,
        }
    }
}

/// A budget of requests per window.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitJson {
    /// Requests allowed per window.
    pub(super) limit: u32,
    /// The window: `<n><unit>` with unit s, m, h, d or w (`2m`).
    #[schema(example = "2m")]
    pub(super) window: String,
}

/// A key's usage credits: units in total, not per window.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreditsJson {
    /// Units left (in the database; each replica may hold a reserved block besides).
    pub(super) remaining: u64,
    /// How the credits are refilled; `null`: never.
    #[serde(default)]
    pub(super) refill: Option<RefillJson>,
    /// When the balance was last set or refilled (output only; ignored on input).
    #[serde(default, skip_deserializing)]
    pub(super) refilled_at: Option<String>,
}

/// A refill: the balance is set to `amount` at midnight UTC, daily or monthly.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefillJson {
    /// The balance after a refill, at least 1.
    pub(super) amount: u64,
    /// `daily` or `monthly`.
    #[schema(example = "monthly")]
    pub(super) interval: String,
    /// For monthly refills, the day of the month (1–31; the last day of shorter months).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) day_of_month: Option<u32>,
}

impl CreditsJson {
    /// The credits as the request layer takes them (an interval other than `daily` or
    /// `monthly`: none, which it refuses as [`BAD_INTERVAL`]).
    pub(super) fn input(&self) -> CreditsInput {
        CreditsInput {
            remaining: self.remaining,
            refill: self.refill.as_ref().map(|r| RefillInput {
                amount: r.amount,
                interval: match r.interval.as_str() {
                    "daily" => Some(RefillInterval::Daily),
                    "monthly" => Some(RefillInterval::Monthly),
                    _ => None,
                },
                day_of_month: r.day_of_month.unwrap_or(0),
            }),
        }
    }
}

/// The refill interval's violation, in the JSON API's spelling.
pub(super) const BAD_INTERVAL: &str = "must be daily or monthly";

/// When a new key expires, counted from now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub enum ExpiresIn {
    /// 30 days.
    #[serde(rename = "30d")]
    Days30,
    /// 60 days.
    #[serde(rename = "60d")]
    Days60,
    /// 90 days.
    #[serde(rename = "90d")]
    Days90,
    /// 365 days.
    #[serde(rename = "1y")]
    Year,
    /// No expiry.
    #[serde(rename = "never")]
    Never,
}

/// The key to make. Grant something: `scopes`, a `preset` or `grantAll` (or rely on the
/// server's configured default preset, if it has one).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKeyBody {
    /// Human-readable name, 1–200 characters.
    #[serde(default)]
    pub(super) name: String,
    /// The account; the calling key's own when absent (a root key must name one).
    pub(super) account_id: Option<String>,
    /// `live` or `test`; the calling key's environment when absent.
    pub(super) environment: Option<String>,
    /// `30d`, `60d`, `90d`, `1y` or `never`; the service default when absent.
    #[schema(value_type = Option<ExpiresIn>)]
    pub(super) expires_in: Option<String>,
    /// Absolute expiry (RFC 3339), instead of `expiresIn`.
    pub(super) expires_at: Option<String>,
    /// Scopes to grant, `resource:action`.
    #[serde(default)]
    pub(super) scopes: Vec<String>,
    /// A catalog preset: `read_only`, `content_agent`, `full_access`.
    pub(super) preset: Option<String>,
    /// Every current and future scope; must be asked for explicitly.
    #[serde(default)]
    pub(super) grant_all: bool,
    /// Where the key may be used.
    pub(super) restrictions: Option<RestrictionsJson>,
    /// The key's own rate limit.
    pub(super) rate_limit: Option<RateLimitJson>,
    /// Usage credits (`remaining`, optional `refill`); unlimited when absent.
    pub(super) credits: Option<CreditsJson>,
    /// Free-form metadata (at most 32 entries).
    #[serde(default)]
    pub(super) meta: HashMap<String, String>,
}

/// Changes to a key; only the fields given change, effective at once on every replica.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateKeyBody {
    /// New name.
    pub(super) name: Option<String>,
    /// The scopes the key holds from now on.
    pub(super) scopes: Option<Vec<String>>,
    /// Grant every scope, or stop doing so.
    pub(super) grant_all: Option<bool>,
    /// New restrictions (replacing the old ones).
    pub(super) restrictions: Option<RestrictionsJson>,
    /// New rate limit; `null`: the service default.
    pub(super) rate_limit: Option<RateLimitJson>,
    /// New credits (a new balance and refill); `null`: unlimited.
    pub(super) credits: Option<CreditsJson>,
    /// Units added to the credits (negative: taken), race-free with spending.
    pub(super) add_credits: Option<i64>,
    /// New metadata (replacing the old).
    pub(super) meta: Option<HashMap<String, String>>,
    /// New expiry (RFC 3339); `null`: never. Only earlier for a key being replaced.
    pub(super) expires_at: Option<String>,
}

/// How to rotate.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateKeyBody {
    /// How long the old key keeps working (`24h`, `7d`, at most `365d`); absent: revoked now.
    pub(super) grace_period: Option<String>,
}

/// A new key: its secret, shown this once, and its record.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewKeyJson {
    /// The full key. It is never stored and can never be retrieved again.
    pub(super) key: String,
    /// The new key's record.
    pub(super) api_key: ApiKeyJson,
    /// On rotation, the replaced key's record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) previous_api_key: Option<ApiKeyJson>,
}

/// `{"data": NewKey}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewKeyAnswer {
    pub(super) data: NewKeyJson,
}

/// `{"data": ApiKey}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyAnswer {
    pub(super) data: ApiKeyJson,
}

/// One page of keys.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyListAnswer {
    /// The keys, oldest first.
    pub(super) data: Vec<ApiKeyJson>,
    /// Pass as `pageToken` for the next page; `null` on the last.
    pub(super) next_page_token: Option<String>,
    /// With `orderBy=usage desc`: decisions per listed key (by id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) usage: Option<BTreeMap<String, u64>>,
}

/// The answer to a revocation.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedAnswer {
    /// Always `true`.
    pub(super) success: bool,
    /// For people.
    pub(super) message: &'static str,
    /// The revoked key's record.
    pub(super) data: ApiKeyJson,
}

/// A scope of the catalog.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeJson {
    /// `resource:action`.
    pub(super) name: String,
    /// The resource part, for grouping.
    pub(super) resource: String,
    /// What it allows.
    pub(super) description: String,
    /// `read` or `write`.
    #[schema(value_type = String, example = "read")]
    pub(super) access: crate::catalog::Access,
    /// `low`, `medium` or `high`.
    #[schema(value_type = String, example = "low")]
    pub(super) risk: crate::catalog::Risk,
    /// A per-key guardrail every key using the scope is held to.
    pub(super) guardrail: Option<RateLimitJson>,
}

/// A preset: a named grant to create keys with.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresetJson {
    /// `read_only`, `content_agent`, `full_access`, …
    pub(super) name: String,
    /// What it grants.
    pub(super) description: String,
    /// The scopes it grants.
    pub(super) scopes: Vec<String>,
    /// Whether it grants everything.
    pub(super) grant_all: bool,
    /// The restrictions it sets.
    pub(super) restrictions: RestrictionsJson,
}

/// The scope catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogJson {
    /// Every scope.
    pub(super) scopes: Vec<ScopeJson>,
    /// The presets.
    pub(super) presets: Vec<PresetJson>,
}

/// `{"data": Catalog}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogAnswer {
    pub(super) data: CatalogJson,
}

/// The rate-limit state of a key.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitState {
    /// Requests per window.
    pub(super) limit: u32,
    /// Requests left in this window.
    pub(super) remaining: u32,
    /// When the window ends (RFC 3339).
    pub(super) reset_at: String,
}

/// The calling key and its rate-limit state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageJson {
    /// The calling key's record.
    pub(super) api_key: ApiKeyJson,
    /// Its rate limit after this request.
    pub(super) rate_limit: Option<RateLimitState>,
}

/// `{"data": Usage}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageAnswer {
    pub(super) data: UsageJson,
}

/// A field the request got wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldViolationJson {
    /// The field, as this API names it (`scopes[2]`, `rateLimit.window`).
    pub(super) field: String,
    /// What is wrong with it.
    pub(super) description: String,
}

/// Every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorAnswer {
    /// Always `false`.
    pub(super) success: bool,
    /// Stable, for programs: `INVALID_ARGUMENT`, `UNAUTHENTICATED`, `PERMISSION_DENIED`,
    /// `NOT_FOUND`, `FAILED_PRECONDITION`, `ACTIVE_KEY_LIMIT`, `BAD_REQUEST`, `RATE_LIMITED`, …
    pub(super) code: String,
    /// For people.
    pub(super) message: String,
    /// The fields at fault (`INVALID_ARGUMENT`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) field_violations: Vec<FieldViolationJson>,
}
