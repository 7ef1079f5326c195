//! Persistence: one [`Store`] trait, one implementation per backend (SQLite, PostgreSQL),
//! chosen by the database URL's scheme. Each backend has its own migrations; both speak the
//! same SQL (`$N` placeholders work in both) and map rows through the `row` module. Every mutation
//! (`actor` is the calling key) writes its audit event in its own transaction.

mod listener;
mod postgres;
mod row;
mod sql;
mod sqlite;
mod url;

pub use url::DatabaseUrl;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::audit::{Action, AuditEvent, AuditQuery};
use crate::cache::KeyState;
use crate::error::{Error, Result};
use crate::ids::{AccountId, KeyId};
use crate::key::KeyDigest;
use crate::model::{
    Account, AccountPatch, ApiKey, Change, Credits, KeyListQuery, KeyPatch, NewKey, Page, StoredKey,
};
use crate::time::Timestamp;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Most rows one many-row statement carries: 22 bound columns a key row, within SQLite's
/// 32,766 bound values and PostgreSQL's 65,535.
pub const BATCH_ROWS: usize = 1000;

/// Rows of an account's counted keys a create folds into one (PostgreSQL, where each
/// statement inserting keys adds a row).
const FOLD_COUNTS_AFTER: i64 = 32;

/// What one import transaction did with its keys.
#[derive(Debug, Default)]
pub struct ImportedBatch {
    /// The digests it stored.
    pub stored: HashSet<KeyDigest>,
    /// The digests already stored, with their keys' ids.
    pub present: HashMap<KeyDigest, KeyId>,
}

/// One transaction's primitives: the only writes a backend knows. Every rule about what may
/// be written (the active-key limit, what an update or a rotation may change, the audit event
/// in the same transaction) lives once, in [`Store`]'s provided methods, on top of these.
/// Dropped without [`commit`](Tx::commit), the transaction rolls back.
#[async_trait]
pub trait Tx: Send {
    /// Reads a key for change (locked on backends where writers race); `NotFound` if none.
    async fn key_for_update(&mut self, id: &KeyId) -> Result<StoredKey>;
    /// Writes a key's record back.
    async fn write_key(&mut self, stored: &StoredKey) -> Result<()>;
    /// Writes a key's credit balance back (a reservation: no change notification, no audit).
    async fn write_credits(&mut self, id: &KeyId, credits: &Credits) -> Result<()>;
    /// Inserts a key.
    async fn insert_key(&mut self, new: &NewKey) -> Result<StoredKey>;
    /// Inserts keys in as few statements as the database allows, their accounts created if
    /// new, and tells the other replicas of them in a few notifications for the whole batch;
    /// a key whose digest is already stored (by an earlier import, or one running beside this)
    /// is skipped, never an error. Rows are written in digest order, accounts before keys, so
    /// two transactions inserting overlapping batches wait for each other in one order and
    /// never deadlock. Answers the digests stored.
    async fn insert_new_keys(&mut self, keys: &[NewKey], now: Timestamp) -> Result<Vec<KeyDigest>>;
    /// The ids of the stored keys among `digests` (committed by others included).
    async fn key_ids_by_digest(&mut self, digests: &[KeyDigest])
    -> Result<Vec<(KeyDigest, KeyId)>>;
    /// Ensures the account row exists and reads it for change, with its active-key count.
    async fn account_for_update(
        &mut self,
        account_id: &AccountId,
        now: Timestamp,
    ) -> Result<Account>;
    /// Ensures the account row exists and locks it for change (without counting its keys);
    /// answers its own active-key limit, if it has one.
    async fn lock_account(&mut self, account_id: &AccountId, now: Timestamp)
    -> Result<Option<u32>>;
    /// Active keys of the account at `now`: a count of its keys, as slow as the account is big.
    async fn count_active(&mut self, account_id: &AccountId, now: Timestamp) -> Result<u32>;
    /// The account's keys that are neither revoked nor replaced, expired ones included: an
    /// upper bound of its active keys that the database keeps as keys are inserted (see the
    /// `account_key_counts` migration), read in constant time whatever the account's size.
    async fn counted_keys(&mut self, account_id: &AccountId) -> Result<u64>;
    /// Adds `delta` to [`counted_keys`](Tx::counted_keys): negative for keys revoked or
    /// replaced in this transaction (inserts are counted by the database itself).
    async fn add_counted_keys(&mut self, account_id: &AccountId, delta: i64) -> Result<()>;
    /// Records what one key's change from `before` to `after` does to its account's
    /// [counted keys](Tx::counted_keys).
    async fn recount(&mut self, before: &ApiKey, after: &ApiKey) -> Result<()> {
        match counted_change(before, after) {
            0 => Ok(()),
            change => self.add_counted_keys(&after.account_id, change).await,
        }
    }
    /// Keys of the account that still work at `now` (grace periods included), read for change.
    async fn live_keys_for_update(
        &mut self,
        account_id: &AccountId,
        now: Timestamp,
    ) -> Result<Vec<StoredKey>>;
    /// Revokes keys of one account at `now` in as few statements as the database allows, and
    /// tells the other replicas once, for the account: they drop its cached keys (one
    /// notification, not one a key, however many keys).
    async fn revoke_account_keys(
        &mut self,
        account_id: &AccountId,
        ids: &[KeyId],
        now: Timestamp,
    ) -> Result<()>;
    /// Writes an account's policy back.
    async fn write_account(&mut self, account: &Account, now: Timestamp) -> Result<()>;
    /// Records an audit event.
    async fn audit(&mut self, event: &AuditEvent) -> Result<()>;
    /// Records audit events in as few statements as the database allows.
    async fn audit_many(&mut self, events: &[AuditEvent]) -> Result<()>;
    /// Whether the store holds no key at all.
    async fn store_is_empty(&mut self) -> Result<bool>;
    /// Commits.
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// Everything keyward keeps. A backend supplies transactions and queries; the mutations,
/// with the rules that must hold inside their transaction, are written here once.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Applies this backend's migrations.
    async fn migrate(&self) -> Result<()>;

