//! A key as the verify path keeps it in memory: only what the decision and its answer read,
//! in compact form. One million of these are cached, so every byte counts: the id, account,
//! name and scopes share one allocation; restrictions and metadata, which most keys lack, cost
//! a pointer when absent; times and limits are plain integers.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::{ApiKey, RateLimit, Restrictions};
use crate::key::Environment;
use crate::time::Timestamp;

/// The expiry of a key that never expires.
const NEVER: i64 = i64::MAX;

/// The verify path's copy of a key's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedKey {
    /// `id`, `account_id`, `name` and the scopes (space-separated), one after the other.
    text: Box<str>,
    id_len: u16,
    account_len: u16,
    name_len: u16,
    environment: Environment,
    grant_all: bool,
    revoked: bool,
    /// Whether the key has usage credits (their balance is in the database).
    credits: bool,
    /// The key's own rate limit: units per window (0: the service default) and the window's
    /// seconds (at most 366 days).
    limit: u32,
    window_secs: u32,
    /// Microseconds since the epoch; [`NEVER`] when the key does not expire.
    expires_at: i64,
    restrictions: Option<Box<Restrictions>>,
    // Boxed on purpose: one pointer (8 bytes) for the many keys without metadata, not a map's 24.
    #[allow(clippy::box_collection)]
    meta: Option<Box<BTreeMap<String, String>>>,
}

impl From<&ApiKey> for CachedKey {
    fn from(key: &ApiKey) -> Self {
        let mut text = String::with_capacity(
            key.id.len()
                + key.account_id.len()
                + key.name.len()
                + key.scopes.iter().map(|s| s.len() + 1).sum::<usize>(),
        );
        text.push_str(&key.id);
        text.push_str(&key.account_id);
        text.push_str(&key.name);
        for (i, scope) in key.scopes.iter().enumerate() {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(scope);
        }
        let len = |s: &str| u16::try_from(s.len()).unwrap_or(u16::MAX);
        let (limit, window_secs) = match key.rate_limit {
            Some(rl) => (rl.limit, u32::try_from(rl.window_secs).unwrap_or(u32::MAX)),
            None => (0, 0),
        };
        CachedKey {
            text: text.into_boxed_str(),
            id_len: len(&key.id),
            account_len: len(&key.account_id),
            name_len: len(&key.name),
            environment: key.environment,
            grant_all: key.grant_all,
            revoked: key.is_revoked(),
            credits: key.credits.is_some(),
            limit,
            window_secs,
            expires_at: key.expires_at.map_or(NEVER, Timestamp::micros),
            restrictions: (key.restrictions != Restrictions::default())
                .then(|| Box::new(key.restrictions.clone())),
            meta: (!key.meta.is_empty()).then(|| Box::new(key.meta.clone())),
        }
    }
}

impl CachedKey {
    fn part(&self, start: usize, len: u16) -> &str {
        self.text
            .get(start..start + usize::from(len))
            .unwrap_or_default()
    }

    /// Whether the key has usage credits (their balance is in the database).
    pub fn has_credits(&self) -> bool {
        self.credits
    }

    /// The key's public id, as an id (a copy: for the paths that leave the verify path).
    pub fn key_id(&self) -> crate::ids::KeyId {
        crate::ids::KeyId::trusted(self.id().to_owned())
    }

    /// The key's public id.
    pub fn id(&self) -> &str {
        self.part(0, self.id_len)
    }

    /// The owning account.
    pub fn account_id(&self) -> &str {
        self.part(usize::from(self.id_len), self.account_len)
    }

    /// Human-readable name.
    pub fn name(&self) -> &str {
        self.part(
            usize::from(self.id_len) + usize::from(self.account_len),
            self.name_len,
        )
    }

