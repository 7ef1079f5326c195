//! The SQL both backends speak, written once: [`sql_backend!`] expands to a backend's
//! transaction type (the [`Tx`](super::Tx) primitives) and its read queries, over the sqlx
//! database type it is given. What differs between backends stays in their own files: pools,
//! the row-lock clause, the change notification, the last-use and counted-keys statements and
//! migrations.

/// Expands, for backend `$store` on sqlx database `$db` with its dialect (migrations folder,
/// row-lock clause, whether it has a change feed, its last-use and counted-keys statements),
/// to:
/// - `$tx`, a transaction implementing [`super::Tx`] (rows read for change are locked with
///   `lock`; each change is passed to `$store::changed` inside the transaction);
/// - `impl Store for $store`: the read queries on `self.reader()`, transactions on
///   `self.writer()`, and the backend's hooks (`serialize_bootstrap`, `changed`,
///   `change_feed`, `close_pools`).
macro_rules! sql_backend {
    (
        store: $store:ty,
        db: $db:ty,
        tx: $tx:ident,
        migrations: $migrations:literal,
        lock: $lock:expr,
        change_feed: $feed:expr,
        record_last_used: $record_last_used:expr,
        add_counted_keys: $add_counted_keys:expr,
        refresh_statistics: $refresh_statistics:expr $(,)?
    ) => {
        /// A transaction on this backend; dropped without commit, it rolls back.
        pub(crate) struct $tx {
            tx: sqlx::Transaction<'static, $db>,
            store: $store,
        }

        impl $tx {
            /// Ensures the account row exists and reads it, locked for change.
            async fn account_row_for_update(
                &mut self,
                account_id: &crate::ids::AccountId,
                now: Timestamp,
            ) -> Result<AccountRow> {
                sqlx::query(ENSURE_ACCOUNT)
                    .bind(account_id)
                    .bind(now.micros())
                    .execute(&mut *self.tx)
                    .await
                    .map_err(db_error)?;
                let sql = format!("{SELECT_ACCOUNT}{}", $lock);
                sqlx::query_as::<_, AccountRow>(&sql)
                    .bind(account_id)
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err(db_error)
            }
        }

        #[async_trait::async_trait]
        impl super::Tx for $tx {
            async fn key_for_update(&mut self, id: &crate::ids::KeyId) -> Result<StoredKey> {
                let sql = format!("{}{}", *SELECT_BY_ID, $lock);
                let row = sqlx::query_as::<_, KeyRow>(&sql)
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(db_error)?
                    .ok_or_else(|| Error::NotFound(format!("key {id}")))?;
                StoredKey::try_from(row)
            }

            async fn write_credits(
                &mut self,
                id: &crate::ids::KeyId,
                credits: &Credits,
            ) -> Result<()> {
                sqlx::query(WRITE_CREDITS)
                    .bind(id)
                    .bind(i64::try_from(credits.remaining).unwrap_or(i64::MAX))
                    .bind(credits.refilled_at.micros())
                    .execute(&mut *self.tx)
                    .await
                    .map_err(db_error)?;
                Ok(())
            }

            async fn write_key(&mut self, stored: &StoredKey) -> Result<()> {
                bind_key_update!(
                    sqlx::query(UPDATE_KEY),
                    KeyValues::of(&stored.digest, &stored.key)
                )
                .execute(&mut *self.tx)
                .await
                .map_err(db_error)?;
                self.store
                    .changed(&mut self.tx, &Change::Key(stored.digest))
                    .await
            }

            async fn revoke_account_keys(
                &mut self,
                account_id: &crate::ids::AccountId,
                ids: &[crate::ids::KeyId],
                now: Timestamp,
            ) -> Result<()> {
                if ids.is_empty() {
                    return Ok(());
                }
                for chunk in ids.chunks(super::BATCH_ROWS) {
                    let mut query = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE api_keys SET revoked_at = ",
                    );
                    query.push_bind(now.micros());
                    query.push(", updated_at = ");
                    query.push_bind(now.micros());
                    // By id alone, so the id index is the only plan: with the account in the
                    // condition, PostgreSQL's generic plan walked the account's index and
                    // filtered every row by the 1,000 ids (seconds a statement for an account
                    // of 100,000 keys). The account is checked on the rows written instead.
                    query.push(" WHERE id IN (");
                    let mut list = query.separated(", ");
                    for id in chunk {
                        list.push_bind(id.as_str());
                    }
                    query.push(") RETURNING account_id");
                    let accounts: Vec<String> = query
                        .build_query_scalar()
                        .fetch_all(&mut *self.tx)
                        .await
                        .map_err(db_error)?;
                    if accounts.iter().any(|a| a != account_id.as_str()) {
                        // Rolled back when the transaction is dropped.
                        return Err(Error::internal(
                            "revoke_account_keys was given a key of another account",
                        ));
                    }
                }
                self.store
                    .changed(&mut self.tx, &Change::Account(account_id.clone()))
                    .await
            }

            async fn insert_key(&mut self, new: &NewKey) -> Result<StoredKey> {
                let row = bind_key!(
                    sqlx::query_as::<_, KeyRow>(&INSERT_KEY),
                    KeyValues::of(&new.digest, &new.key)
                )
                .fetch_one(&mut *self.tx)
                .await
                .map_err(db_error)?;
                let stored = StoredKey::try_from(row)?;
                // A replica may remember this digest as unknown.
                self.store
                    .changed(&mut self.tx, &Change::Key(stored.digest))
                    .await?;
                Ok(stored)
            }

            async fn insert_new_keys(
                &mut self,
                keys: &[NewKey],
                now: Timestamp,
            ) -> Result<Vec<KeyDigest>> {
                let mut accounts: Vec<&crate::ids::AccountId> =
                    keys.iter().map(|k| &k.key.account_id).collect();
                accounts.sort_unstable();
                accounts.dedup();
                for chunk in accounts.chunks(super::BATCH_ROWS) {
                    let mut query = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO accounts (account_id, created_at, updated_at) ",
                    );
                    query.push_values(chunk, |mut row, account| {
                        row.push_bind(account.as_str())
                            .push_bind(now.micros())
                            .push_bind(now.micros());
                    });
                    query.push(" ON CONFLICT (account_id) DO NOTHING");
                    query
                        .build()
                        .execute(&mut *self.tx)
                        .await
                        .map_err(db_error)?;
                }
                let mut sorted: Vec<&NewKey> = keys.iter().collect();
                sorted.sort_unstable_by_key(|k| *k.digest.as_bytes());
                let mut stored = Vec::with_capacity(keys.len());
                for chunk in sorted.chunks(super::BATCH_ROWS) {
                    let (head, tail) = &*INSERT_KEYS;
                    let mut query = sqlx::QueryBuilder::<$db>::new(head);
                    query.push_values(chunk, |mut row, new| {
                        push_key!(row, KeyValues::of(&new.digest, &new.key));
                    });
                    query.push(tail);
                    let rows: Vec<Vec<u8>> = query
                        .build_query_scalar()
                        .fetch_all(&mut *self.tx)
                        .await
                        .map_err(db_error)?;
                    stored.extend(super::digests(rows)?);
                }
                // Replicas may remember these digests as unknown.
                self.store.keys_changed(&mut self.tx, &stored).await?;
                Ok(stored)
            }

            async fn key_ids_by_digest(
                &mut self,
                digests: &[KeyDigest],
            ) -> Result<Vec<(KeyDigest, crate::ids::KeyId)>> {
                let mut found = Vec::new();
                for chunk in digests.chunks(super::BATCH_ROWS) {
                    let mut query = sqlx::QueryBuilder::<$db>::new(
                        "SELECT digest, id FROM api_keys WHERE digest IN (",
                    );
                    let mut list = query.separated(", ");
                    for digest in chunk {
                        list.push_bind(digest.as_bytes().to_vec());
                    }
                    query.push(")");
                    let rows: Vec<(Vec<u8>, crate::ids::KeyId)> = query
                        .build_query_as()
                        .fetch_all(&mut *self.tx)
                        .await
                        .map_err(db_error)?;
                    for (digest, id) in rows {
                        let digest = KeyDigest::from_slice(&digest)
                            .ok_or_else(|| Error::internal("api_keys.digest is not 32 bytes"))?;
                        found.push((digest, id));
                    }
                }
                Ok(found)
            }

            async fn account_for_update(
                &mut self,
                account_id: &crate::ids::AccountId,
                now: Timestamp,
            ) -> Result<Account> {
                let row = self.account_row_for_update(account_id, now).await?;
                let active = self.count_active(account_id, now).await?;
                row.into_account(i64::from(active))
            }

            async fn lock_account(
                &mut self,
                account_id: &crate::ids::AccountId,
                now: Timestamp,
            ) -> Result<Option<u32>> {
                let row = self.account_row_for_update(account_id, now).await?;
                Ok(row.max_active_keys.map(|m| u32::try_from(m).unwrap_or(u32::MAX)))
            }

            async fn counted_keys(&mut self, account_id: &crate::ids::AccountId) -> Result<u64> {
                let (sum, rows): (i64, i64) = sqlx::query_as(COUNTED_KEYS)
                    .bind(account_id)
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err(db_error)?;
                if rows > super::FOLD_COUNTS_AFTER {
                    // Folded under the account's lock: exactly the rows deleted, summed.
                    let gone: Vec<i64> = sqlx::query_scalar(
                        "DELETE FROM account_key_counts WHERE account_id = $1 RETURNING live",
                    )
                    .bind(account_id)
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(db_error)?;
                    self.add_counted_keys(account_id, gone.iter().sum()).await?;
                }
                Ok(sum.max(0).unsigned_abs())
            }

            async fn add_counted_keys(
                &mut self,
                account_id: &crate::ids::AccountId,
                delta: i64,
            ) -> Result<()> {
                sqlx::query($add_counted_keys)
                    .bind(account_id)
                    .bind(delta)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(db_error)?;
                Ok(())
            }

            async fn count_active(
                &mut self,
                account_id: &crate::ids::AccountId,
                now: Timestamp,
            ) -> Result<u32> {
                let count: i64 = sqlx::query_scalar(COUNT_ACTIVE)
                    .bind(account_id)
                    .bind(now.micros())
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err(db_error)?;
                Ok(u32::try_from(count).unwrap_or(u32::MAX))
            }

            async fn live_keys_for_update(
                &mut self,
                account_id: &crate::ids::AccountId,
                now: Timestamp,
            ) -> Result<Vec<StoredKey>> {
                let sql = format!("{}{}", *SELECT_LIVE_BY_ACCOUNT, $lock);
                sqlx::query_as::<_, KeyRow>(&sql)
                    .bind(account_id)
                    .bind(now.micros())
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(db_error)?
                    .into_iter()
                    .map(StoredKey::try_from)
                    .collect()
            }

            async fn write_account(&mut self, account: &Account, now: Timestamp) -> Result<()> {
                sqlx::query(UPDATE_ACCOUNT)
                    .bind(&account.account_id)
                    .bind(account.max_active_keys.map(i64::from))
                    .bind(account.disabled)
                    .bind(now.micros())
                    .bind(account.rate_limit.as_ref().map(super::row::to_json))
                    .execute(&mut *self.tx)
                    .await
                    .map_err(db_error)?;
                self.store
                    .changed(&mut self.tx, &Change::Account(account.account_id.clone()))
                    .await
            }

            async fn audit(&mut self, event: &AuditEvent) -> Result<()> {
                bind_event!(sqlx::query(INSERT_EVENT), event)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(db_error)?;
                Ok(())
            }

            async fn audit_many(&mut self, events: &[AuditEvent]) -> Result<()> {
                for chunk in events.chunks(super::BATCH_ROWS) {
                    let mut query = sqlx::QueryBuilder::<$db>::new(INSERT_EVENTS);
                    query.push_values(chunk, |mut row, event| push_event!(row, event));
                    query
                        .build()
                        .execute(&mut *self.tx)
                        .await
                        .map_err(db_error)?;
                }
                Ok(())
            }

            async fn store_is_empty(&mut self) -> Result<bool> {
                let any: Option<i64> = sqlx::query_scalar("SELECT seq FROM api_keys LIMIT 1")
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(db_error)?;
                Ok(any.is_none())
            }

            async fn commit(self: Box<Self>) -> Result<()> {
                self.tx.commit().await.map_err(db_error)
            }
        }

        #[async_trait::async_trait]
        impl super::Store for $store {
            async fn migrate(&self) -> Result<()> {
                static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!($migrations);
                MIGRATOR
                    .run(self.writer())
                    .await
                    .map_err(|e| Error::internal_caused("migration failed", e))
            }

            async fn begin(&self) -> Result<Box<dyn super::Tx>> {
                let tx = self.writer().begin().await.map_err(db_error)?;
                Ok(Box::new($tx {
                    tx,
                    store: self.clone(),
                }))
            }

            async fn begin_bootstrap(&self) -> Result<Box<dyn super::Tx>> {
                let mut tx = self.writer().begin().await.map_err(db_error)?;
                self.serialize_bootstrap(&mut tx).await?;
                Ok(Box::new($tx {
                    tx,
                    store: self.clone(),
                }))
            }

            async fn key_by_digest(&self, digest: &KeyDigest) -> Result<Option<KeyState>> {
                let row = sqlx::query_as::<_, KeyStateRow>(&SELECT_STATE_BY_DIGEST)
                    .bind(digest.as_bytes().as_slice())
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db_error)?;
                row.map(KeyState::try_from).transpose()
            }

            async fn key_by_id(&self, id: &crate::ids::KeyId) -> Result<Option<StoredKey>> {
                let row = sqlx::query_as::<_, KeyRow>(&SELECT_BY_ID)
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db_error)?;
                row.map(StoredKey::try_from).transpose()
            }

            async fn list_keys(&self, q: &KeyListQuery) -> Result<Page<ApiKey>> {
                let rows = sqlx::query_as::<_, KeyRow>(&LIST_KEYS)
                    .bind(q.account_id.as_str())
                    .bind(q.after.unwrap_or(0))
                    .bind(q.include_revoked)
                    .bind(q.unused_since.map(Timestamp::micros))
                    .bind(i64::from(q.page_size) + 1)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db_error)?;
                into_page(rows, q.page_size)
            }

            async fn list_keys_by_usage(&self, q: &KeyListQuery) -> Result<Page<(ApiKey, u64)>> {
                let since = crate::usage::Granularity::Hour.floor(q.by_usage.unwrap_or(0));
                let skipped = q.after.unwrap_or(0).max(0);
                let rows = sqlx::query_as::<_, super::row::UsedKeyRow>(&super::row::LIST_KEYS_BY_USAGE)
                    .bind(q.account_id.as_str())
                    .bind(skipped)
                    .bind(q.include_revoked)
                    .bind(q.unused_since.map(Timestamp::micros))
                    .bind(i64::from(q.page_size) + 1)
                    .bind(since)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db_error)?;
                let more = rows.len() > q.page_size as usize;
                let items = rows
                    .into_iter()
                    .take(q.page_size as usize)
                    .map(|r| {
                        let used = r.used.max(0).unsigned_abs();
                        StoredKey::try_from(r.key).map(|s| (s.key, used))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let next = more.then(|| skipped + i64::from(q.page_size));
                Ok(Page { items, next })
            }

            async fn get_account(
                &self,
                account_id: &crate::ids::AccountId,
                now: Timestamp,
            ) -> Result<Option<Account>> {
                let row = sqlx::query_as::<_, AccountRow>(SELECT_ACCOUNT)
                    .bind(account_id)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db_error)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let active: i64 = sqlx::query_scalar(COUNT_ACTIVE)
                    .bind(account_id)
                    .bind(now.micros())
                    .fetch_one(self.reader())
                    .await
                    .map_err(db_error)?;
                Ok(Some(row.into_account(active)?))
            }

            async fn list_audit_events(&self, q: &AuditQuery) -> Result<Page<AuditEvent>> {
                let rows = sqlx::query_as::<_, EventRow>(LIST_EVENTS)
                    .bind(q.account_id.as_str())
                    .bind(q.before)
                    .bind(i64::from(q.page_size) + 1)
                    .fetch_all(self.reader())
                    .await
                    .map_err(db_error)?;
                into_event_page(rows, q.page_size)
            }

            async fn record_last_used(&self, uses: &[(String, Timestamp)]) -> Result<()> {
                sqlx::query($record_last_used)
                    .bind(super::last_used_json(uses))
                    .execute(self.writer())
                    .await
                    .map_err(db_error)?;
                Ok(())
            }

            async fn record_usage(&self, counted: &[crate::usage::Counted]) -> Result<u64> {
                let mut tx = self.writer().begin().await.map_err(db_error)?;
                let mut statements = 0;
                for granularity in crate::usage::Granularity::ALL {
                    let rows = crate::usage::roll_up(counted, granularity);
                    for chunk in rows.chunks(super::BATCH_ROWS) {
                        let mut query = sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO key_usage \
                             (key_id, span, bucket, outcome, account_id, count) ",
                        );
                        query.push_values(chunk, |mut row, (key, account, bucket, outcome, count)| {
                            row.push_bind(*key)
                                .push_bind(granularity.number())
                                .push_bind(*bucket)
                                .push_bind(*outcome)
                                .push_bind(*account)
                                .push_bind(*count);
                        });
                        query.push(
                            " ON CONFLICT (key_id, span, bucket, outcome) \
                             DO UPDATE SET count = key_usage.count + excluded.count",
                        );
                        query.build().execute(&mut *tx).await.map_err(db_error)?;
                        statements += 1;
                    }
                }
                tx.commit().await.map_err(db_error)?;
                Ok(statements)
            }

            async fn usage(
                &self,
                q: &crate::usage::UsageQuery,
            ) -> Result<Vec<crate::usage::UsageRow>> {
                use crate::usage::Target;
                let range = "span = $2 AND bucket >= $3 AND bucket < $4 \
                             AND ((CAST(1 AS BIGINT) << outcome) & $5) <> 0";
                let (who, sql) = match &q.target {
                    // Decisions about no stored key are stored under the empty key id.
                    Target::Key(_) | Target::NoKey => (
                        match &q.target {
                            Target::Key(id) => id.as_str(),
                            _ => "",
                        },
                        format!(
                            "SELECT CAST(NULL AS TEXT), bucket, outcome, CAST(SUM(count) AS BIGINT) \
                             FROM key_usage WHERE key_id = $1 AND {range} GROUP BY bucket, outcome"
                        ),
                    ),
                    Target::Account(account) => (
                        account.as_str(),
                        format!(
                            "SELECT CAST(NULL AS TEXT), bucket, outcome, CAST(SUM(count) AS BIGINT) \
                             FROM key_usage WHERE account_id = $1 AND {range} GROUP BY bucket, outcome"
                        ),
                    ),
                    Target::AccountByKey { account_id, .. } => (
                        account_id.as_str(),
                        format!(
                            "SELECT key_id, bucket, outcome, count FROM key_usage \
                             WHERE {range} AND key_id IN (SELECT DISTINCT key_id FROM key_usage \
                               WHERE account_id = $1 AND {range} \
                               ORDER BY key_id LIMIT $6 OFFSET $7)"
                        ),
                    ),
                };
                let (offset, limit) = match &q.target {
                    // One more key than the page, to tell whether more follow.
                    Target::AccountByKey { offset, limit, .. } => (*offset, limit.saturating_add(1)),
                    _ => (0, 0),
                };
                let mut query = sqlx::query_as::<_, crate::usage::UsageRow>(&sql)
                    .bind(who)
                    .bind(q.granularity.number())
                    .bind(q.start)
                    .bind(q.end)
                    .bind(q.outcome_mask());
                if matches!(q.target, Target::AccountByKey { .. }) {
                    query = query.bind(limit).bind(offset);
                }
                query.fetch_all(self.reader()).await.map_err(db_error)
            }

            async fn delete_usage_before(
                &self,
                granularity: crate::usage::Granularity,
                before: i64,
            ) -> Result<u64> {
                let done = sqlx::query("DELETE FROM key_usage WHERE span = $1 AND bucket < $2")
                    .bind(granularity.number())
                    .bind(before)
                    .execute(self.writer())
                    .await
                    .map_err(db_error)?;
                Ok(done.rows_affected())
            }

            async fn return_credits(
                &self,
                id: &crate::ids::KeyId,
                units: u64,
                period: Timestamp,
            ) -> Result<()> {
                sqlx::query(RETURN_CREDITS)
                    .bind(id)
                    .bind(i64::try_from(units).unwrap_or(i64::MAX))
                    .bind(period.micros())
                    .execute(self.writer())
                    .await
                    .map_err(db_error)?;
                Ok(())
            }

            async fn insert_portal_session(
                &self,
                s: &crate::portal::PortalSession,
                link_hash: &[u8],
            ) -> Result<()> {
                let row = super::row::PortalRow::of(s)?;
                sqlx::query(super::row::INSERT_PORTAL_SESSION)
                    .bind(&row.id)
                    .bind(&row.account_id)
                    .bind(link_hash)
                    .bind(&row.display_name)
                    .bind(&row.return_url)
                    .bind(&row.permissions)
                    .bind(&row.branding)
                    .bind(&row.created_by)
                    .bind(row.created_at)
                    .bind(row.link_expires_at)
                    .bind(row.expires_at)
                    .execute(self.writer())
                    .await
                    .map_err(db_error)?;
                Ok(())
            }

            async fn open_portal_session(
                &self,
                link_hash: &[u8],
                session_hash: &[u8],
                now: Timestamp,
            ) -> Result<Option<crate::portal::PortalSession>> {
                let sql = format!(
                    "UPDATE portal_sessions SET session_hash = $2, opened_at = $3, last_seen_at = $3 \
                     WHERE link_hash = $1 AND opened_at IS NULL AND revoked_at IS NULL \
                     AND link_expires_at > $3 AND expires_at > $3 RETURNING {}",
                    super::row::PORTAL_COLUMNS
                );
                sqlx::query_as::<_, super::row::PortalRow>(&sql)
                    .bind(link_hash)
                    .bind(session_hash)
                    .bind(now.micros())
                    .fetch_optional(self.writer())
                    .await
                    .map_err(db_error)?
                    .map(TryInto::try_into)
                    .transpose()
            }

            async fn touch_portal_session(
                &self,
                session_hash: &[u8],
                now: Timestamp,
                idle_since: Timestamp,
            ) -> Result<Option<crate::portal::PortalSession>> {
                let sql = format!(
                    "UPDATE portal_sessions SET last_seen_at = $2 \
                     WHERE session_hash = $1 AND revoked_at IS NULL AND expires_at > $2 \
                     AND last_seen_at > $3 RETURNING {}",
                    super::row::PORTAL_COLUMNS
                );
                sqlx::query_as::<_, super::row::PortalRow>(&sql)
                    .bind(session_hash)
                    .bind(now.micros())
                    .bind(idle_since.micros())
                    .fetch_optional(self.writer())
                    .await
                    .map_err(db_error)?
                    .map(TryInto::try_into)
                    .transpose()
            }

            async fn list_portal_sessions(
                &self,
                account_id: &crate::ids::AccountId,
                limit: u32,
            ) -> Result<Vec<crate::portal::PortalSession>> {
                let sql = format!(
                    "SELECT {} FROM portal_sessions WHERE account_id = $1 \
                     ORDER BY created_at DESC, id LIMIT $2",
                    super::row::PORTAL_COLUMNS
                );
                sqlx::query_as::<_, super::row::PortalRow>(&sql)
                    .bind(account_id.as_str())
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await
                    .map_err(db_error)?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect()
            }

            async fn revoke_portal_session(
                &self,
                id: &str,
                account_id: Option<&crate::ids::AccountId>,
                now: Timestamp,
            ) -> Result<Option<crate::portal::PortalSession>> {
                let sql = format!(
                    "UPDATE portal_sessions SET revoked_at = COALESCE(revoked_at, $2) \
                     WHERE id = $1 AND ($3 = '' OR account_id = $3) RETURNING {}",
                    super::row::PORTAL_COLUMNS
                );
                sqlx::query_as::<_, super::row::PortalRow>(&sql)
                    .bind(id)
                    .bind(now.micros())
                    .bind(account_id.map_or("", |a| a.as_str()))
                    .fetch_optional(self.writer())
                    .await
                    .map_err(db_error)?
                    .map(TryInto::try_into)
                    .transpose()
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1")
                    .execute(self.reader())
                    .await
                    .map_err(db_error)?;
                Ok(())
            }

            async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
                sqlx::query(
                    "INSERT INTO server_secrets (name, secret) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(candidate)
                .execute(self.writer())
                .await
                .map_err(db_error)?;
                sqlx::query_scalar("SELECT secret FROM server_secrets WHERE name = $1")
                    .bind(name)
                    .fetch_one(self.writer())
                    .await
                    .map_err(db_error)
            }

            async fn key_digests(
                &self,
                after: i64,
                limit: u32,
            ) -> Result<(Vec<KeyDigest>, Option<i64>)> {
                let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT seq, digest FROM api_keys WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await
                .map_err(db_error)?;
                let next = match rows.last() {
                    Some((seq, _)) if rows.len() == limit as usize => Some(*seq),
                    _ => None,
                };
                let digests = super::digests(rows.into_iter().map(|(_, d)| d).collect())?;
                Ok((digests, next))
            }

            fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<Change>> {
                self.change_feed()
            }

            fn has_change_feed(&self) -> bool {
                $feed
            }

            async fn refresh_statistics(&self) -> Result<()> {
                let statement: Option<&str> = $refresh_statistics;
                if let Some(statement) = statement {
                    sqlx::query(statement)
                        .execute(self.writer())
                        .await
                        .map_err(db_error)?;
                }
                Ok(())
            }

            async fn close(&self) {
                self.close_pools().await;
            }
        }
    };
}

pub(crate) use sql_backend;
