//! What both backends share: the SQL they both speak, the row shape, and the conversion
//! between rows and domain records. Lists and maps are stored as JSON text, times as
//! microseconds since the epoch, so one row type decodes on SQLite and PostgreSQL alike.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use crate::audit::{Action, AuditEvent};
use crate::cache::KeyState;
use crate::error::{Error, Result};
use crate::ids::{AccountId, KeyId};
use crate::key::{Environment, KeyDigest};
use crate::model::{Account, ApiKey, Credits, Page, RateLimit, Restrictions, StoredKey};
use crate::time::Timestamp;

/// The key columns, in the order [`bind_key!`] binds them to `$1…$22`.
const COLUMNS: [&str; 22] = [
    "id",
    "digest",
    "account_id",
    "name",
    "prefix",
    "environment",
    "scopes",
    "grant_all",
    "restrictions",
    "rate_limit",
    "meta",
    "created_at",
    "updated_at",
    "expires_at",
    "last_used_at",
    "revoked_at",
    "previous_key_id",
    "created_by",
    "replaced_by",
    "credits",
    "refill",
    "refilled_at",
];

fn columns(qualifier: &str) -> String {
    COLUMNS
        .iter()
        .map(|c| format!("{qualifier}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) static INSERT_KEY: LazyLock<String> = LazyLock::new(|| {
    let placeholders: Vec<String> = (1..=COLUMNS.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO api_keys ({}) VALUES ({}) RETURNING seq, {}",
        columns(""),
        placeholders.join(", "),
        columns("")
    )
});

/// The head of a many-row insert of keys (`VALUES (…), (…)` follows, bound by
/// [`push_key!`]); conflicting rows (a digest already stored) are skipped, the digests of the
/// others returned.
pub(crate) static INSERT_KEYS: LazyLock<(String, String)> = LazyLock::new(|| {
    (
        format!("INSERT INTO api_keys ({}) ", columns("")),
        " ON CONFLICT (digest) DO NOTHING RETURNING digest".to_owned(),
    )
});

/// `SELECT … FROM api_keys WHERE id = $1`.
pub(crate) static SELECT_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT seq, {} FROM api_keys WHERE id = $1", columns("")));

/// A key and its account's state, by digest: the verify path's one query.
pub(crate) static SELECT_STATE_BY_DIGEST: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT k.seq, {}, a.disabled AS account_disabled, a.rate_limit AS account_rate_limit \
         FROM api_keys k \
         JOIN accounts a ON a.account_id = k.account_id WHERE k.digest = $1",
        columns("k.")
    )
});

pub(crate) static LIST_KEYS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT seq, {} FROM api_keys \
         WHERE account_id = $1 AND seq > $2 AND ($3 OR revoked_at IS NULL) \
         AND ($4 IS NULL OR last_used_at IS NULL OR last_used_at < $4) \
         ORDER BY seq LIMIT $5",
        columns("")
    )
});

/// An account's keys, most used since a moment first: `$6` the hour the count starts at,
/// `$2` the keys skipped.
pub(crate) static LIST_KEYS_BY_USAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT seq, {}, COALESCE(u.used, 0) AS used FROM api_keys \
         LEFT JOIN (SELECT key_id, CAST(SUM(count) AS BIGINT) AS used FROM key_usage \
                    WHERE account_id = $1 AND span = 2 AND bucket >= $6 GROUP BY key_id) AS u \
           ON u.key_id = api_keys.id \
         WHERE account_id = $1 AND ($3 OR revoked_at IS NULL) \
         AND ($4 IS NULL OR last_used_at IS NULL OR last_used_at < $4) \
         ORDER BY used DESC, seq LIMIT $5 OFFSET $2",
        columns("")
    )
});

/// A key row with its decisions counted.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UsedKeyRow {
    #[sqlx(flatten)]
    pub key: KeyRow,
    pub used: i64,
}

pub(crate) const ENSURE_ACCOUNT: &str = "INSERT INTO accounts (account_id, created_at, updated_at) \
     VALUES ($1, $2, $2) ON CONFLICT (account_id) DO NOTHING";