    /// The scopes held by name.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        let start =
            usize::from(self.id_len) + usize::from(self.account_len) + usize::from(self.name_len);
        let text = self.text.get(start..).unwrap_or_default();
        // Split at the spaces byte by byte: every verify walks this short list.
        let mut rest = text;
        std::iter::from_fn(move || {
            loop {
                if rest.is_empty() {
                    return None;
                }
                let end = rest.bytes().position(|b| b == b' ').unwrap_or(rest.len());
                let (word, tail) = rest.split_at(end);
                rest = tail.get(1..).unwrap_or_default();
                if !word.is_empty() {
                    return Some(word);
                }
            }
        })
    }

    /// The key's environment.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// Whether it holds every current and future scope.
    pub fn grant_all(&self) -> bool {
        self.grant_all
    }

    /// Whether the key holds `scope`, by name or through `grant_all` (which covers every
    /// scope but the reserved system scopes), as [`ApiKey::holds`] decides.
    pub fn holds(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope) || (self.grant_all && !crate::scope::is_reserved(scope))
    }

    /// Where the key may be used.
    pub fn restrictions(&self) -> &Restrictions {
        static NONE: OnceLock<Restrictions> = OnceLock::new();
        self.restrictions
            .as_deref()
            .unwrap_or_else(|| NONE.get_or_init(Restrictions::default))
    }

    /// The key's own rate limit; `None`: the service default.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        (self.limit > 0).then_some(RateLimit {
            limit: self.limit,
            window_secs: u64::from(self.window_secs),
        })
    }

    /// Free-form metadata.
    pub fn meta(&self) -> Option<&BTreeMap<String, String>> {
        self.meta.as_deref()
    }

    /// When the key expires; `None`: never.
    pub fn expires_at(&self) -> Option<Timestamp> {
        (self.expires_at != NEVER).then_some(Timestamp::from_micros(self.expires_at))
    }

    /// Whether the key has been revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked
    }

    /// Whether the key is past its expiry at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at <= now.micros()
    }

    /// Whether the key can be used (neither revoked nor expired).
    pub fn is_active(&self, now: Timestamp) -> bool {
        !self.is_revoked() && !self.is_expired(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_the_decision_and_the_answer_read() {
        let mut key = crate::model::test_key();
        key.scopes = vec!["videos:read".into(), "keys:write".into()];
        key.name = "Production Server ☃".into();
        key.expires_at = Some(Timestamp::from_micros(5_000));
        key.rate_limit = Some(RateLimit {
            limit: 7,
            window_secs: 60,
        });
        key.meta.insert("team".into(), "search".into());
        let cached = CachedKey::from(&key);
        assert_eq!(cached.id(), key.id);
        assert_eq!(cached.account_id(), "acme");
        assert_eq!(cached.name(), "Production Server ☃");
        assert_eq!(
            cached.scopes().collect::<Vec<_>>(),
            ["videos:read", "keys:write"]
        );
        assert!(cached.holds("keys:write") && !cached.holds("videos:write"));
        assert_eq!(cached.expires_at(), Some(Timestamp::from_micros(5_000)));
        assert!(
            cached.is_expired(Timestamp::from_micros(5_000))
                && !cached.is_expired(Timestamp::from_micros(4_999))
        );
        assert_eq!(cached.rate_limit(), key.rate_limit);
        assert_eq!(cached.meta(), Some(&key.meta));
        assert_eq!(cached.restrictions(), &Restrictions::default());
        assert!(!cached.is_revoked());

        let mut bare = crate::model::test_key();
        bare.scopes.clear();
        bare.grant_all = true;
        bare.revoked_at = Some(Timestamp::from_micros(1));
        let cached = CachedKey::from(&bare);
        assert_eq!(cached.scopes().count(), 0);
        assert!(cached.holds("videos:write") && !cached.holds("root"));
        assert!(cached.is_revoked() && cached.expires_at().is_none());
        assert_eq!((cached.rate_limit(), cached.meta()), (None, None));
    }

    #[test]
    fn is_small() {
        // The struct itself; the text is one allocation more.
        assert!(
            std::mem::size_of::<CachedKey>() <= 72,
            "{}",
            std::mem::size_of::<CachedKey>()
        );
    }
}
