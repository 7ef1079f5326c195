//! Persistence: one [`Store`] trait, one implementation per backend (SQLite, PostgreSQL),
//! chosen by the database URL's scheme. Each backend has its own migrations; both speak the
//! same SQL (`$N` placeholders work in both) and map rows through [`row`]. Every mutation
//! (`actor` is the calling key) writes its audit event in its own transaction.

mod listener;
mod postgres;
mod row;
mod sqlite;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::audit::{AuditEvent, AuditQuery};
use crate::error::{Error, Result};
use crate::key::KeyDigest;
use crate::model::{
    Account, AccountPatch, ApiKey, Change, KeyListQuery, KeyPatch, KeyState, NewKey, Page,
    StoredKey,
};
use crate::time::Timestamp;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Everything keyward keeps. Mutations that must hold together (the active-key limit, a
/// read-modify-write of a key) run in one transaction inside the implementation.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Applies this backend's migrations.
    async fn migrate(&self) -> Result<()>;

    /// Inserts a key unless its account already has `max_active` active keys (the account's
    /// own override wins over `default_max_active`); then `FailedPrecondition`.
    async fn insert_key(
        &self,
        new: &NewKey,
        default_max_active: u32,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<StoredKey>;

    /// Inserts `new` only if the store holds no key at all (first start). Returns whether it did.
    async fn insert_first_key(&self, new: &NewKey) -> Result<bool>;

    /// Looks a key and its account's state up by digest: the verify path's one query.
    async fn key_by_digest(&self, digest: &KeyDigest) -> Result<Option<KeyState>>;

    /// Looks a key up by its public id.
    async fn key_by_id(&self, id: &str) -> Result<Option<StoredKey>>;

    /// One page of an account's keys, oldest first.
    async fn list_keys(&self, query: &KeyListQuery) -> Result<Page<ApiKey>>;

    /// Applies `patch` to the key `id`; `NotFound` if there is none, `FailedPrecondition` if it
    /// is revoked.
    async fn update_key(
        &self,
        id: &str,
        patch: &KeyPatch,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<StoredKey>;

    /// Revokes the key `id` (a no-op on a revoked key); `NotFound` if there is none.
    async fn revoke_key(&self, id: &str, now: Timestamp, actor: Option<&str>) -> Result<StoredKey>;

    /// Replaces the key `old_id` by `new` in one transaction: the old key is revoked at `now`
    /// when `old_expires_at` is `None`, else it expires then (or earlier, if it already did),
    /// and is marked replaced. `FailedPrecondition` if the old key is revoked, expired or
    /// already replaced. Returns (old, new).
    async fn rotate_key(
        &self,
        old_id: &str,
        new: &NewKey,
        old_expires_at: Option<Timestamp>,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<(StoredKey, StoredKey)>;

    /// An account's policy and active-key count; `None` if the account has never had a key
    /// or a policy.
    async fn get_account(&self, account_id: &str, now: Timestamp) -> Result<Option<Account>>;

    /// Changes an account's policy, creating the account if needed.
    async fn update_account(
        &self,
        account_id: &str,
        patch: &AccountPatch,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<Account>;

    /// One page of an account's audit events, newest first.
    async fn list_audit_events(&self, query: &AuditQuery) -> Result<Page<AuditEvent>>;

    /// Writes coalesced last-use times in one statement; a time never moves backwards.
    async fn record_last_used(&self, uses: &[(String, Timestamp)]) -> Result<()>;

    /// Every key digest in the store, to know which keys exist (see [`crate::known`]).
    async fn key_digests(&self) -> Result<Vec<KeyDigest>>;

    /// Whether [`subscribe`](Self::subscribe) gives a feed.
    fn has_change_feed(&self) -> bool {
        false
    }

    /// A feed of changes made through other replicas sharing this store, if the backend has
    /// one (PostgreSQL: `LISTEN/NOTIFY`). It ends when the receiver is dropped.
    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<Change>> {
        None
    }

    /// Closes the connection pool(s), waiting for connections in use to be returned.
    async fn close(&self);
}

/// A database URL. Prints without its password so it can be logged and shown in errors.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    /// The full URL, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return self.0.clone();
        };
        let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
                None => self.0.clone(),
            },
            None => self.0.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Opens the store the URL names: `sqlite:` (file created if missing) or `postgres:`.
pub async fn connect(url: &DatabaseUrl) -> Result<Arc<dyn Store>> {
    let raw = url.expose();
    if raw.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(raw).await?))
    } else if raw.starts_with("postgres:") || raw.starts_with("postgresql:") {
        Ok(Arc::new(PostgresStore::connect(raw).await?))
    } else {
        Err(Error::FailedPrecondition(format!(
            "database URL {url} must start with sqlite:// or postgres://"
        )))
    }
}

/// Maps a sqlx error into the domain, in one place: unreachable database → `Unavailable`,
/// unique violation → `AlreadyExists`, anything else → `Internal` (logged, never shown).
pub(crate) fn db_error(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::RowNotFound => Error::NotFound("row".into()),
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Error::AlreadyExists(d.constraint().unwrap_or("unique value").to_owned())
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => {
            tracing::warn!(error = %e, "database unavailable");
            Error::Unavailable("the database is unavailable".into())
        }
        _ => Error::Internal(format!("database: {e}")),
    }
}

/// The JSON a last-use batch is sent to the database as: `[{"id": …, "t": …}, …]`.
pub(crate) fn last_used_json(uses: &[(String, Timestamp)]) -> String {
    let rows: Vec<serde_json::Value> = uses
        .iter()
        .map(|(id, t)| serde_json::json!({ "id": id, "t": t.micros() }))
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// Digest column values as digests; a malformed one is an internal error.
pub(crate) fn digests(rows: Vec<Vec<u8>>) -> Result<Vec<KeyDigest>> {
    rows.iter()
        .map(|bytes| {
            KeyDigest::from_slice(bytes)
                .ok_or_else(|| Error::Internal("a stored digest is not 32 bytes".into()))
        })
        .collect()
}

/// The number of active keys that stops another create, as a domain error.
pub(crate) fn limit_reached(account_id: &str, limit: u32) -> Error {
    Error::FailedPrecondition(format!(
        "account {account_id:?} already has {limit} active keys, its maximum; revoke one or raise max_active_keys"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_print_without_password() {
        let url = DatabaseUrl::new("postgres://app:s3cret@db:5432/keyward?sslmode=require");
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db:5432/keyward?sslmode=require"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        let plain = DatabaseUrl::new("sqlite://keyward.db");
        assert_eq!(plain.to_string(), "sqlite://keyward.db");
    }
}