/// Active keys: not revoked, not expired, not replaced by a rotation.
/// Keys of an account that still work: not revoked, not expired (keys in a rotation's grace
/// period included).
pub(crate) static SELECT_LIVE_BY_ACCOUNT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT seq, {} FROM api_keys WHERE account_id = $1 AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > $2) ORDER BY seq",
        columns("")
    )
});

/// An account's counted keys (the sum of its `account_key_counts` rows) and how many rows
/// hold them.
pub(crate) const COUNTED_KEYS: &str = "SELECT CAST(COALESCE(SUM(live), 0) AS BIGINT), COUNT(*) \
     FROM account_key_counts WHERE account_id = $1";

pub(crate) const COUNT_ACTIVE: &str = "SELECT COUNT(*) FROM api_keys WHERE account_id = $1 \
     AND revoked_at IS NULL AND replaced_by IS NULL AND (expires_at IS NULL OR expires_at > $2)";

/// Every mutable column; the row is locked (`FOR UPDATE`, or SQLite's single writer) since it
/// was read, so the credits written back are the ones read plus the patch.
pub(crate) const UPDATE_KEY: &str = "UPDATE api_keys SET name = $2, scopes = $3, grant_all = $4, \
     restrictions = $5, rate_limit = $6, meta = $7, expires_at = $8, updated_at = $9, \
     revoked_at = $10, replaced_by = $11, credits = $12, refill = $13, refilled_at = $14 \
     WHERE id = $1";

/// A key's credit balance, written back after a reservation in the transaction that locked it.
pub(crate) const WRITE_CREDITS: &str =
    "UPDATE api_keys SET credits = $2, refilled_at = $3 WHERE id = $1";

/// Unspent units of a block given back, unless the balance was set or refilled since (the
/// block belonged to an ended period).
pub(crate) const RETURN_CREDITS: &str = "UPDATE api_keys SET credits = credits + $2 \
     WHERE id = $1 AND credits IS NOT NULL AND refilled_at = $3";

pub(crate) const SELECT_ACCOUNT: &str =
    "SELECT account_id, max_active_keys, disabled, rate_limit FROM accounts WHERE account_id = $1";

pub(crate) const UPDATE_ACCOUNT: &str = "UPDATE accounts SET max_active_keys = $2, disabled = $3, \
     updated_at = $4, rate_limit = $5 WHERE account_id = $1";

/// Binds a [`KeyValues`] to a query as `$1…$19` in [`INSERT_KEY`]'s order.
macro_rules! bind_key {
    ($query:expr, $v:expr) => {{
        let v = $v;
        $query
            .bind(v.id)
            .bind(v.digest)
            .bind(v.account_id)
            .bind(v.name)
            .bind(v.prefix)
            .bind(v.environment)
            .bind(v.scopes)
            .bind(v.grant_all)
            .bind(v.restrictions)
            .bind(v.rate_limit)
            .bind(v.meta)
            .bind(v.created_at)
            .bind(v.updated_at)
            .bind(v.expires_at)
            .bind(v.last_used_at)
            .bind(v.revoked_at)
            .bind(v.previous_key_id)
            .bind(v.created_by)
            .bind(v.replaced_by)
            .bind(v.credits)
            .bind(v.refill)
            .bind(v.refilled_at)
    }};
}
pub(crate) use bind_key;

/// Pushes a [`KeyValues`] as one row of a many-row insert, in [`INSERT_KEYS`]' column order.
macro_rules! push_key {
    ($row:expr, $v:expr) => {{
        let v = $v;
        $row.push_bind(v.id)
            .push_bind(v.digest)
            .push_bind(v.account_id)
            .push_bind(v.name)
            .push_bind(v.prefix)
            .push_bind(v.environment)
            .push_bind(v.scopes)
            .push_bind(v.grant_all)
            .push_bind(v.restrictions)
            .push_bind(v.rate_limit)
            .push_bind(v.meta)
            .push_bind(v.created_at)
            .push_bind(v.updated_at)
            .push_bind(v.expires_at)
            .push_bind(v.last_used_at)
            .push_bind(v.revoked_at)
            .push_bind(v.previous_key_id)
            .push_bind(v.created_by)
            .push_bind(v.replaced_by)
            .push_bind(v.credits)
            .push_bind(v.refill)
            .push_bind(v.refilled_at);
    }};
}
pub(crate) use push_key;

