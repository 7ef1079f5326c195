//! The audit trail: what each successful mutation changed, by whom. Events are built here from
//! the records before and after (pure functions) and written by the store in the same
//! transaction as the change. They never contain a secret or a hash: those are not fields of
//! the records compared.

use serde::Serialize;

use crate::ids::{AccountId, KeyId};
use crate::model::{Account, ApiKey, new_id};
use crate::time::Timestamp;

/// What a mutation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A key was created.
    KeyCreated,
    /// A key was updated.
    KeyUpdated,
    /// A key was revoked.
    KeyRevoked,
    /// A key was rotated (the target is the old key).
    KeyRotated,
    /// An account's policy was updated.
    AccountUpdated,
    /// Keys were imported: one event per `ImportKeys` call and account, naming every key it
    /// stored (`key_ids`); each key's fields at creation are its row's, before the updates
    /// its own later events record.
    KeysImported,
}

impl Action {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::KeyCreated => "key_created",
            Action::KeyUpdated => "key_updated",
            Action::KeyRevoked => "key_revoked",
            Action::KeyRotated => "key_rotated",
            Action::AccountUpdated => "account_updated",
            Action::KeysImported => "keys_imported",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Action::KeyCreated,
            Action::KeyUpdated,
            Action::KeyRevoked,
            Action::KeyRotated,
            Action::AccountUpdated,
            Action::KeysImported,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// One changed field, its values as JSON (times in microseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FieldChange {
    /// The field's name.
    pub field: String,
    /// The value before; empty on creation.
    pub old_value: String,
    /// The value after.
    pub new_value: String,
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Public id, `evt_…`.
    pub id: String,
    /// When the mutation happened.
    pub time: Timestamp,
    /// The key that made the call; `None` for the first-start bootstrap and the CLI.
    pub actor_key_id: Option<KeyId>,
    /// The account affected.
    pub account_id: AccountId,
    /// What was done.
    pub action: Action,
    /// The key affected, if any.
    pub target_key_id: Option<KeyId>,
    /// What changed.
    pub changes: Vec<FieldChange>,
}

impl AuditEvent {
    /// An event about a key: the changes between `before` (none on creation) and `after`.
    pub fn for_key(
        action: Action,
        actor: Option<&str>,
        before: Option<&ApiKey>,
        after: &ApiKey,
        time: Timestamp,
    ) -> Self {
        AuditEvent {
            id: new_id("evt"),
            time,
            actor_key_id: actor.map(|a| KeyId::trusted(a.to_owned())),
            account_id: after.account_id.clone(),
            action,
            target_key_id: Some(after.id.clone()),
            changes: key_changes(before, after),
        }
    }

    /// An event about an account's policy.
    pub fn for_account(
        actor: Option<&str>,
        before: &Account,
        after: &Account,
        time: Timestamp,
    ) -> Self {
        let mut changes = Vec::new();
        push(
            &mut changes,
            "max_active_keys",
            Some(&before.max_active_keys),
            &after.max_active_keys,
        );
        push(
            &mut changes,
            "disabled",
            Some(&before.disabled),
            &after.disabled,
        );
        push(
            &mut changes,
            "rate_limit",
            Some(&before.rate_limit),
            &after.rate_limit,
        );
        AuditEvent {
            id: new_id("evt"),
            time,
            actor_key_id: actor.map(|a| KeyId::trusted(a.to_owned())),
            account_id: after.account_id.clone(),
            action: Action::AccountUpdated,
            target_key_id: None,
            changes,
        }
    }
}

impl AuditEvent {
    /// The event of one import call for one account: how many keys it stored and their ids,
    /// in the call's order.
    pub fn for_import(
        actor: Option<&str>,
        account_id: &AccountId,
        key_ids: &[&KeyId],
        time: Timestamp,
    ) -> Self {
        let change = |field: &str, new_value| FieldChange {
            field: field.to_owned(),
            old_value: String::new(),
            new_value,
        };
        AuditEvent {
            id: new_id("evt"),
            time,
            actor_key_id: actor.map(|a| KeyId::trusted(a.to_owned())),
            account_id: account_id.clone(),
            action: Action::KeysImported,
            target_key_id: None,
            changes: vec![
                change("count", key_ids.len().to_string()),
                change("key_ids", json(&key_ids)),
            ],
        }
    }
}

fn json<T: Serialize>(value: &T) -> String {
    // Plain data (strings, numbers, vectors, maps) always serializes.
    serde_json::to_string(value).expect("plain data serializes")
}

fn push<T: Serialize + PartialEq>(
    changes: &mut Vec<FieldChange>,
    field: &str,
    old: Option<&T>,
    new: &T,
) {
    if old == Some(new) {
        return;
    }
    changes.push(FieldChange {
        field: field.to_owned(),
        old_value: old.map(json).unwrap_or_default(),
        new_value: json(new),
    });
}

/// The auditable fields that differ between two versions of a key (all of them on creation).
pub fn key_changes(before: Option<&ApiKey>, after: &ApiKey) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    let b = before;
    push(&mut changes, "name", b.map(|k| &k.name), &after.name);
    push(
        &mut changes,
        "environment",
        b.map(|k| &k.environment),
        &after.environment,
    );
    push(&mut changes, "scopes", b.map(|k| &k.scopes), &after.scopes);
    push(
        &mut changes,
        "grant_all",
        b.map(|k| &k.grant_all),
        &after.grant_all,
    );
    push(
        &mut changes,
        "restrictions",
        b.map(|k| &k.restrictions),
        &after.restrictions,
    );
    push(
        &mut changes,
        "rate_limit",
        b.map(|k| &k.rate_limit),
        &after.rate_limit,
    );
    push(&mut changes, "meta", b.map(|k| &k.meta), &after.meta);
    push(
        &mut changes,
        "credits",
        b.map(|k| &k.credits),
        &after.credits,
    );
    push(
        &mut changes,
        "expires_at",
        b.map(|k| &k.expires_at),
        &after.expires_at,
    );
    push(
        &mut changes,
        "revoked_at",
        b.map(|k| &k.revoked_at),
        &after.revoked_at,
    );
    push(
        &mut changes,
        "replaced_by",
        b.map(|k| &k.replaced_by),
        &after.replaced_by,
    );
    if before.is_none() {
        // On creation, only what was set is worth recording.
        changes.retain(|c| !matches!(c.new_value.as_str(), "null" | "[]" | "{}" | "false"));
        changes.retain(|c| c.field != "restrictions" || !after.restrictions.is_empty());
    }
    changes
}

/// Which events to list, and where the page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// The account.
    pub account_id: crate::ids::AccountId,
    /// Largest page.
    pub page_size: u32,
    /// Position before which the page starts (newest first).
    pub before: Option<i64>,
}
