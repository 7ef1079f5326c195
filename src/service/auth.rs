//! Who is calling ManageService and what they may do. Management credentials are keyward keys,
//! looked up through the same cache as Verify: a revoked or expired key stops working at once.
//! `root` manages every account; `keys:read` / `keys:write` manage the key's own account only.

use std::sync::Arc;

use super::Keyward;
use crate::cache::KeyState;
use crate::error::{Error, Result};
use crate::ids::{AccountId, KeyId};
use crate::key::Environment;
use crate::restriction::Method;
use crate::scope::{KEYS_READ, KEYS_VERIFY, KEYS_WRITE, ROOT};
use crate::time::Timestamp;

/// The account root keys belong to. It is reserved: no key but a root key is ever created in
/// it, and no caller but a root key reaches it, whatever its own account is called.
pub const ROOT_ACCOUNT: &str = "root";

/// How a management call reached the server, to check the calling key's own restrictions
/// against: the caller's address is the TCP peer, the method is `GET` for reads and `POST` for
/// changes (as the HTTP API spells them), the path is the RPC's (`/keyward.v1.ManageService/
/// CreateKey`), and there is no referrer, so a key restricted by referrer cannot manage.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    /// The TCP peer's address, if known.
    pub peer: Option<std::net::IpAddr>,
    /// The RPC's path.
    pub rpc: &'a str,
    /// Whether the call reads or changes.
    pub access: Access,
}

/// An authenticated management caller: the key it presented, or the portal session it is
/// (a key made up for the session: its account, `keys:read`, `keys:write` and what the
/// session may grant; see [`PortalGrant`]).
#[derive(Debug, Clone)]
pub struct Caller {
    cached: Arc<KeyState>,
    portal: Option<Arc<PortalGrant>>,
}

/// What a portal session may do beyond reading its account's keys.
#[derive(Debug, Clone)]
pub struct PortalGrant {
    /// The session's permissions as the product's backend gave them.
    pub permissions: crate::portal::PortalPermissions,
    /// Every scope it may grant: its scopes and its presets'.
    pub grantable: Vec<String>,
}

/// What a portal session asks to do, beside reading, creating and editing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortalAction {
    /// Rotate a key.
    Rotate,
    /// Revoke a key.
    Revoke,
    /// See usage over time.
    Usage,
}

/// The kind of access an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading keys and account policy.
    Read,
    /// Changing keys.
    Write,
}

impl Caller {
    /// The caller a portal session stands for.
    pub(super) fn for_portal(cached: Arc<KeyState>, grant: Arc<PortalGrant>) -> Self {
        Caller {
            cached,
            portal: Some(grant),
        }
    }

    /// The portal session's grant, when the caller is one.
    pub fn portal(&self) -> Option<&PortalGrant> {
        self.portal.as_deref()
    }

    /// Fails when the caller is a portal session not allowed to do `action`; any other caller
    /// passes (its scopes decide).
    pub fn authorize_portal(&self, action: PortalAction) -> Result<()> {
        let Some(grant) = &self.portal else {
            return Ok(());
        };
        let p = &grant.permissions;
        let (allowed, what) = match action {
            PortalAction::Rotate => (p.rotate, "rotate keys"),
            PortalAction::Revoke => (p.revoke, "revoke keys"),
            PortalAction::Usage => (p.usage, "see usage"),
        };
        if allowed {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "this portal session may not {what}"
            )))
        }
    }

    fn key(&self) -> &crate::model::CachedKey {
        &self.cached.key
    }

    /// The caller's key id, recorded as the actor of its mutations.
    pub fn key_id(&self) -> &str {
        self.key().id()
    }

    /// The caller's key, as an id.
    pub fn key_id_owned(&self) -> KeyId {
        KeyId::trusted(self.key_id().to_owned())
    }

    /// The account of the caller's key, as an id.
    pub fn account_id_owned(&self) -> AccountId {
        AccountId::trusted(self.account_id().to_owned())
    }

    /// The account of the caller's key.
    pub fn account_id(&self) -> &str {
        self.key().account_id()
    }

    /// The environment of the caller's key.
    pub fn environment(&self) -> Environment {
        self.key().environment()
    }

    /// Whether the caller holds `root` or `keys:write` (of any account).
    pub fn may_write_somewhere(&self) -> bool {
        self.is_root() || self.key().holds(KEYS_WRITE)
    }

    /// Whether the caller holds `root`.
    pub fn is_root(&self) -> bool {
        self.key().holds(ROOT)
    }

    /// Fails unless the caller may act on `account_id` with `access`.
    pub fn authorize(&self, account_id: &str, access: Access) -> Result<()> {
        if self.is_root() {
            return Ok(());
        }
        if account_id == ROOT_ACCOUNT || self.key().account_id() == ROOT_ACCOUNT {
            return Err(Error::PermissionDenied(
                "only a root key may act on the root account".into(),
            ));
        }
        let held = match access {
            Access::Read => self.key().holds(KEYS_READ) || self.key().holds(KEYS_WRITE),
            Access::Write => self.key().holds(KEYS_WRITE),
        };
        if !held {
            let needed = if access == Access::Read {
                KEYS_READ
            } else {
                KEYS_WRITE
            };
            return Err(Error::PermissionDenied(format!(
                "the calling key lacks the {needed} scope"
            )));
        }
        if self.key().account_id() != account_id {
            return Err(Error::PermissionDenied(format!(
                "the calling key belongs to another account than {}",
                crate::error::echo(account_id)
            )));
        }
        Ok(())
    }

    /// Fails unless the caller may create or change a key of `environment`: a `test` key
    /// manages only `test` keys, so a leaked test credential can never mint or touch a live key.
    pub fn authorize_environment(&self, environment: Environment) -> Result<()> {
        if self.key().environment() == Environment::Test && environment != Environment::Test {
            return Err(Error::PermissionDenied(
                "a test key manages only test keys".into(),
            ));
        }
        Ok(())
    }

    /// Fails unless the caller holds `root`.
    pub fn require_root(&self) -> Result<()> {
        if self.is_root() {
            Ok(())
        } else {
            Err(Error::PermissionDenied(
                "only a root key may do this".into(),
            ))
        }
    }

    /// Fails if a key with these grants would hold anything the caller does not: no escalation.
    pub fn authorize_grant(&self, scopes: &[impl AsRef<str>], grant_all: bool) -> Result<()> {
        if self.is_root() {
            return Ok(());
        }
        if let Some(grant) = &self.portal {
            if grant_all {
                return Err(Error::PermissionDenied(
                    "a portal session cannot grant grant_all".into(),
                ));
            }
            if let Some(scope) = scopes
                .iter()
                .map(AsRef::as_ref)
                .find(|s| !grant.grantable.iter().any(|g| g == s))
            {
                return Err(Error::PermissionDenied(format!(
                    "this portal session cannot grant {scope:?}"
                )));
            }
            return Ok(());
        }
        if grant_all && !self.key().grant_all() {
            return Err(Error::PermissionDenied(
                "only a key with grant_all may grant grant_all".into(),
            ));
        }
        if let Some(scope) = scopes
            .iter()
            .map(AsRef::as_ref)
            .find(|s| *s == ROOT || !self.key().holds(s))
        {
            return Err(Error::PermissionDenied(format!(
                "the calling key cannot grant {scope:?}, which it does not hold"
            )));
        }
        Ok(())
    }
}