/// Binds the mutable columns of a key to [`UPDATE_KEY`]'s `$1…$11`.
macro_rules! bind_key_update {
    ($query:expr, $v:expr) => {{
        let v = $v;
        $query
            .bind(v.id)
            .bind(v.name)
            .bind(v.scopes)
            .bind(v.grant_all)
            .bind(v.restrictions)
            .bind(v.rate_limit)
            .bind(v.meta)
            .bind(v.expires_at)
            .bind(v.updated_at)
            .bind(v.revoked_at)
            .bind(v.replaced_by)
            .bind(v.credits)
            .bind(v.refill)
            .bind(v.refilled_at)
    }};
}
pub(crate) use bind_key_update;

/// A key row as both databases return it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct KeyRow {
    pub seq: i64,
    id: KeyId,
    digest: Vec<u8>,
    account_id: AccountId,
    name: String,
    prefix: String,
    environment: String,
    scopes: String,
    grant_all: bool,
    restrictions: String,
    rate_limit: Option<String>,
    meta: String,
    created_at: i64,
    updated_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
    previous_key_id: Option<KeyId>,
    created_by: Option<KeyId>,
    replaced_by: Option<KeyId>,
    credits: Option<i64>,
    refill: Option<String>,
    refilled_at: Option<i64>,
}

/// A key row joined with its account's state.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct KeyStateRow {
    #[sqlx(flatten)]
    key: KeyRow,
    account_disabled: bool,
    account_rate_limit: Option<String>,
}

impl TryFrom<KeyStateRow> for KeyState {
    type Error = Error;

    fn try_from(row: KeyStateRow) -> Result<Self> {
        let stored = StoredKey::try_from(row.key)?;
        let account_limit: Option<RateLimit> = match &row.account_rate_limit {
            Some(text) => Some(from_json("accounts.rate_limit", text)?),
            None => None,
        };
        Ok(KeyState::new(&stored.key, row.account_disabled).with_account_limit(account_limit))
    }
}

/// An account row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AccountRow {
    pub account_id: AccountId,
    pub max_active_keys: Option<i64>,
    pub disabled: bool,
    pub rate_limit: Option<String>,
}

impl AccountRow {
    /// The domain account, with its count of active keys.
    pub fn into_account(self, active_keys: i64) -> Result<Account> {
        let rate_limit = match &self.rate_limit {
            Some(text) => Some(from_json("accounts.rate_limit", text)?),
            None => None,
        };
        Ok(Account {
            rate_limit,
            account_id: self.account_id,
            max_active_keys: self
                .max_active_keys
                .map(|m| u32::try_from(m).unwrap_or(u32::MAX)),
            disabled: self.disabled,
            active_keys: u32::try_from(active_keys).unwrap_or(u32::MAX),
        })
    }
}

/// A key's column values, ready to bind.
pub(crate) struct KeyValues {
    pub id: KeyId,
    pub digest: Vec<u8>,
    pub account_id: AccountId,
    pub name: String,
    pub prefix: String,
    pub environment: &'static str,
    pub scopes: String,
    pub grant_all: bool,
    pub restrictions: String,
    pub rate_limit: Option<String>,
    pub meta: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub previous_key_id: Option<KeyId>,
    pub created_by: Option<KeyId>,
    pub replaced_by: Option<KeyId>,
    pub credits: Option<i64>,
    pub refill: Option<String>,
    pub refilled_at: Option<i64>,
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serializing plain structs, vectors and string maps cannot fail.
    serde_json::to_string(value).expect("plain data serializes")
}

fn from_json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::internal_caused(format!("column {column} holds bad JSON"), e))
}

