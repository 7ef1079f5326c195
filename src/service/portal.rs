//! Portal sessions (`docs/portal.md`): a product's backend asks for a one-time link for one of
//! its accounts; the link, opened once, becomes a session whose calls are the same management
//! calls as the API's, made by a caller that is the session (audited as `ps_…`) and holds no
//! more than the session's permissions.

use std::sync::Arc;
use std::time::Duration;

use super::Keyward;
use super::auth::{Access, Caller};
use crate::error::{Error, Result};
use crate::ids::{AccountId, KeyId};
use crate::key::Environment;
use crate::model::ApiKey;
use crate::portal::{
    Branding, LINK_TOKEN_PREFIX, LINK_TTL, MAX_DISPLAY_NAME, MAX_GRANTS, PortalPermissions,
    PortalSession, SESSION_TOKEN_PREFIX,
};
use crate::scope::{KEYS_READ, KEYS_WRITE, is_reserved};
use crate::time::Timestamp;

/// How portal sessions behave (from the configuration).
#[derive(Debug, Clone)]
pub struct PortalSettings {
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after its link was asked for, used or not.
    pub lifetime: Duration,
    /// Where links point: `https://keys.example.com` (the page is `/portal` under it).
    pub base_url: String,
    /// Origins a logo may be loaded from (`https://cdn.example.com`).
    pub logo_origins: Vec<String>,
}

impl Default for PortalSettings {
    fn default() -> Self {
        PortalSettings {
            idle_timeout: Duration::from_secs(30 * 60),
            lifetime: Duration::from_secs(12 * 3_600),
            base_url: "http://127.0.0.1:8080".into(),
            logo_origins: Vec::new(),
        }
    }
}

/// A product backend's request for a portal session.
#[derive(Debug, Clone)]
pub struct NewPortalSession {
    /// The one account the session manages.
    pub account_id: AccountId,
    /// What the customer may do.
    pub permissions: PortalPermissions,
    /// Whom the page greets.
    pub display_name: String,
    /// Where "Back to …" leads.
    pub return_url: String,
    /// How the page looks.
    pub branding: Branding,
}

/// A new session: its one-time link (shown once) and its record.
#[derive(Clone)]
pub struct PortalLink {
    /// `{base_url}/portal/open/kwpl_…`: works once, for [`LINK_TTL`].
    pub url: String,
    /// The session.
    pub session: PortalSession,
}

impl std::fmt::Debug for PortalLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalLink")
            .field("url", &"[redacted]")
            .field("session", &self.session)
            .finish()
    }
}

/// Who is refused, and how, when a link or session does not work: one message for every
/// reason, so a guesser learns nothing.
fn link_refused() -> Error {
    Error::Unauthenticated(
        "this link is not valid: it was used, it expired, or it is unknown".into(),
    )
}

fn session_refused() -> Error {
    Error::Unauthenticated("the portal session has ended; open a new link from the product".into())
}

impl Keyward {
    /// Portal settings.
    pub fn with_portal(mut self, settings: PortalSettings) -> Self {
        self.portal = settings;
        self
    }

    /// The portal settings in force.
    pub fn portal_settings(&self) -> &PortalSettings {
        &self.portal
    }

    /// Creates a portal session for `request.account_id` and answers its one-time link. The
    /// caller needs `keys:write` of the account (or root) and may give no more than it could
    /// grant itself; never a reserved scope.
    pub async fn create_portal_session(
        &self,
        caller: &Caller,
        request: NewPortalSession,
    ) -> Result<PortalLink> {
        caller.authorize(request.account_id.as_str(), Access::Write)?;
        if caller.portal().is_some() {
            return Err(Error::PermissionDenied(
                "a portal session cannot open another".into(),
            ));
        }
        if request.account_id.as_str() == super::auth::ROOT_ACCOUNT {
            return Err(Error::invalid(
                "account_id",
                "the root account has no portal",
            ));
        }
        self.check_portal_request(&request)?;
        let grantable = self.portal_grantable(&request.permissions);
        caller.authorize_grant(&grantable, false)?;
        let now = Timestamp::now();
        let link = crate::portal::token(LINK_TOKEN_PREFIX);
        let session = PortalSession {
            id: crate::portal::session_id(),
            account_id: request.account_id,
            display_name: request.display_name,
            return_url: request.return_url,
            permissions: request.permissions,
            branding: request.branding,
            created_by: caller.key_id().to_owned(),
            created_at: now,
            link_expires_at: now.saturating_add(LINK_TTL),
            opened_at: None,
            last_seen_at: None,
            expires_at: now.saturating_add(self.portal.lifetime),
            revoked_at: None,
        };
        self.store
            .insert_portal_session(&session, &crate::portal::token_hash(&link))
            .await?;
        tracing::info!(session_id = %session.id, account_id = %session.account_id, actor = caller.key_id(), "portal session created");
        Ok(PortalLink {
            url: format!(
                "{}/portal/open/{link}",
                self.portal.base_url.trim_end_matches('/')
            ),
            session,
        })
    }

