//! The PostgreSQL store, for production: several replicas share it. Races between replicas
//! are settled with row locks (`FOR UPDATE` on the account row for the active-key limit, on
//! the key row for read-modify-write) and an advisory lock for first-start bootstrap.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};

use super::listener;
use super::row::{
    AccountRow, COUNT_ACTIVE, ENSURE_ACCOUNT, EventRow, INSERT_EVENT, INSERT_KEY, KeyRow,
    KeyStateRow, KeyValues, LIST_EVENTS, LIST_KEYS, SELECT_ACCOUNT, SELECT_BY_ID,
    SELECT_STATE_BY_DIGEST, UPDATE_ACCOUNT, UPDATE_KEY, bind_event, bind_key, bind_key_update,
    into_event_page, into_page,
};
use super::{Store, db_error, last_used_json, limit_reached};
use crate::audit::{Action, AuditEvent, AuditQuery};
use crate::error::{Error, Result};
use crate::key::KeyDigest;
use crate::model::{
    Account, AccountPatch, ApiKey, Change, KeyListQuery, KeyPatch, KeyState, NewKey, Page,
    StoredKey,
};
use crate::time::Timestamp;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Row lock clause: replicas race, so rows read for change are locked.
const LOCK: &str = " FOR UPDATE";

/// Advisory-lock id held while bootstrapping the first key, so replicas starting together on an
/// empty database create one root key between them.
const BOOTSTRAP_LOCK: i64 = 0x006b_6579_7761_7264;

const RECORD_LAST_USED: &str = "UPDATE api_keys \
     SET last_used_at = GREATEST(COALESCE(api_keys.last_used_at, 0), u.t) \
     FROM jsonb_to_recordset($1::jsonb) AS u(id TEXT, t BIGINT) \
     WHERE api_keys.id = u.id";

/// A PostgreSQL database shared by every replica.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Tags this store's notifications so its own feed skips them (it invalidated already).
    origin: String,
}

type Tx = PgConnection;

impl PostgresStore {
    /// Connects to the database the `postgres:` URL names.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // Short, so a database outage is answered UNAVAILABLE promptly rather than stalling calls.
            .acquire_timeout(Duration::from_secs(2))
            .connect(url)
            .await
            .map_err(db_error)?;
        Ok(PostgresStore {
            pool,
            origin: crate::model::new_id("origin"),
        })
    }
}

/// Reads a key for change inside a transaction.
async fn key_for_update(tx: &mut Tx, id: &str) -> Result<StoredKey> {
    let row = sqlx::query_as::<_, KeyRow>(&format!("{}{LOCK}", *SELECT_BY_ID))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::NotFound(format!("key {id:?}")))?;
    StoredKey::try_from(row)
}

async fn write_key(tx: &mut Tx, stored: &StoredKey, origin: &str) -> Result<()> {
    bind_key_update!(
        sqlx::query(UPDATE_KEY),
        KeyValues::of(&stored.digest, &stored.key)
    )
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    notify(tx, &Change::Key(stored.digest), origin).await
}