impl KeyValues {
    /// The values of a stored key.
    pub fn of(digest: &KeyDigest, key: &ApiKey) -> Self {
        KeyValues {
            id: key.id.clone(),
            digest: digest.as_bytes().to_vec(),
            account_id: key.account_id.clone(),
            name: key.name.clone(),
            prefix: key.prefix.clone(),
            environment: key.environment.as_str(),
            scopes: to_json(&key.scopes),
            grant_all: key.grant_all,
            restrictions: to_json(&key.restrictions),
            rate_limit: key.rate_limit.as_ref().map(to_json),
            meta: to_json(&key.meta),
            created_at: key.created_at.micros(),
            updated_at: key.updated_at.micros(),
            expires_at: key.expires_at.map(Timestamp::micros),
            last_used_at: key.last_used_at.map(Timestamp::micros),
            revoked_at: key.revoked_at.map(Timestamp::micros),
            previous_key_id: key.previous_key_id.clone(),
            created_by: key.created_by.clone(),
            replaced_by: key.replaced_by.clone(),
            credits: key
                .credits
                .map(|c| i64::try_from(c.remaining).unwrap_or(i64::MAX)),
            refill: key.credits.and_then(|c| c.refill).as_ref().map(to_json),
            refilled_at: key.credits.map(|c| c.refilled_at.micros()),
        }
    }
}

impl TryFrom<KeyRow> for StoredKey {
    type Error = Error;

    fn try_from(row: KeyRow) -> Result<Self> {
        let digest = KeyDigest::from_slice(&row.digest)
            .ok_or_else(|| Error::internal(format!("key {} has a bad digest", row.id)))?;
        let environment = Environment::parse(&row.environment).ok_or_else(|| {
            Error::internal(format!(
                "key {} has environment {:?}",
                row.id, row.environment
            ))
        })?;
        let rate_limit: Option<RateLimit> = match &row.rate_limit {
            Some(text) => Some(from_json("rate_limit", text)?),
            None => None,
        };
        let restrictions: Restrictions = from_json("restrictions", &row.restrictions)?;
        let scopes: Vec<String> = from_json("scopes", &row.scopes)?;
        let meta: BTreeMap<String, String> = from_json("meta", &row.meta)?;
        let credits = match row.credits {
            Some(remaining) => Some(Credits {
                remaining: u64::try_from(remaining).unwrap_or(0),
                refill: match &row.refill {
                    Some(text) => Some(from_json("refill", text)?),
                    None => None,
                },
                refilled_at: Timestamp::from_micros(row.refilled_at.unwrap_or(0)),
            }),
            None => None,
        };
        Ok(StoredKey {
            digest,
            key: ApiKey {
                id: row.id,
                account_id: row.account_id,
                name: row.name,
                prefix: row.prefix,
                environment,
                scopes,
                grant_all: row.grant_all,
                restrictions,
                rate_limit,
                credits,
                meta,
                created_at: Timestamp::from_micros(row.created_at),
                updated_at: Timestamp::from_micros(row.updated_at),
                expires_at: row.expires_at.map(Timestamp::from_micros),
                last_used_at: row.last_used_at.map(Timestamp::from_micros),
                revoked_at: row.revoked_at.map(Timestamp::from_micros),
                previous_key_id: row.previous_key_id,
                created_by: row.created_by,
                replaced_by: row.replaced_by,
            },
        })
    }
}

/// Turns up to `page_size + 1` rows into a page: the extra row only says another page exists;
/// the cursor is the `seq` of the last row kept.
fn paginate<R, T>(
    mut rows: Vec<R>,
    page_size: u32,
    seq: impl Fn(&R) -> i64,
    convert: impl Fn(R) -> Result<T>,
) -> Result<Page<T>> {
    let more = rows.len() > page_size as usize;
    rows.truncate(page_size as usize);
    let next = if more { rows.last().map(&seq) } else { None };
    let items = rows.into_iter().map(convert).collect::<Result<_>>()?;
    Ok(Page { items, next })
}

