//! The PostgreSQL store, for production: several replicas share it. Races between replicas
//! are settled with row locks (`FOR UPDATE` on the account row for the active-key limit, on
//! the key row for read-modify-write) and an advisory lock for first-start bootstrap.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::row::{
    COUNT_ACTIVE, ENSURE_ACCOUNT, INSERT_KEY, KeyRow, KeyValues, LIST_KEYS, UPDATE_KEY, bind_key,
    bind_key_update, into_page, select_key_by,
};
use super::{Store, db_error, limit_reached};
use crate::error::{Error, Result};
use crate::key::KeyDigest;
use crate::model::{ApiKey, KeyListQuery, KeyPatch, NewKey, Page, StoredKey};
use crate::time::Timestamp;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Advisory-lock id held while bootstrapping the first key, so replicas starting together on an
/// empty database create one root key between them.
const BOOTSTRAP_LOCK: i64 = 0x006b_6579_7761_7264;

/// A PostgreSQL database shared by every replica.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database the `postgres:` URL names.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(db_error)?;
        Ok(PostgresStore { pool })
    }

    /// Reads, changes and writes one key in a single write transaction.
    async fn modify_key(
        &self,
        id: &str,
        now: Timestamp,
        change: impl FnOnce(&mut StoredKey) -> Result<bool> + Send,
    ) -> Result<StoredKey> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let row = sqlx::query_as::<_, KeyRow>(&format!("{} FOR UPDATE", select_key_by("id")))
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
    ) -> Result<StoredKey> {
        let account_id = &new.key.account_id;
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query(ENSURE_ACCOUNT)
            .bind(account_id)
            .bind(now.micros())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let limit: Option<i64> = sqlx::query_scalar(
            "SELECT max_active_keys FROM accounts WHERE account_id = $1 FOR UPDATE",
        )
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
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.map(StoredKey::try_from).transpose()
    }

    async fn key_by_id(&self, id: &str) -> Result<Option<StoredKey>> {
        let row = sqlx::query_as::<_, KeyRow>(&select_key_by("id"))
            .bind(id)
            .fetch_optional(&self.pool)
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
            .fetch_all(&self.pool)
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
        self.pool.close().await;
    }
}
