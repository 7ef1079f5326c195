//! Portal sessions: a product's backend, which has signed its own user in, asks for a one-time
//! link to keyward's key page for one account; the link becomes a cookie session that manages
//! that account's keys within the permissions the backend gave. See `docs/portal.md`.
//!
//! Pure: what a session may do, its secrets' hashes and its clock. Storage is the store's,
//! HTTP the `http::portal` adapter's.

use std::time::Duration;

use rand::TryRngCore;
use rand::distr::{Alphanumeric, Distribution};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ids::AccountId;
use crate::time::Timestamp;

/// How long a portal link works before it is opened.
pub const LINK_TTL: Duration = Duration::from_secs(5 * 60);
/// Prefix of a session id.
pub const SESSION_ID_PREFIX: &str = "ps_";
/// Prefix of a link token (the secret in the link).
pub const LINK_TOKEN_PREFIX: &str = "kwpl_";
/// Prefix of a session token (the secret in the cookie).
pub const SESSION_TOKEN_PREFIX: &str = "kwps_";
/// Random characters in a token: 43 × log2(62) ≈ 256 bits.
const TOKEN_LEN: usize = 43;
/// Longest display name, product name.
pub const MAX_DISPLAY_NAME: usize = 100;
/// Longest return or logo URL.
pub const MAX_URL: usize = 2_048;
/// Most presets and scopes a session may name.
pub const MAX_GRANTS: usize = 100;

/// What the customer may do in the portal. Never more than the backend's key could do itself;
/// never a reserved scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalPermissions {
    /// Catalog presets the customer may choose.
    pub presets: Vec<String>,
    /// Scopes the customer may grant one by one (custom scopes), beside the presets' own.
    pub scopes: Vec<String>,
    /// Longest lifetime of a key the customer creates; `None`: the service's `max_ttl`.
    pub max_ttl_secs: Option<u64>,
    /// Whether the customer may rotate keys.
    pub rotate: bool,
    /// Whether the customer may revoke keys.
    pub revoke: bool,
    /// Whether the customer may see usage over time.
    pub usage: bool,
}

/// How the page looks: the product's name, accent colour and logo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branding {
    /// Shown as the page's title.
    pub product_name: String,
    /// `#rrggbb`.
    pub accent_color: String,
    /// `https://…` on one of `portal_logo_origins`.
    pub logo_url: String,
}

/// A stored portal session, without its secrets (only their hashes are stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalSession {
    /// `ps_…`.
    pub id: String,
    /// The one account it manages.
    pub account_id: AccountId,
    /// Whom the page greets (the product's user).
    pub display_name: String,
    /// Where "Back to …" leads.
    pub return_url: String,
    /// What the customer may do.
    pub permissions: PortalPermissions,
    /// How the page looks.
    pub branding: Branding,
    /// The key that asked for the session.
    pub created_by: String,
    /// When it was asked for.
    pub created_at: Timestamp,
    /// Until when the link may be opened.
    pub link_expires_at: Timestamp,
    /// When the link was opened (the session began).
    pub opened_at: Option<Timestamp>,
    /// Last request of the session.
    pub last_seen_at: Option<Timestamp>,
    /// When the session ends whatever happens (absolute lifetime).
    pub expires_at: Timestamp,
    /// When an operator or the customer (signing out) ended it.
    pub revoked_at: Option<Timestamp>,
}

impl PortalSession {
    /// Whether the session is in use at `now`: opened, not ended, not idle for `idle`.
    pub fn is_live(&self, now: Timestamp, idle: Duration) -> bool {
        self.opened_at.is_some()
            && self.revoked_at.is_none()
            && self.expires_at > now
            && self
                .last_seen_at
                .is_some_and(|seen| seen.saturating_add(idle) > now)
    }

    /// `pending` (link not opened), `active`, `expired` or `revoked`.
    pub fn status(&self, now: Timestamp, idle: Duration) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.opened_at.is_none() {
            if self.link_expires_at > now {
                "pending"
            } else {
                "expired"
            }
        } else if self.is_live(now, idle) {
            "active"
        } else {
            "expired"
        }
    }
}

/// A fresh secret with `prefix`, from the OS's generator.
pub fn token(prefix: &str) -> String {
    let mut rng = OsRng.unwrap_err();
    let mut raw = String::with_capacity(prefix.len() + TOKEN_LEN);
    raw.push_str(prefix);
    raw.extend(
        Alphanumeric
            .sample_iter(&mut rng)
            .take(TOKEN_LEN)
            .map(char::from),
    );
    raw
}