impl Keyward {
    /// Authenticates the key presented as `authorization: Bearer <key>` for a management call
    /// made as `call` describes; the key's own restrictions apply to it as they would on Verify.
    pub async fn authenticate(&self, raw: Option<&str>, call: &CallContext<'_>) -> Result<Caller> {
        let cached = self.authenticate_key(raw, call).await?;
        if ![ROOT, KEYS_READ, KEYS_WRITE]
            .iter()
            .any(|s| cached.key.holds(s))
        {
            return Err(Error::PermissionDenied(
                "the calling key holds no management scope (root, keys:read, keys:write)".into(),
            ));
        }
        Ok(Caller {
            cached,
            portal: None,
        })
    }

    /// Authenticates the caller of a gateway-facing face (Verify) when caller authentication
    /// is on: a key holding `keys:verify` (or `root`), under its own restrictions.
    pub async fn authenticate_verifier(
        &self,
        raw: Option<&str>,
        call: &CallContext<'_>,
    ) -> Result<()> {
        let cached = self.authenticate_key(raw, call).await?;
        if !(cached.key.holds(KEYS_VERIFY) || cached.key.holds(ROOT)) {
            return Err(Error::PermissionDenied(
                "the calling key lacks the keys:verify scope".into(),
            ));
        }
        Ok(())
    }

    /// A valid, active key of an enabled account whose restrictions allow this call.
    async fn authenticate_key(
        &self,
        raw: Option<&str>,
        call: &CallContext<'_>,
    ) -> Result<Arc<KeyState>> {
        let unauthenticated = || {
            Error::Unauthenticated(
                "a valid key is required as `authorization: Bearer <key>`".into(),
            )
        };
        let raw = raw.filter(|r| !r.is_empty()).ok_or_else(unauthenticated)?;
        let parsed = self.format.parse(raw).ok_or_else(unauthenticated)?;
        let cached = self.lookup(&parsed).await?.ok_or_else(unauthenticated)?;
        let key = &cached.key;
        if !key.is_active(Timestamp::now()) {
            return Err(unauthenticated());
        }
        if cached.account_disabled {
            return Err(Error::PermissionDenied(
                "the calling key's account is disabled".into(),
            ));
        }
        let r = key.restrictions();
        let method = match call.access {
            Access::Read => "GET",
            Access::Write => "POST",
        };
        let refused = if !r.allows_ip(call.peer) {
            Some("the caller's address is outside the calling key's allowed_cidrs")
        } else if !r.allows_referrer("") {
            Some("the calling key is restricted to referrers, which a call to keyward has none of")
        } else if !r.allows_method(Method::parse(method).ok().as_ref()) {
            Some("the calling key's allowed_methods do not allow this call")
        } else if !r.allows_path(call.rpc) {
            Some("the calling key's allowed_paths do not include this call")
        } else {
            None
        };
        if let Some(why) = refused {
            return Err(Error::PermissionDenied(why.into()));
        }
        Ok(cached)
    }
}
