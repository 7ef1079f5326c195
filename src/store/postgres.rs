//! The PostgreSQL store, for production: several replicas share it. Races between replicas
//! are settled with row locks (`FOR UPDATE` on the account row for the active-key limit, on
//! the key row for read-modify-write) and an advisory lock for first-start bootstrap; every
//! change is announced with `NOTIFY` in its transaction. The SQL itself is shared with SQLite
//! ([`super::sql`]); this file holds only what PostgreSQL does its own way.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

use super::db_error;
use super::listener;
use super::row::{
    AccountRow, COUNT_ACTIVE, COUNTED_KEYS, ENSURE_ACCOUNT, EventRow, INSERT_EVENT, INSERT_EVENTS,
    INSERT_KEY, INSERT_KEYS, KeyRow, KeyStateRow, KeyValues, LIST_EVENTS, LIST_KEYS,
    RETURN_CREDITS, SELECT_ACCOUNT, SELECT_BY_ID, SELECT_LIVE_BY_ACCOUNT, SELECT_STATE_BY_DIGEST,
    UPDATE_ACCOUNT, UPDATE_KEY, WRITE_CREDITS, bind_event, bind_key, bind_key_update,
    into_event_page, into_page, push_event, push_key,
};
use super::sql::sql_backend;
use crate::audit::{AuditEvent, AuditQuery};
use crate::cache::KeyState;
use crate::error::{Error, Result};
use crate::key::KeyDigest;
use crate::model::{Account, ApiKey, Change, Credits, KeyListQuery, NewKey, Page, StoredKey};
use crate::time::Timestamp;

/// Advisory-lock id held while bootstrapping the first key, so replicas starting together on an
/// empty database create one root key between them.
const BOOTSTRAP_LOCK: i64 = 0x006b_6579_7761_7264;

/// A PostgreSQL database shared by every replica.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Tags this store's notifications so its own feed skips them (it invalidated already).
    origin: String,
}

impl PostgresStore {
    /// Connects to the database the `postgres:` URL names.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // Short, so a database outage is answered UNAVAILABLE promptly rather than stalling calls.
            .acquire_timeout(Duration::from_secs(2))
            .connect(url)
            .await
            .map_err(|e| match &e {
                // At start the operator needs the reason: a refused certificate or TLS setup
                // (sqlx never puts the password in it).
                sqlx::Error::Tls(_) => tls_error(&e),
                sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
                    tls_error(&e)
                }
                _ => db_error(e),
            })?;
        Ok(PostgresStore {
            pool,
            origin: crate::model::new_id("origin"),
        })
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    async fn serialize_bootstrap(&self, tx: &mut Transaction<'static, Postgres>) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(BOOTSTRAP_LOCK)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Tells every replica, when this transaction commits, to drop what it caches for `change`.
    async fn changed(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        change: &Change,
    ) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(listener::CHANNEL)
            .bind(listener::payload(change, &self.origin))
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Tells the other replicas that these keys were created: one statement, one notification
    /// for every [`listener::SHORTS_PER_NOTIFICATION`] keys.
    async fn keys_changed(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        digests: &[KeyDigest],
    ) -> Result<()> {
        if digests.is_empty() {
            return Ok(());
        }
        let payloads: Vec<String> = digests
            .chunks(listener::SHORTS_PER_NOTIFICATION)
            .map(|chunk| {
                let shorts = chunk.iter().map(crate::known::short).collect();
                listener::payload(&Change::KeysAdded(shorts), &self.origin)
            })
            .collect();
        sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
            .bind(listener::CHANNEL)
            .bind(payloads)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    fn change_feed(&self) -> Option<tokio::sync::mpsc::Receiver<Change>> {
        Some(listener::spawn(self.pool.clone(), self.origin.clone()))
    }

    async fn close_pools(&self) {
        self.pool.close().await;
    }
}

/// Adds to an account's counted keys: a row of its own, so writers never wait on one
/// another (migration `0010_key_counts`).
const ADD_COUNTED_KEYS: &str = "INSERT INTO account_key_counts (account_id, live) VALUES ($1, $2)";

/// Writes a batch of last-use times (JSON `[{"id", "t"}]`); a time never moves backwards.
const RECORD_LAST_USED: &str = "UPDATE api_keys \
         SET last_used_at = GREATEST(COALESCE(api_keys.last_used_at, 0), u.t) \
         FROM jsonb_to_recordset($1::jsonb) AS u(id TEXT, t BIGINT) \
         WHERE api_keys.id = u.id";

sql_backend!(
    store: PostgresStore,
    db: Postgres,
    tx: PostgresTx,
    migrations: "./migrations/postgres",
    lock: " FOR UPDATE", // Replicas race, so rows read for change are locked.
    change_feed: true,
    record_last_used: RECORD_LAST_USED,
    add_counted_keys: ADD_COUNTED_KEYS,
    // Fresh statistics after bulk imports (see `Store::refresh_statistics`).
    refresh_statistics: Some("ANALYZE api_keys"),
);

/// A connection refused over TLS, with its reason.
fn tls_error(e: &sqlx::Error) -> Error {
    tracing::warn!(error = %e, "database TLS failed");
    Error::Unavailable(format!(
        "the database is unavailable: TLS: {e} (check sslmode and sslrootcert)"
    ))
}