/// A fresh session id.
pub fn session_id() -> String {
    let mut id = token(SESSION_ID_PREFIX);
    id.truncate(SESSION_ID_PREFIX.len() + 22);
    id
}

/// The stored form of a link or session token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Whether `token` has the shape of a token with `prefix` (checked before any hashing or
/// query: anything else is refused as it is).
pub fn well_formed(token: &str, prefix: &str) -> bool {
    token.len() == prefix.len() + TOKEN_LEN
        && token.starts_with(prefix)
        && token[prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
}

/// The CSRF token of a session: derived from its secret, so any replica computes it and only
/// the holder of the cookie (through the page, which reads it from the session's own answer)
/// knows it.
pub fn csrf_token(session_token: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"keyward portal csrf\0")
        .chain_update(session_token.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two strings in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether `color` is `#rrggbb`.
pub fn is_color(color: &str) -> bool {
    color.len() == 7 && color.starts_with('#') && color[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The origin (`scheme://host[:port]`) of an absolute `http(s)` URL without credentials, or
/// why it is not one.
pub fn url_origin(url: &str) -> Result<String, String> {
    if url.len() > MAX_URL {
        return Err(format!("at most {MAX_URL} characters"));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".into());
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("must be an absolute http or https URL")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err("must be an absolute http or https URL".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err("must name a host".into());
    }
    if authority.contains('@') {
        return Err("must not contain credentials".into());
    }
    Ok(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_checked_by_shape() {
        let a = token(LINK_TOKEN_PREFIX);
        let b = token(LINK_TOKEN_PREFIX);
        assert_ne!(a, b);
        assert!(well_formed(&a, LINK_TOKEN_PREFIX));
        assert!(!well_formed(&a, SESSION_TOKEN_PREFIX));
        assert!(!well_formed(&a[..a.len() - 1], LINK_TOKEN_PREFIX));
        let mut bad = a.clone();
        bad.pop();
        bad.push('/');
        assert!(!well_formed(&bad, LINK_TOKEN_PREFIX));
        assert_eq!(token_hash(&a).len(), 32);
        assert!(session_id().starts_with(SESSION_ID_PREFIX));
    }

    #[test]
    fn csrf_is_bound_to_the_session() {
        let a = token(SESSION_TOKEN_PREFIX);
        let b = token(SESSION_TOKEN_PREFIX);
        assert_eq!(csrf_token(&a), csrf_token(&a));
        assert_ne!(csrf_token(&a), csrf_token(&b));
        assert!(same(&csrf_token(&a), &csrf_token(&a)));
        assert!(!same(&csrf_token(&a), &csrf_token(&b)));
        assert!(!same("ab", "abc"));
    }

    #[test]
    fn urls_and_colours() {
        assert_eq!(
            url_origin("https://App.Example.com:8443/settings?x=1").unwrap(),
            "https://app.example.com:8443"
        );
        assert!(url_origin("javascript:alert(1)").is_err());
        assert!(url_origin("https://user:pw@example.com/").is_err());
        assert!(url_origin("https:///path").is_err());
        assert!(url_origin("https://exa mple.com/").is_err());
        assert!(url_origin("ftp://example.com/").is_err());
        assert!(is_color("#0a7AfF"));
        assert!(!is_color("red"));
        assert!(!is_color("#0a7aff;"));
    }

    #[test]
    fn a_session_lives_until_idle_expiry_or_revocation() {
        let t = |s: i64| Timestamp::from_micros(s * 1_000_000);
        let idle = Duration::from_secs(60);
        let mut s = PortalSession {
            id: session_id(),
            account_id: AccountId::trusted("acme".into()),
            display_name: String::new(),
            return_url: String::new(),
            permissions: PortalPermissions::default(),
            branding: Branding::default(),
            created_by: "key_a".into(),
            created_at: t(0),
            link_expires_at: t(300),
            opened_at: None,
            last_seen_at: None,
            expires_at: t(3_600),
            revoked_at: None,
        };
        assert_eq!(s.status(t(10), idle), "pending");
        assert_eq!(s.status(t(301), idle), "expired");
        s.opened_at = Some(t(10));
        s.last_seen_at = Some(t(10));
        assert_eq!(s.status(t(60), idle), "active");
        assert_eq!(s.status(t(71), idle), "expired");
        s.last_seen_at = Some(t(3_590));
        assert_eq!(s.status(t(3_595), idle), "active");
        assert_eq!(s.status(t(3_600), idle), "expired");
        s.revoked_at = Some(t(20));
        assert_eq!(s.status(t(30), idle), "revoked");
    }
}
