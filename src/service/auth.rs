//! Who is calling ManageService and what they may do. Management credentials are keyward keys,
//! looked up through the same cache as Verify: a revoked or expired key stops working at once.
//! `root` manages every account; `keys:read` / `keys:write` manage the key's own account only.

use std::sync::Arc;

use super::Keyward;
use crate::cache::CachedKey;
use crate::error::{Error, Result};
use crate::model::ApiKey;
use crate::scope::{KEYS_READ, KEYS_WRITE, ROOT};
use crate::time::Timestamp;

/// An authenticated management caller: the key it presented.
#[derive(Debug, Clone)]
pub struct Caller {
    cached: Arc<CachedKey>,
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
    fn key(&self) -> &ApiKey {
        &self.cached.state.key
    }

    /// The caller's key id, recorded as the actor of its mutations.
    pub fn key_id(&self) -> &str {
        &self.key().id
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
        if self.key().account_id != account_id {
            return Err(Error::PermissionDenied(format!(
                "the calling key belongs to another account than {account_id:?}"
            )));
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
    pub fn authorize_grant(&self, scopes: &[String], grant_all: bool) -> Result<()> {
        if self.is_root() {
            return Ok(());
        }
        if grant_all && !self.key().grant_all {
            return Err(Error::PermissionDenied(
                "only a key with grant_all may grant grant_all".into(),
            ));
        }
        if let Some(scope) = scopes.iter().find(|s| *s == ROOT || !self.key().holds(s)) {
            return Err(Error::PermissionDenied(format!(
                "the calling key cannot grant {scope:?}, which it does not hold"
            )));
        }
        Ok(())
    }
}

impl Keyward {
    /// Authenticates the key presented as `authorization: Bearer <key>`.
    pub async fn authenticate(&self, raw: Option<&str>) -> Result<Caller> {
        let unauthenticated = || {
            Error::Unauthenticated(
                "a valid key is required as `authorization: Bearer <key>`".into(),
            )
        };
        let raw = raw.filter(|r| !r.is_empty()).ok_or_else(unauthenticated)?;
        let parsed = self.format.parse(raw).ok_or_else(unauthenticated)?;
        let cached = self.lookup(&parsed).await?.ok_or_else(unauthenticated)?;
        let key = &cached.state.key;
        if !key.is_active(Timestamp::now()) {
            return Err(unauthenticated());
        }
        if cached.state.account_disabled {
            return Err(Error::PermissionDenied(
                "the calling key's account is disabled".into(),
            ));
        }
        if ![ROOT, KEYS_READ, KEYS_WRITE].iter().any(|s| key.holds(s)) {
            return Err(Error::PermissionDenied(
                "the calling key holds no management scope (root, keys:read, keys:write)".into(),
            ));
        }
        Ok(Caller { cached })
    }
}