    /// Starts a transaction.
    async fn begin(&self) -> Result<Box<dyn Tx>>;

    /// Starts a transaction that no other first-start bootstrap runs beside (replicas starting
    /// together on an empty database make one root key between them).
    async fn begin_bootstrap(&self) -> Result<Box<dyn Tx>>;

    /// Looks a key and its account's state up by digest: the verify path's one query.
    async fn key_by_digest(&self, digest: &KeyDigest) -> Result<Option<KeyState>>;

    /// Looks a key up by its public id.
    async fn key_by_id(&self, id: &KeyId) -> Result<Option<StoredKey>>;

    /// One page of an account's keys, oldest first.
    async fn list_keys(&self, query: &KeyListQuery) -> Result<Page<ApiKey>>;

    /// Keys of an account, most used first since `query.by_usage` (hour buckets; ties oldest
    /// first), each with its count; `query.after` is the number of keys skipped.
    async fn list_keys_by_usage(&self, query: &KeyListQuery) -> Result<Page<(ApiKey, u64)>>;

    /// An account's policy and active-key count; `None` if the account has never had a key
    /// or a policy.
    async fn get_account(&self, account_id: &AccountId, now: Timestamp) -> Result<Option<Account>>;

    /// One page of an account's audit events, newest first.
    async fn list_audit_events(&self, query: &AuditQuery) -> Result<Page<AuditEvent>>;

    /// Writes coalesced last-use times in one statement; a time never moves backwards.
    async fn record_last_used(&self, uses: &[(String, Timestamp)]) -> Result<()>;

    /// Adds counted decisions to the stored usage, in minute, hour and day buckets, in one
    /// transaction (all or nothing); returns how many statements it took.
    async fn record_usage(&self, counted: &[crate::usage::Counted]) -> Result<u64>;

    /// The stored counts answering `query`.
    async fn usage(&self, query: &crate::usage::UsageQuery) -> Result<Vec<crate::usage::UsageRow>>;

    /// Deletes the rows of `granularity` whose bucket starts before `before` (seconds since
    /// the epoch); returns how many.
    async fn delete_usage_before(
        &self,
        granularity: crate::usage::Granularity,
        before: i64,
    ) -> Result<u64>;

    /// Gives back `units` of a block reserved in the period that began at `period`; nothing
    /// if the balance was set or refilled since.
    async fn return_credits(&self, id: &KeyId, units: u64, period: Timestamp) -> Result<()>;