/// A page of keys from up to `page_size + 1` rows.
pub(crate) fn into_page(rows: Vec<KeyRow>, page_size: u32) -> Result<Page<ApiKey>> {
    paginate(
        rows,
        page_size,
        |r| r.seq,
        |r| StoredKey::try_from(r).map(|s| s.key),
    )
}

pub(crate) const INSERT_EVENT: &str = "INSERT INTO audit_events \
     (id, time, actor_key_id, account_id, action, target_key_id, changes) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// The head of a many-row insert of audit events (`VALUES (…), (…)` follows, bound by
/// [`push_event!`]).
pub(crate) const INSERT_EVENTS: &str = "INSERT INTO audit_events \
     (id, time, actor_key_id, account_id, action, target_key_id, changes) ";

/// Pushes an audit event as one row of [`INSERT_EVENTS`].
macro_rules! push_event {
    ($row:expr, $e:expr) => {{
        let e: &crate::audit::AuditEvent = $e;
        $row.push_bind(e.id.clone())
            .push_bind(e.time.micros())
            .push_bind(e.actor_key_id.clone())
            .push_bind(e.account_id.clone())
            .push_bind(e.action.as_str())
            .push_bind(e.target_key_id.clone())
            .push_bind(crate::store::row::to_json(&e.changes));
    }};
}
pub(crate) use push_event;

pub(crate) const LIST_EVENTS: &str = "SELECT seq, id, time, actor_key_id, account_id, action, \
     target_key_id, changes FROM audit_events \
     WHERE account_id = $1 AND ($2 IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3";

/// Binds an audit event to [`INSERT_EVENT`]'s `$1…$7`.
macro_rules! bind_event {
    ($query:expr, $e:expr) => {{
        let e: &crate::audit::AuditEvent = $e;
        $query
            .bind(e.id.clone())
            .bind(e.time.micros())
            .bind(e.actor_key_id.clone())
            .bind(e.account_id.clone())
            .bind(e.action.as_str())
            .bind(e.target_key_id.clone())
            .bind(crate::store::row::to_json(&e.changes))
    }};
}
pub(crate) use bind_event;

/// An audit event row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EventRow {
    seq: i64,
    id: String,
    time: i64,
    actor_key_id: Option<KeyId>,
    account_id: AccountId,
    action: String,
    target_key_id: Option<KeyId>,
    changes: String,
}

/// A page of audit events, newest first, from up to `page_size + 1` rows.
pub(crate) fn into_event_page(rows: Vec<EventRow>, page_size: u32) -> Result<Page<AuditEvent>> {
    // The page ends early where its changes would pass the byte budget.
    let mut spent = 0;
    let fit = rows
        .iter()
        .take_while(|r| {
            spent += r.changes.len();
            spent <= crate::limits::MAX_AUDIT_PAGE_BYTES
        })
        .count()
        .max(1);
    paginate(
        rows,
        page_size.min(u32::try_from(fit).unwrap_or(u32::MAX)),
        |r| r.seq,
        |r| {
            Ok(AuditEvent {
                action: Action::parse(&r.action).ok_or_else(|| {
                    Error::internal(format!("event {} has action {:?}", r.id, r.action))
                })?,
                changes: from_json("changes", &r.changes)?,
                id: r.id,
                time: Timestamp::from_micros(r.time),
                actor_key_id: r.actor_key_id,
                account_id: r.account_id,
                target_key_id: r.target_key_id,
            })
        },
    )
}

/// A portal session's columns, in [`PortalRow`]'s order.
pub(crate) const PORTAL_COLUMNS: &str = "id, account_id, display_name, return_url, permissions, \
     branding, created_by, created_at, link_expires_at, opened_at, last_seen_at, expires_at, \
     revoked_at";