    fn check_portal_request(&self, r: &NewPortalSession) -> Result<()> {
        let p = &r.permissions;
        let mut violations = Vec::new();
        let mut bad = |field: String, why: String| {
            violations.push(crate::error::FieldViolation {
                field,
                description: why,
            })
        };
        if p.presets.is_empty() && p.scopes.is_empty() {
            bad(
                "permissions".into(),
                "give the presets or scopes the customer may grant".into(),
            );
        }
        if p.presets.len() > MAX_GRANTS {
            bad(
                "permissions.presets".into(),
                format!("at most {MAX_GRANTS}"),
            );
        } else {
            for (i, name) in p.presets.iter().enumerate() {
                match self.catalog.preset(name) {
                    None => bad(
                        format!("permissions.presets[{i}]"),
                        format!("unknown preset {}", crate::error::echo(name)),
                    ),
                    Some(preset)
                        if preset.grant_all || preset.scopes.iter().any(|s| is_reserved(s)) =>
                    {
                        bad(
                            format!("permissions.presets[{i}]"),
                            format!("{name:?} grants all or a reserved scope: not for customers"),
                        )
                    }
                    Some(_) => {}
                }
            }
        }
        if p.scopes.len() > MAX_GRANTS {
            bad("permissions.scopes".into(), format!("at most {MAX_GRANTS}"));
        } else {
            for (i, scope) in p.scopes.iter().enumerate() {
                if is_reserved(scope) {
                    bad(
                        format!("permissions.scopes[{i}]"),
                        format!("{scope:?} is reserved: a portal never grants it"),
                    );
                } else if self.catalog.get(scope).is_none() {
                    bad(
                        format!("permissions.scopes[{i}]"),
                        format!("unknown scope {}", crate::error::echo(scope)),
                    );
                }
            }
        }
        if let (Some(max), Some(limit)) = (p.max_ttl_secs, self.policy.max_ttl)
            && Duration::from_secs(max) > limit
        {
            bad(
                "permissions.max_ttl".into(),
                format!("longer than the service's max_ttl ({}s)", limit.as_secs()),
            );
        }
        if p.max_ttl_secs == Some(0) {
            bad(
                "permissions.max_ttl".into(),
                "must be longer than zero".into(),
            );
        }
        if r.display_name.chars().count() > MAX_DISPLAY_NAME
            || r.display_name.chars().any(char::is_control)
        {
            bad(
                "display_name".into(),
                format!("at most {MAX_DISPLAY_NAME} characters, no control characters"),
            );
        }
        if let Err(why) = crate::portal::url_origin(&r.return_url) {
            bad("return_url".into(), why);
        }
        let b = &r.branding;
        if b.product_name.chars().count() > MAX_DISPLAY_NAME
            || b.product_name.chars().any(char::is_control)
        {
            bad(
                "branding.product_name".into(),
                format!("at most {MAX_DISPLAY_NAME} characters, no control characters"),
            );
        }
        if !b.accent_color.is_empty() && !crate::portal::is_color(&b.accent_color) {
            bad("branding.accent_color".into(), "must be #rrggbb".into());
        }
        if !b.logo_url.is_empty() {
            match crate::portal::url_origin(&b.logo_url) {
                Err(why) => bad("branding.logo_url".into(), why),
                Ok(origin) if !self.portal.logo_origins.contains(&origin) => bad(
                    "branding.logo_url".into(),
                    format!("{origin} is not in portal_logo_origins"),
                ),
                Ok(_) => {}
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(violations))
        }
    }

    /// Every scope a session with `permissions` may grant: its scopes and its presets'.
    fn portal_grantable(&self, permissions: &PortalPermissions) -> Vec<String> {
        let mut scopes = permissions.scopes.clone();
        for name in &permissions.presets {
            if let Some(preset) = self.catalog.preset(name) {
                scopes.extend(preset.scopes.iter().cloned());
            }
        }
        scopes.sort();
        scopes.dedup();
        scopes
    }