    /// Reserves up to `want` (at least `need`) units of a key's credits at `now`, refilling
    /// first if a refill is due: the balance after, and how many were granted (0: fewer than
    /// `need` left). `None`: the key has no credits (unlimited) or does not exist.
    async fn reserve_credits(
        &self,
        id: &KeyId,
        need: u64,
        want: u64,
        now: Timestamp,
    ) -> Result<Option<(Credits, u64)>> {
        let mut tx = self.begin().await?;
        let stored = match tx.key_for_update(id).await {
            Ok(stored) => stored,
            Err(Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(credits) = stored.key.credits else {
            return Ok(None);
        };
        let mut credits = credits.at(now);
        let granted = credits.reserve(need, want);
        if granted > 0 || Some(credits) != stored.key.credits {
            tx.write_credits(id, &credits).await?;
        }
        tx.commit().await?;
        Ok(Some((credits, granted)))
    }

    /// Stores a new portal session with the hash of its link's secret.
    async fn insert_portal_session(
        &self,
        session: &crate::portal::PortalSession,
        link_hash: &[u8],
    ) -> Result<()>;

    /// Opens the portal link whose secret hashes to `link_hash`, once: binds the session's
    /// secret's hash to it and starts it. `None`: no such link, or it was opened before,
    /// expired or was revoked.
    async fn open_portal_session(
        &self,
        link_hash: &[u8],
        session_hash: &[u8],
        now: Timestamp,
    ) -> Result<Option<crate::portal::PortalSession>>;

    /// The live session whose secret hashes to `session_hash` (not revoked, not past its
    /// lifetime, seen after `idle_since`), marked as seen `now`, in one statement.
    async fn touch_portal_session(
        &self,
        session_hash: &[u8],
        now: Timestamp,
        idle_since: Timestamp,
    ) -> Result<Option<crate::portal::PortalSession>>;

    /// An account's portal sessions, newest first, at most `limit`.
    async fn list_portal_sessions(
        &self,
        account_id: &AccountId,
        limit: u32,
    ) -> Result<Vec<crate::portal::PortalSession>>;

    /// Ends a session (its link too), of `account_id` when given; `None` when there is no such
    /// session.
    async fn revoke_portal_session(
        &self,
        id: &str,
        account_id: Option<&AccountId>,
        now: Timestamp,
    ) -> Result<Option<crate::portal::PortalSession>>;

    /// Whether the database answers at all (for health).
    async fn ping(&self) -> Result<()>;

    /// The secret named `name` that every replica shares: `candidate` if this call is the
    /// first to store one, else the one stored before.
    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>>;

    /// One page of the stored key digests, in insertion order after `after` (a previous
    /// page's cursor; 0 for the first), to know which keys exist (see [`crate::known`]).
    /// Answers the page and the cursor of the next, `None` after the last.
    async fn key_digests(&self, after: i64, limit: u32) -> Result<(Vec<KeyDigest>, Option<i64>)>;

    /// A feed of changes made through other replicas sharing this store, if the backend has
    /// one (PostgreSQL: `LISTEN/NOTIFY`). It ends when the receiver is dropped.
    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<Change>> {
        None
    }

    /// Refreshes the planner's statistics of the keys table after bulk imports: until they
    /// are, PostgreSQL plans an account's key list for the rows it knew of (a bitmap scan and
    /// sort of every key of an account that grew from nothing to 100,000: 20–40 ms a page
    /// instead of 1), and its own autovacuum only looks once a minute.
    async fn refresh_statistics(&self) -> Result<()>;

    /// Whether [`subscribe`](Self::subscribe) gives a feed.
    fn has_change_feed(&self) -> bool {
        false
    }

    /// Closes the connection pool(s), waiting for connections in use to be returned.
    async fn close(&self);

    /// Inserts a key unless its account already has as many active keys as its limit (the
    /// account's own override, else `default_max_active`); then `FailedPrecondition`.
    async fn insert_key(
        &self,
        new: &NewKey,
        default_max_active: u32,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<StoredKey> {
        let mut tx = self.begin().await?;
        let account_id = &new.key.account_id;
        let limit = tx
            .lock_account(account_id, now)
            .await?
            .unwrap_or(default_max_active);
        // Keys neither revoked nor replaced bound the active ones from above; the account's
        // keys are counted only when that bound reaches the limit (expired keys among them).
        if tx.counted_keys(account_id).await? >= u64::from(limit) {
            let active = tx.count_active(account_id, now).await?;
            if active >= limit {
                return Err(limit_reached(account_id, active, limit));
            }
        }
        let stored = tx.insert_key(new).await?;
        let event = AuditEvent::for_key(Action::KeyCreated, actor, None, &stored.key, now);
        tx.audit(&event).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Inserts `new` only if the store holds no key at all (first start). Returns whether it did.
    async fn insert_first_key(&self, new: &NewKey) -> Result<bool> {
        let mut tx = self.begin_bootstrap().await?;
        if !tx.store_is_empty().await? {
            return Ok(false);
        }
        let now = new.key.created_at;
        tx.account_for_update(&new.key.account_id, now).await?;
        let stored = tx.insert_key(new).await?;
        let event = AuditEvent::for_key(Action::KeyCreated, None, None, &stored.key, now);
        tx.audit(&event).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Applies `patch` to the key `id` under [`ApiKey::update`]'s rules; `NotFound` if there
    /// is none.
    async fn update_key(
        &self,
        id: &KeyId,
        patch: &KeyPatch,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<StoredKey> {
        let mut tx = self.begin().await?;
        let mut stored = tx.key_for_update(id).await?;
        let before = stored.key.clone();
        if !stored.key.update(patch, now)?.is_empty() {
            tx.write_key(&stored).await?;
            tx.recount(&before, &stored.key).await?;
            let event =
                AuditEvent::for_key(Action::KeyUpdated, actor, Some(&before), &stored.key, now);
            tx.audit(&event).await?;
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// Stores keys issued elsewhere, in one transaction, one audit event each (with
    /// `origin: import`), and reads the ids of those already stored (by an earlier import, or
    /// one committed beside this) in the same transaction. Imports are not held to the
    /// active-key limit: refusing would break a migration; the limit then applies to the
    /// account's next creates.
    async fn insert_imported(
        &self,
        keys: &[NewKey],
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<ImportedBatch> {
        let mut tx = self.begin().await?;
        let stored: HashSet<KeyDigest> = tx.insert_new_keys(keys, now).await?.into_iter().collect();
        let others: Vec<KeyDigest> = keys
            .iter()
            .map(|k| k.digest)
            .filter(|d| !stored.contains(d))
            .collect();
        let present = if others.is_empty() {
            HashMap::new()
        } else {
            tx.key_ids_by_digest(&others).await?.into_iter().collect()
        };
        // One event per account, naming the keys stored (docs/keys.md, "Audit log").
        let mut by_account: BTreeMap<&AccountId, Vec<&KeyId>> = BTreeMap::new();
        for key in keys.iter().filter(|key| stored.contains(&key.digest)) {
            by_account
                .entry(&key.key.account_id)
                .or_default()
                .push(&key.key.id);
        }
        let events: Vec<AuditEvent> = by_account
            .into_iter()
            .map(|(account, ids)| AuditEvent::for_import(actor, account, &ids, now))
            .collect();
        tx.audit_many(&events).await?;
        tx.commit().await?;
        Ok(ImportedBatch { stored, present })
    }

    /// Revokes the key `id` (a no-op on a revoked key); `NotFound` if there is none.
    async fn revoke_key(
        &self,
        id: &KeyId,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<StoredKey> {
        Ok(self.revoke_key_because(id, None, now, actor).await?.0)
    }

    /// Revokes the key `id`, recording `reason` (e.g. where it leaked) in its audit event.
    /// Returns the key and whether this call revoked it (false: it was revoked already).
    async fn revoke_key_because(
        &self,
        id: &KeyId,
        reason: Option<&str>,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<(StoredKey, bool)> {
        let mut tx = self.begin().await?;
        let mut stored = tx.key_for_update(id).await?;
        let revoking = !stored.key.is_revoked();
        if revoking {
            let before = stored.key.clone();
            stored.key.revoked_at = Some(now);
            stored.key.updated_at = now;
            tx.write_key(&stored).await?;
            tx.recount(&before, &stored.key).await?;
            let mut event =
                AuditEvent::for_key(Action::KeyRevoked, actor, Some(&before), &stored.key, now);
            if let Some(reason) = reason {
                event.changes.push(crate::audit::FieldChange {
                    field: "revocation_reason".into(),
                    old_value: String::new(),
                    new_value: reason.to_owned(),
                });
            }
            tx.audit(&event).await?;
        }
        tx.commit().await?;
        Ok((stored, revoking))
    }

    /// Revokes every key of `account_id` that still works at `now` (of `only` this
    /// environment, when given), in one transaction, one audit event per key. Returns the keys
    /// revoked.
    async fn revoke_account_keys(
        &self,
        account_id: &AccountId,
        only: Option<crate::key::Environment>,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<Vec<StoredKey>> {
        let mut tx = self.begin().await?;
        let mut revoked = Vec::new();
        let mut events = Vec::new();
        let mut counted = 0;
        for mut stored in tx.live_keys_for_update(account_id, now).await? {
            if only.is_some_and(|env| stored.key.environment != env) {
                continue;
            }
            let before = stored.key.clone();
            stored.key.revoked_at = Some(now);
            stored.key.updated_at = now;
            counted += counted_change(&before, &stored.key);
            events.push(AuditEvent::for_key(
                Action::KeyRevoked,
                actor,
                Some(&before),
                &stored.key,
                now,
            ));
            revoked.push(stored);
        }
        let ids: Vec<KeyId> = revoked.iter().map(|s| s.key.id.clone()).collect();
        tx.revoke_account_keys(account_id, &ids, now).await?;
        if counted != 0 {
            tx.add_counted_keys(account_id, counted).await?;
        }
        tx.audit_many(&events).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    /// Replaces the key `old_id` by `new` in one transaction, under [`ApiKey::retire`]'s rules.
    /// Returns (old, new).
    async fn rotate_key(
        &self,
        old_id: &KeyId,
        new: &NewKey,
        old_expires_at: Option<Timestamp>,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<(StoredKey, StoredKey)> {
        let mut tx = self.begin().await?;
        let mut old = tx.key_for_update(old_id).await?;
        let before = old.key.clone();
        old.key.retire(&new.key.id, old_expires_at, now)?;
        // The credit balance moves to the new key, read under the lock: two keys never spend
        // one balance twice (the old one, in its grace period, has none left).
        let mut new = new.clone();
        new.key.credits = old.key.credits;
        if let Some(credits) = &mut old.key.credits {
            credits.remaining = 0;
        }
        tx.write_key(&old).await?;
        // The new key is counted as it is inserted; the old one, replaced, no longer is.
        tx.recount(&before, &old.key).await?;
        let new = tx.insert_key(&new).await?;
        let rotated = AuditEvent::for_key(Action::KeyRotated, actor, Some(&before), &old.key, now);
        tx.audit(&rotated).await?;
        let created = AuditEvent::for_key(Action::KeyCreated, actor, None, &new.key, now);
        tx.audit(&created).await?;
        tx.commit().await?;
        Ok((old, new))
    }

    /// Changes an account's policy, creating the account if needed.
    async fn update_account(
        &self,
        account_id: &AccountId,
        patch: &AccountPatch,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<Account> {
        let mut tx = self.begin().await?;
        let before = tx.account_for_update(account_id, now).await?;
        let mut after = before.clone();
        if let Some(max) = patch.max_active_keys {
            after.max_active_keys = max;
        }
        if let Some(disabled) = patch.disabled {
            after.disabled = disabled;
        }
        if let Some(rate_limit) = patch.rate_limit {
            after.rate_limit = rate_limit;
        }
        if after != before {
            tx.write_account(&after, now).await?;
            tx.audit(&AuditEvent::for_account(actor, &before, &after, now))
                .await?;
        }
        tx.commit().await?;
        Ok(after)
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
        _ => Error::internal_caused("database", e),
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
                .ok_or_else(|| Error::internal("a stored digest is not 32 bytes"))
        })
        .collect()
}

/// An account at its active-key limit, as a domain error.
fn limit_reached(account_id: &AccountId, active: u32, limit: u32) -> Error {
    Error::LimitReached {
        subject: format!("accounts/{account_id}"),
        message: format!(
            "account \"{account_id}\" has {active} active keys and may have at most {limit}; revoke one or raise max_active_keys"
        ),
    }
}

/// What a change from `before` to `after` adds to the account's
/// [counted keys](Tx::counted_keys).
fn counted_change(before: &ApiKey, after: &ApiKey) -> i64 {
    i64::from(after.is_counted()) - i64::from(before.is_counted())
}
