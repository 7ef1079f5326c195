//! The SQLite store, the zero-setup default. All writes go through a pool of one connection,
//! so transactions never race (the active-key limit needs no lock); reads use their own pool
//! and, in WAL mode, never wait for writes.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqliteConnection, SqlitePool};

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
    Account, AccountPatch, ApiKey, KeyListQuery, KeyPatch, KeyState, NewKey, Page, StoredKey,
};
use crate::time::Timestamp;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Row lock clause: none needed, writes are serialised by the single writer connection.
const LOCK: &str = "";

const RECORD_LAST_USED: &str = "UPDATE api_keys \
     SET last_used_at = max(coalesce(api_keys.last_used_at, 0), u.t) \
     FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.t') AS t \
           FROM json_each($1)) AS u \
     WHERE api_keys.id = u.id";

/// A SQLite database file (or in-memory database).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
}

type Tx = SqliteConnection;

impl SqliteStore {
    /// Opens (creating if missing) the database the `sqlite:` URL names.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::FailedPrecondition(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(db_error)?;
        // An in-memory database exists once per connection: everything must share the writer.
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options.read_only(true))
                .await
                .map_err(db_error)?
        };
        Ok(SqliteStore { reader, writer })
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

async fn write_key(tx: &mut Tx, stored: &StoredKey) -> Result<()> {
    bind_key_update!(
        sqlx::query(UPDATE_KEY),
        KeyValues::of(&stored.digest, &stored.key)
    )
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

async fn insert(tx: &mut Tx, new: &NewKey) -> Result<StoredKey> {
    let row = bind_key!(
        sqlx::query_as::<_, KeyRow>(&INSERT_KEY),
        KeyValues::of(&new.digest, &new.key)
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    StoredKey::try_from(row)
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
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.writer)
            .await
            .map_err(|e| Error::Internal(format!("SQLite migration failed: {e}")))
    }

    async fn insert_key(
        &self,
        new: &NewKey,
        default_max_active: u32,
        now: Timestamp,
        actor: Option<&str>,
    ) -> Result<StoredKey> {
        let account_id = &new.key.account_id;
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let account = account_for_update(&mut tx, account_id, now).await?;
        let limit = account
            .max_active_keys
            .map_or(default_max_active, |l| u32::try_from(l).unwrap_or(u32::MAX));
        if count_active(&mut tx, account_id, now).await? >= i64::from(limit) {
            return Err(limit_reached(account_id, limit));
        }
        let stored = insert(&mut tx, new).await?;
        audit(
            &mut tx,
            &AuditEvent::for_key(Action::KeyCreated, actor, None, &stored.key, now),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(stored)
    }

    async fn insert_first_key(&self, new: &NewKey) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let any: Option<i64> = sqlx::query_scalar("SELECT seq FROM api_keys LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        if any.is_some() {
            return Ok(false);
        }
        account_for_update(&mut tx, &new.key.account_id, new.key.created_at).await?;
        let stored = insert(&mut tx, new).await?;
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
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error)?;
        row.map(KeyState::try_from).transpose()
    }

    async fn key_by_id(&self, id: &str) -> Result<Option<StoredKey>> {
        let row = sqlx::query_as::<_, KeyRow>(&SELECT_BY_ID)
            .bind(id)
            .fetch_optional(&self.reader)
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
            .fetch_all(&self.reader)
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
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let mut stored = key_for_update(&mut tx, id).await?;
        let before = stored.key.clone();
        if !stored.key.update(patch, now)?.is_empty() {
            stored.key.updated_at = now;
            write_key(&mut tx, &stored).await?;
            let event =
                AuditEvent::for_key(Action::KeyUpdated, actor, Some(&before), &stored.key, now);
            audit(&mut tx, &event).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(stored)
    }

    async fn revoke_key(&self, id: &str, now: Timestamp, actor: Option<&str>) -> Result<StoredKey> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let mut stored = key_for_update(&mut tx, id).await?;
        if !stored.key.is_revoked() {
            let before = stored.key.clone();
            stored.key.revoked_at = Some(now);
            stored.key.updated_at = now;
            write_key(&mut tx, &stored).await?;
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
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let mut old = key_for_update(&mut tx, old_id).await?;
        let before = old.key.clone();
        old.key.retire(&new.key.id, old_expires_at, now)?;
        write_key(&mut tx, &old).await?;
        let new = insert(&mut tx, new).await?;
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
        let mut conn = self.reader.acquire().await.map_err(db_error)?;
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
        let mut tx = self.writer.begin().await.map_err(db_error)?;
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
        }
        tx.commit().await.map_err(db_error)?;
        Ok(after)
    }

    async fn list_audit_events(&self, q: &AuditQuery) -> Result<Page<AuditEvent>> {
        let rows = sqlx::query_as::<_, EventRow>(LIST_EVENTS)
            .bind(&q.account_id)
            .bind(q.before)
            .bind(i64::from(q.page_size) + 1)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error)?;
        into_event_page(rows, q.page_size)
    }

    async fn record_last_used(&self, uses: &[(String, Timestamp)]) -> Result<()> {
        sqlx::query(RECORD_LAST_USED)
            .bind(last_used_json(uses))
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn key_digests(&self) -> Result<Vec<KeyDigest>> {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT digest FROM api_keys")
            .fetch_all(&self.reader)
            .await
            .map_err(db_error)?;
        super::digests(rows)
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}
