//! A portal session request (`CreatePortalSession`, `POST /v1/portal-sessions`), as either
//! transport read it, checked into a [`NewPortalSession`]. What the session may grant is the
//! service's to check against the catalog and the caller.

use std::time::Duration;

use super::Violations;
use super::fields::{RawDuration, duration};
use crate::error::Result;
use crate::ids::AccountId;
use crate::portal::{Branding, MAX_GRANTS, PortalPermissions};
use crate::service::NewPortalSession;

/// Longest `max_ttl` a portal may give (ten years; the service's own `max_ttl` bounds it
/// further).
const MAX_PORTAL_TTL: Duration = Duration::from_secs(10 * 366 * 86_400);

/// A portal session request as its transport read it.
#[derive(Debug, Clone, Default)]
pub(crate) struct PortalSessionInput {
    pub account_id: String,
    pub presets: Vec<String>,
    pub scopes: Vec<String>,
    pub max_ttl: Option<RawDuration>,
    pub rotate: bool,
    pub revoke: bool,
    pub usage: bool,
    pub display_name: String,
    pub return_url: String,
    pub product_name: String,
    pub accent_color: String,
    pub logo_url: String,
}

/// Checks a portal session request's shape: the account id, the lifetime, the list sizes.
pub(crate) fn portal_session(mut v: Violations, r: PortalSessionInput) -> Result<NewPortalSession> {
    let account_id = v.parse("account_id", &r.account_id, AccountId::parse);
    let max_ttl_secs = r.max_ttl.and_then(|d| {
        duration(d, MAX_PORTAL_TTL, "ten years")
            .map(|d| d.as_secs())
            .map_err(|e| v.add("permissions.max_ttl", e))
            .ok()
    });
    for (field, list) in [
        ("permissions.presets", &r.presets),
        ("permissions.scopes", &r.scopes),
    ] {
        if list.len() > MAX_GRANTS {
            v.add(field, format!("at most {MAX_GRANTS}"));
        }
    }
    let account_id = v.finish_parsed(account_id)?;
    Ok(NewPortalSession {
        account_id,
        permissions: PortalPermissions {
            presets: r.presets,
            scopes: r.scopes,
            max_ttl_secs,
            rotate: r.rotate,
            revoke: r.revoke,
            usage: r.usage,
        },
        display_name: r.display_name,
        return_url: r.return_url,
        branding: Branding {
            product_name: r.product_name,
            accent_color: r.accent_color,
            logo_url: r.logo_url,
        },
    })
}