    /// Opens a one-time link: answers the session's secret (for the cookie) and the session.
    /// A link works once, within [`LINK_TTL`]; anything else is refused alike.
    pub async fn open_portal_link(&self, link: &str) -> Result<(String, PortalSession)> {
        if !crate::portal::well_formed(link, LINK_TOKEN_PREFIX) {
            return Err(link_refused());
        }
        let secret = crate::portal::token(SESSION_TOKEN_PREFIX);
        let session = self
            .store
            .open_portal_session(
                &crate::portal::token_hash(link),
                &crate::portal::token_hash(&secret),
                Timestamp::now(),
            )
            .await?
            .ok_or_else(link_refused)?;
        tracing::info!(session_id = %session.id, account_id = %session.account_id, "portal link opened");
        Ok((secret, session))
    }

    /// The caller a live session's secret stands for, and the session; marks it used.
    pub async fn authenticate_portal(&self, secret: &str) -> Result<(Caller, PortalSession)> {
        if !crate::portal::well_formed(secret, SESSION_TOKEN_PREFIX) {
            return Err(session_refused());
        }
        let now = Timestamp::now();
        let idle_since = Timestamp::from_micros(now.micros().saturating_sub(
            i64::try_from(self.portal.idle_timeout.as_micros()).unwrap_or(i64::MAX),
        ));
        let session = self
            .store
            .touch_portal_session(&crate::portal::token_hash(secret), now, idle_since)
            .await?
            .ok_or_else(session_refused)?;
        // A disabled account is managed by no one but operators, as with its own keys.
        let disabled = self
            .store
            .get_account(&session.account_id, now)
            .await?
            .is_some_and(|a| a.disabled);
        if disabled {
            return Err(Error::PermissionDenied(
                "this account is disabled; contact the product's support".into(),
            ));
        }
        let mut scopes = vec![KEYS_READ.to_owned(), KEYS_WRITE.to_owned()];
        let grantable = self.portal_grantable(&session.permissions);
        scopes.extend(grantable.iter().cloned());
        let key = ApiKey {
            scopes,
            ..ApiKey::issued(
                session.account_id.clone(),
                session.display_name.clone(),
                "",
                Environment::Live,
                session.created_at,
            )
        };
        let key = ApiKey {
            id: KeyId::trusted(session.id.clone()),
            ..key
        };
        let caller = Caller::for_portal(
            Arc::new(crate::cache::KeyState::new(&key, false)),
            Arc::new(super::auth::PortalGrant {
                permissions: session.permissions.clone(),
                grantable,
            }),
        );
        Ok((caller, session))
    }

    /// Ends the session the caller is (signing out).
    pub async fn sign_out_portal(&self, caller: &Caller) -> Result<()> {
        if caller.portal().is_none() {
            return Err(Error::PermissionDenied("not a portal session".into()));
        }
        self.store
            .revoke_portal_session(caller.key_id(), None, Timestamp::now())
            .await?;
        Ok(())
    }

    /// An account's portal sessions, newest first (operators: `keys:read` of the account).
    pub async fn list_portal_sessions(
        &self,
        caller: &Caller,
        account_id: &AccountId,
        limit: u32,
    ) -> Result<Vec<PortalSession>> {
        caller.authorize(account_id.as_str(), Access::Read)?;
        if caller.portal().is_some() {
            return Err(Error::PermissionDenied(
                "a portal session cannot list sessions".into(),
            ));
        }
        self.store.list_portal_sessions(account_id, limit).await
    }

    /// Ends a portal session of an account the caller may write to.
    pub async fn revoke_portal_session(
        &self,
        caller: &Caller,
        account_id: &AccountId,
        id: &str,
    ) -> Result<PortalSession> {
        caller.authorize(account_id.as_str(), Access::Write)?;
        if caller.portal().is_some() {
            return Err(Error::PermissionDenied(
                "a portal session cannot end sessions".into(),
            ));
        }
        let session = self
            .store
            .revoke_portal_session(id, Some(account_id), Timestamp::now())
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("portal session {id} of account {account_id}"))
            })?;
        tracing::info!(session_id = %session.id, account_id = %session.account_id, actor = caller.key_id(), "portal session revoked");
        Ok(session)
    }
}
