//! The SQLite store, the zero-setup default. All writes go through a pool of one connection,
//! so transactions never race (the active-key limit needs no lock); reads use their own pool
//! and, in WAL mode, never wait for writes.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::row::{
    COUNT_ACTIVE, ENSURE_ACCOUNT, INSERT_KEY, KeyRow, KeyValues, LIST_KEYS, UPDATE_KEY, bind_key,
    bind_key_update, into_page, select_key_by,
};
use super::{Store, db_error, limit_reached};
use crate::error::{Error, Result};
use crate::key::KeyDigest;
use crate::model::{ApiKey, KeyListQuery, KeyPatch, NewKey, Page, StoredKey};
use crate::time::Timestamp;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// A SQLite database file (or in-memory database).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
}

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

    /// Reads, changes and writes one key in a single write transaction.
    async fn modify_key(
        &self,
        id: &str,
        now: Timestamp,
        change: impl FnOnce(&mut StoredKey) -> Result<bool> + Send,
    ) -> Result<StoredKey> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let row = sqlx::query_as::<_, KeyRow>(&select_key_by("id"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::NotFound(format!("key {id:?}")))?;
        let mut stored = StoredKey::try_from(row)?;
        if change(&mut stored)? {
            stored.key.updated_at = now;
            bind_key_update!(
                sqlx::query(UPDATE_KEY),
                KeyValues::of(&stored.digest, &stored.key)
            )
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(stored)
    }
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
    ) -> Result<StoredKey> {
        let account_id = &new.key.account_id;
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        sqlx::query(ENSURE_ACCOUNT)
            .bind(account_id)
            .bind(now.micros())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let limit: Option<i64> =
            sqlx::query_scalar("SELECT max_active_keys FROM accounts WHERE account_id = $1")
                .bind(account_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
        let limit = limit.map_or(default_max_active, |l| u32::try_from(l).unwrap_or(u32::MAX));
        let active: i64 = sqlx::query_scalar(COUNT_ACTIVE)
            .bind(account_id)
            .bind(now.micros())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        if active >= i64::from(limit) {
            return Err(limit_reached(account_id, limit));
        }
        let row = bind_key!(
            sqlx::query_as::<_, KeyRow>(INSERT_KEY),
            KeyValues::of(&new.digest, &new.key)
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        StoredKey::try_from(row)
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
        sqlx::query(ENSURE_ACCOUNT)
            .bind(&new.key.account_id)
            .bind(new.key.created_at.micros())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        bind_key!(
            sqlx::query(INSERT_KEY),
            KeyValues::of(&new.digest, &new.key)
        )
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn key_by_digest(&self, digest: &KeyDigest) -> Result<Option<StoredKey>> {
        let row = sqlx::query_as::<_, KeyRow>(&select_key_by("digest"))
            .bind(digest.as_bytes().as_slice())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error)?;
        row.map(StoredKey::try_from).transpose()
    }

    async fn key_by_id(&self, id: &str) -> Result<Option<StoredKey>> {
        let row = sqlx::query_as::<_, KeyRow>(&select_key_by("id"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error)?;
        row.map(StoredKey::try_from).transpose()
    }

    async fn list_keys(&self, q: &KeyListQuery) -> Result<Page<ApiKey>> {
        let rows = sqlx::query_as::<_, KeyRow>(LIST_KEYS)
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

    async fn update_key(&self, id: &str, patch: &KeyPatch, now: Timestamp) -> Result<StoredKey> {
        self.modify_key(id, now, |stored| {
            if stored.key.is_revoked() {
                return Err(Error::FailedPrecondition(format!("key {id:?} is revoked")));
            }
            Ok(!patch.apply(&mut stored.key).is_empty())
        })
        .await
    }

    async fn revoke_key(&self, id: &str, now: Timestamp) -> Result<StoredKey> {
        self.modify_key(id, now, |stored| {
            if stored.key.is_revoked() {
                return Ok(false);
            }
            stored.key.revoked_at = Some(now);
            Ok(true)
        })
        .await
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}