pub(crate) const INSERT_PORTAL_SESSION: &str = "INSERT INTO portal_sessions (id, account_id, \
     link_hash, display_name, return_url, permissions, branding, created_by, created_at, \
     link_expires_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// A portal session as stored: permissions and branding as JSON text.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PortalRow {
    pub id: String,
    pub account_id: String,
    pub display_name: String,
    pub return_url: String,
    pub permissions: String,
    pub branding: String,
    pub created_by: String,
    pub created_at: i64,
    pub link_expires_at: i64,
    pub opened_at: Option<i64>,
    pub last_seen_at: Option<i64>,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl PortalRow {
    pub(crate) fn of(s: &crate::portal::PortalSession) -> Result<Self> {
        let json = |e: serde_json::Error| Error::internal_caused("portal session to JSON", e);
        Ok(PortalRow {
            id: s.id.clone(),
            account_id: s.account_id.as_str().to_owned(),
            display_name: s.display_name.clone(),
            return_url: s.return_url.clone(),
            permissions: serde_json::to_string(&s.permissions).map_err(json)?,
            branding: serde_json::to_string(&s.branding).map_err(json)?,
            created_by: s.created_by.clone(),
            created_at: s.created_at.micros(),
            link_expires_at: s.link_expires_at.micros(),
            opened_at: s.opened_at.map(Timestamp::micros),
            last_seen_at: s.last_seen_at.map(Timestamp::micros),
            expires_at: s.expires_at.micros(),
            revoked_at: s.revoked_at.map(Timestamp::micros),
        })
    }
}

impl TryFrom<PortalRow> for crate::portal::PortalSession {
    type Error = Error;

    fn try_from(r: PortalRow) -> Result<Self> {
        let json = |e: serde_json::Error| Error::internal_caused("stored portal session JSON", e);
        Ok(crate::portal::PortalSession {
            id: r.id,
            account_id: crate::ids::AccountId::trusted(r.account_id),
            display_name: r.display_name,
            return_url: r.return_url,
            permissions: serde_json::from_str(&r.permissions).map_err(json)?,
            branding: serde_json::from_str(&r.branding).map_err(json)?,
            created_by: r.created_by,
            created_at: Timestamp::from_micros(r.created_at),
            link_expires_at: Timestamp::from_micros(r.link_expires_at),
            opened_at: r.opened_at.map(Timestamp::from_micros),
            last_seen_at: r.last_seen_at.map(Timestamp::from_micros),
            expires_at: Timestamp::from_micros(r.expires_at),
            revoked_at: r.revoked_at.map(Timestamp::from_micros),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event whose recorded changes take `changes_bytes` bytes.
    fn event(seq: i64, changes_bytes: usize) -> EventRow {
        let empty = r#"[{"field":"key_ids","old_value":"","new_value":""}]"#.len();
        let value = "k".repeat(changes_bytes - empty);
        EventRow {
            seq,
            id: format!("evt_{seq}"),
            time: 0,
            actor_key_id: None,
            account_id: AccountId::trusted("acme".into()),
            action: "keys_imported".into(),
            target_key_id: None,
            changes: format!(r#"[{{"field":"key_ids","old_value":"","new_value":"{value}"}}]"#),
        }
    }

    #[test]
    fn an_audit_page_ends_where_its_changes_pass_the_byte_budget() {
        let quarter = crate::limits::MAX_AUDIT_PAGE_BYTES / 4;
        // Ten events of a quarter of the budget each, newest first: four fit.
        let rows: Vec<EventRow> = (0..10).map(|i| event(100 - i, quarter)).collect();
        let page = into_event_page(rows, 50).unwrap();
        let ids: Vec<&str> = page.items.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["evt_100", "evt_99", "evt_98", "evt_97"]);
        assert_eq!(
            page.next,
            Some(97),
            "the next page starts after the last shown"
        );
        // One event larger than the budget is still shown, alone.
        let rows = vec![
            event(5, 2 * crate::limits::MAX_AUDIT_PAGE_BYTES),
            event(4, 100),
        ];
        let page = into_event_page(rows, 50).unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.next, Some(5));
        // Small events: the page size decides.
        let rows: Vec<EventRow> = (0..3).map(|i| event(10 - i, 100)).collect();
        let page = into_event_page(rows, 2).unwrap();
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next, Some(9));
        let rows: Vec<EventRow> = (0..2).map(|i| event(10 - i, 100)).collect();
        assert_eq!(into_event_page(rows, 2).unwrap().next, None);
    }
}
