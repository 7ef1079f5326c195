//! The SQLite store, the zero-setup default. All writes go through a pool of one connection,
//! so transactions never race (the active-key limit needs no lock); reads use their own pool
//! and, in WAL mode, never wait for writes. The SQL itself is shared with PostgreSQL
//! ([`super::sql`]); this file holds only what SQLite does its own way.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::db_error;
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
        // The writer keeps up to 64 MiB of pages (SQLite's default is 2 MiB): bulk imports
        // touch every index at random places and spent much of their time re-reading evicted
        // pages (docs/benchmarks.md).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone().pragma("cache_size", "-65536"))
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

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// Nothing to do: the single writer connection already runs one transaction at a time.
    async fn serialize_bootstrap(&self, _tx: &mut Transaction<'static, Sqlite>) -> Result<()> {
        Ok(())
    }

    /// Nothing to tell: one SQLite file has one server, which invalidated at once.
    async fn changed(
        &self,
        _tx: &mut Transaction<'static, Sqlite>,
        _change: &Change,
    ) -> Result<()> {
        Ok(())
    }

    async fn keys_changed(
        &self,
        _tx: &mut Transaction<'static, Sqlite>,
        _digests: &[KeyDigest],
    ) -> Result<()> {
        Ok(())
    }

    fn change_feed(&self) -> Option<tokio::sync::mpsc::Receiver<Change>> {
        None
    }

    async fn close_pools(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// Adds to an account's counted keys, one row an account (migration `0009_key_counts`).
const ADD_COUNTED_KEYS: &str = "INSERT INTO account_key_counts (account_id, live) VALUES ($1, $2) \
     ON CONFLICT (account_id) DO UPDATE SET live = live + excluded.live";

/// Writes a batch of last-use times (JSON `[{"id", "t"}]`); a time never moves backwards.
const RECORD_LAST_USED: &str = "UPDATE api_keys \
         SET last_used_at = max(coalesce(api_keys.last_used_at, 0), u.t) \
         FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.t') AS t \
               FROM json_each($1)) AS u \
         WHERE api_keys.id = u.id";

sql_backend!(
    store: SqliteStore,
    db: Sqlite,
    tx: SqliteTx,
    migrations: "./migrations/sqlite",
    lock: "", // None needed: writes are serialised by the single writer connection.
    change_feed: false,
    record_last_used: RECORD_LAST_USED,
    add_counted_keys: ADD_COUNTED_KEYS,
    // SQLite's planner takes the account index for an account's keys without statistics.
    refresh_statistics: None,
);