/// Tells every replica, when this transaction commits, to drop what it caches for `change`.
async fn notify(tx: &mut Tx, change: &Change, origin: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(listener::CHANNEL)
        .bind(listener::payload(change, origin))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

async fn insert(tx: &mut Tx, new: &NewKey, origin: &str) -> Result<StoredKey> {
    let row = bind_key!(
        sqlx::query_as::<_, KeyRow>(&INSERT_KEY),
        KeyValues::of(&new.digest, &new.key)
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    let stored = StoredKey::try_from(row)?;
    // A replica may remember this digest as unknown.
    notify(tx, &Change::Key(stored.digest), origin).await?;
    Ok(stored)
}

/// Ensures the account row exists and returns it, locked for this transaction.
async fn account_for_update(tx: &mut Tx, account_id: &str, now: Timestamp) -> Result<AccountRow> {
    sqlx::query(ENSURE_ACCOUNT)
        .bind(account_id)
        .bind(now.micros())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    sqlx::query_as::<_, AccountRow>(&format!("{SELECT_ACCOUNT}{LOCK}"))
        .bind(account_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)
}

async fn audit(tx: &mut Tx, event: &AuditEvent) -> Result<()> {
    bind_event!(sqlx::query(INSERT_EVENT), event)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

async fn count_active(tx: &mut Tx, account_id: &str, now: Timestamp) -> Result<i64> {
    sqlx::query_scalar(COUNT_ACTIVE)
        .bind(account_id)
        .bind(now.micros())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| Error::Internal(format!("PostgreSQL migration failed: {e}")))
    }

    async fn insert_key(
        &self,
        new: &NewKey,
        default_max_active: u32,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<StoredKey> {
        let account_id = &new.key.account_id;
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let account = account_for_update(&mut tx, account_id, now).await?;
        let limit = account
            .max_active_keys
            .map_or(default_max_active, |l| u32::try_from(l).unwrap_or(u32::MAX));
        if count_active(&mut tx, account_id, now).await? >= i64::from(limit) {
            return Err(limit_reached(account_id, limit));
        }
        let stored = insert(&mut tx, new, &self.origin).await?;
        audit(
            &mut tx,
            &AuditEvent::for_key(Action::KeyCreated, actor, None, &stored.key, now),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(stored)
    }

    async fn insert_first_key(&self, new: &NewKey) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(BOOTSTRAP_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let any: Option<i64> = sqlx::query_scalar("SELECT seq FROM api_keys LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        if any.is_some() {
            return Ok(false);
        }
        account_for_update(&mut tx, &new.key.account_id, new.key.created_at).await?;
        let stored = insert(&mut tx, new, &self.origin).await?;
        let event = AuditEvent::for_key(
            Action::KeyCreated,
            None,
            None,
            &stored.key,
            stored.key.created_at,
        );
        audit(&mut tx, &event).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn key_by_digest(&self, digest: &KeyDigest) -> Result<Option<KeyState>> {
        let row = sqlx::query_as::<_, KeyStateRow>(&SELECT_STATE_BY_DIGEST)
            .bind(digest.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.map(KeyState::try_from).transpose()
    }

    async fn key_by_id(&self, id: &str) -> Result<Option<StoredKey>> {
        let row = sqlx::query_as::<_, KeyRow>(&SELECT_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.map(StoredKey::try_from).transpose()
    }

    async fn list_keys(&self, q: &KeyListQuery) -> Result<Page<ApiKey>> {
        let rows = sqlx::query_as::<_, KeyRow>(&LIST_KEYS)
            .bind(&q.account_id)
            .bind(q.after.unwrap_or(0))
            .bind(q.include_revoked)
            .bind(q.unused_since.map(Timestamp::micros))
            .bind(i64::from(q.page_size) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        into_page(rows, q.page_size)
    }

    async fn update_key(
        &self,
        id: &str,
        patch: &KeyPatch,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<StoredKey> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let mut stored = key_for_update(&mut tx, id).await?;
        let before = stored.key.clone();
        if !stored.key.update(patch, now)?.is_empty() {
            stored.key.updated_at = now;
            write_key(&mut tx, &stored, &self.origin).await?;
            let event =
                AuditEvent::for_key(Action::KeyUpdated, actor, Some(&before), &stored.key, now);
            audit(&mut tx, &event).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(stored)
    }

    async fn revoke_key(&self, id: &str, now: Timestamp, actor: Option<&str>) -> Result<StoredKey> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let mut stored = key_for_update(&mut tx, id).await?;
        if !stored.key.is_revoked() {
            let before = stored.key.clone();
            stored.key.revoked_at = Some(now);
            stored.key.updated_at = now;
            write_key(&mut tx, &stored, &self.origin).await?;
            let event =
                AuditEvent::for_key(Action::KeyRevoked, actor, Some(&before), &stored.key, now);
            audit(&mut tx, &event).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(stored)
    }

    async fn rotate_key(
        &self,
        old_id: &str,
        new: &NewKey,
        old_expires_at: Option<Timestamp>,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<(StoredKey, StoredKey)> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let mut old = key_for_update(&mut tx, old_id).await?;
        let before = old.key.clone();
        old.key.retire(&new.key.id, old_expires_at, now)?;
        write_key(&mut tx, &old, &self.origin).await?;
        let new = insert(&mut tx, new, &self.origin).await?;
        audit(
            &mut tx,
            &AuditEvent::for_key(Action::KeyRotated, actor, Some(&before), &old.key, now),
        )
        .await?;
        audit(
            &mut tx,
            &AuditEvent::for_key(Action::KeyCreated, actor, None, &new.key, now),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok((old, new))
    }

    async fn get_account(&self, account_id: &str, now: Timestamp) -> Result<Option<Account>> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        let row = sqlx::query_as::<_, AccountRow>(SELECT_ACCOUNT)
            .bind(account_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let active = count_active(&mut conn, account_id, now).await?;
        Ok(Some(row.into_account(active)))
    }

    async fn update_account(
        &self,
        account_id: &str,
        patch: &AccountPatch,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<Account> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let row = account_for_update(&mut tx, account_id, now).await?;
        let active = count_active(&mut tx, account_id, now).await?;
        let before = row.into_account(active);
        let mut after = before.clone();
        if let Some(max) = patch.max_active_keys {
            after.max_active_keys = max;
        }
        if let Some(disabled) = patch.disabled {
            after.disabled = disabled;
        }
        if after != before {
            sqlx::query(UPDATE_ACCOUNT)
                .bind(account_id)
                .bind(after.max_active_keys.map(i64::from))
                .bind(after.disabled)
                .bind(now.micros())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            audit(
                &mut tx,
                &AuditEvent::for_account(actor, &before, &after, now),
            )
            .await?;
            notify(
                &mut tx,
                &Change::Account(account_id.to_owned()),
                &self.origin,
            )
            .await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(after)
    }

    async fn list_audit_events(&self, q: &AuditQuery) -> Result<Page<AuditEvent>> {
        let rows = sqlx::query_as::<_, EventRow>(LIST_EVENTS)
            .bind(&q.account_id)
            .bind(q.before)
            .bind(i64::from(q.page_size) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        into_event_page(rows, q.page_size)
    }

    async fn record_last_used(&self, uses: &[(String, Timestamp)]) -> Result<()> {
        sqlx::query(RECORD_LAST_USED)
            .bind(last_used_json(uses))
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<Change>> {
        Some(listener::spawn(self.pool.clone(), self.origin.clone()))
    }

    async fn key_digests(&self) -> Result<Vec<KeyDigest>> {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT digest FROM api_keys")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        super::digests(rows)
    }

    fn has_change_feed(&self) -> bool {
        true
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
