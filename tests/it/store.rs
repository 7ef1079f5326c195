//! Store conformance: the same tests against SQLite and PostgreSQL, straight through the
//! `Store` trait, so both backends are held to one contract.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyward::error::Error;
use keyward::ids::{AccountId, KeyId};
use keyward::key::{Environment, KeyFormat};
use keyward::model::{ApiKey, KeyListQuery, KeyPatch, NewKey, Restrictions};
use keyward::restriction::parse_cidr;
use keyward::store::{self, DatabaseUrl, Store};
use keyward::time::Timestamp;

use crate::both_backends;
use crate::helpers::{Backend, fresh_database};

both_backends!(
    insert_and_look_up,
    first_key_is_inserted_once,
    active_limit_counts_only_active_keys,
    list_pages_filters_and_orders,
    update_and_revoke,
    migrations_are_idempotent,
    portal_links_open_once_before_they_expire,
);

/// A well-formed key id no key has.
fn missing() -> KeyId {
    KeyId::parse("key_missing000000000000000").unwrap()
}

async fn open(backend: Backend) -> (Arc<dyn Store>, Option<tempfile::TempDir>) {
    let (url, dir) = fresh_database(backend).await;
    let store = store::connect(&DatabaseUrl::new(url))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    (store, dir)
}

fn new_key(account: &str, now: Timestamp) -> NewKey {
    let generated = KeyFormat::default().generate(Environment::Test);
    NewKey {
        digest: generated.digest,
        key: ApiKey {
            scopes: vec!["videos:read".into(), "members:email".into()],
            restrictions: Restrictions {
                allowed_cidrs: vec![parse_cidr("10.0.0.0/8").unwrap()],
                ..Restrictions::default()
            },
            meta: BTreeMap::from([("plan".to_owned(), "pro".to_owned())]),
            expires_at: Some(Timestamp::from_micros(now.micros() + 3_600_000_000)),
            previous_key_id: Some(KeyId::generate()),
            created_by: Some(KeyId::generate()),
            ..ApiKey::issued(
                AccountId::parse(account).unwrap(),
                "conformance",
                generated.display_prefix,
                Environment::Test,
                now,
            )
        },
    }
}

async fn insert_and_look_up(backend: Backend) {
    let (store, _dir) = open(backend).await;
    let now = Timestamp::now();
    let new = new_key("acme", now);
    let stored = store.insert_key(&new, 10, now, None).await.expect("insert");
    assert_eq!(stored.key, new.key, "every field round-trips exactly");
    assert_eq!(stored.digest, new.digest);
    let by_digest = store
        .key_by_digest(&new.digest)
        .await
        .unwrap()
        .expect("found by digest");
    assert_eq!(by_digest.key, keyward::model::CachedKey::from(&stored.key));
    assert!(!by_digest.account_disabled);
    let by_id = store
        .key_by_id(&new.key.id)
        .await
        .unwrap()
        .expect("found by id");
    assert_eq!(by_id, stored);
    let other = KeyFormat::default().generate(Environment::Test);
    assert_eq!(store.key_by_digest(&other.digest).await.unwrap(), None);
    assert_eq!(store.key_by_id(&missing()).await.unwrap(), None);

    // The same digest or id twice is refused by the schema.
    let mut dup = new_key("acme", now);
    dup.digest = new.digest;
    assert!(matches!(
        store.insert_key(&dup, 10, now, None).await,
        Err(Error::AlreadyExists(_))
    ));
    store.close().await;
}

async fn first_key_is_inserted_once(backend: Backend) {
    let (store, _dir) = open(backend).await;
    let now = Timestamp::now();
    assert!(store.insert_first_key(&new_key("root", now)).await.unwrap());
    assert!(!store.insert_first_key(&new_key("root", now)).await.unwrap());
    store.close().await;
}

async fn active_limit_counts_only_active_keys(backend: Backend) {
    let (store, _dir) = open(backend).await;
    let now = Timestamp::now();
    let first = store
        .insert_key(&new_key("acme", now), 2, now, None)
        .await
        .unwrap();
    let mut expired = new_key("acme", now);
    expired.key.expires_at = Some(Timestamp::from_micros(now.micros() - 1));
    store
        .insert_key(&expired, 2, now, None)
        .await
        .expect("expired keys do not count");
    store
        .insert_key(&new_key("acme", now), 2, now, None)
        .await
        .unwrap();
    let refused = store.insert_key(&new_key("acme", now), 2, now, None).await;
    assert!(
        matches!(refused, Err(Error::LimitReached { .. })),
        "{refused:?}"
    );
    store.revoke_key(&first.key.id, now, None).await.unwrap();
    store
        .insert_key(&new_key("acme", now), 2, now, None)
        .await
        .expect("revoked keys do not count");
    store.close().await;
}

async fn list_pages_filters_and_orders(backend: Backend) {
    let (store, _dir) = open(backend).await;
    let now = Timestamp::now();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            store
                .insert_key(&new_key("acme", now), 100, now, None)
                .await
                .unwrap()
                .key
                .id,
        );
    }
    store
        .insert_key(&new_key("other", now), 100, now, None)
        .await
        .unwrap();
    store.revoke_key(&ids[0], now, None).await.unwrap();

    let query = |after, include_revoked| KeyListQuery {
        account_id: keyward::ids::AccountId::parse("acme").unwrap(),
        include_revoked,
        unused_since: None,
        page_size: 2,
        after,
        by_usage: None,
    };
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_keys(&query(after, true)).await.unwrap();
        all.extend(page.items.iter().map(|k| k.id.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(all, ids);
    let active = store.list_keys(&query(None, false)).await.unwrap();
    assert_eq!(
        active.items.first().map(|k| k.id.clone()),
        Some(ids[1].clone())
    );
    assert!(
        active
            .items
            .iter()
            .all(|k| k.account_id == "acme" && !k.is_revoked())
    );
    store.close().await;
}

async fn update_and_revoke(backend: Backend) {
    let (store, _dir) = open(backend).await;
    let now = Timestamp::now();
    let stored = store
        .insert_key(&new_key("acme", now), 10, now, None)
        .await
        .unwrap();
    let later = Timestamp::from_micros(now.micros() + 5);
    let patch = KeyPatch {
        name: Some("renamed".into()),
        scopes: Some(vec![
            keyward::scope::ScopeName::parse("videos:write").unwrap(),
        ]),
        expires_at: Some(None),
        ..KeyPatch::default()
    };
    let updated = store
        .update_key(&stored.key.id, &patch, later, None)
        .await
        .unwrap();
    assert_eq!(updated.key.name, "renamed");
    assert_eq!(updated.key.scopes, vec!["videos:write".to_owned()]);
    assert_eq!(updated.key.expires_at, None);
    assert_eq!(updated.key.updated_at, later);
    assert_eq!(updated.digest, stored.digest);
    let reread = store.key_by_id(&stored.key.id).await.unwrap().unwrap();
    assert_eq!(reread, updated);

    let revoked = store.revoke_key(&stored.key.id, later, None).await.unwrap();
    assert_eq!(revoked.key.revoked_at, Some(later));
    let again = store
        .revoke_key(
            &stored.key.id,
            Timestamp::from_micros(later.micros() + 9),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        again.key.revoked_at,
        Some(later),
        "revocation keeps its first time"
    );
    let refused = store.update_key(&stored.key.id, &patch, later, None).await;
    assert!(matches!(refused, Err(Error::FailedPrecondition(_))));
    let absent = store.update_key(&missing(), &patch, later, None).await;
    assert!(matches!(absent, Err(Error::NotFound(_))));
    assert!(matches!(
        store.revoke_key(&missing(), later, None).await,
        Err(Error::NotFound(_))
    ));
    store.close().await;
}

async fn migrations_are_idempotent(backend: Backend) {
    let (store, _dir) = open(backend).await;
    store.migrate().await.expect("a second migrate is a no-op");
    store.close().await;
}

/// A portal link opens once, only before its link expiry; a session is served while it is
/// live and not idle, and not after it is revoked.
async fn portal_links_open_once_before_they_expire(backend: Backend) {
    use keyward::portal::{PortalSession, token_hash};
    use std::time::Duration;
    let (store, _dir) = open(backend).await;
    let now = Timestamp::now();
    let session = |id: &str, link_expires_at: Timestamp| PortalSession {
        id: id.into(),
        account_id: AccountId::parse("acme").unwrap(),
        display_name: "Ada".into(),
        return_url: "https://app.acme.example/".into(),
        permissions: Default::default(),
        branding: Default::default(),
        created_by: "key_x".into(),
        created_at: now,
        link_expires_at,
        opened_at: None,
        last_seen_at: None,
        expires_at: now.saturating_add(Duration::from_secs(3_600)),
        revoked_at: None,
    };
    let past = Timestamp::from_micros(now.micros() - 1_000_000);
    let soon = now.saturating_add(Duration::from_secs(300));
    store
        .insert_portal_session(&session("ps_old", past), &token_hash("old-link"))
        .await
        .unwrap();
    store
        .insert_portal_session(&session("ps_new", soon), &token_hash("new-link"))
        .await
        .unwrap();
    // Expired: refused.
    let opened = store
        .open_portal_session(&token_hash("old-link"), &token_hash("s-old"), now)
        .await
        .unwrap();
    assert!(opened.is_none());
    // In time: once.
    let opened = store
        .open_portal_session(&token_hash("new-link"), &token_hash("s-new"), now)
        .await
        .unwrap()
        .expect("opens");
    assert_eq!(opened.id, "ps_new");
    assert_eq!(opened.opened_at, Some(now));
    let again = store
        .open_portal_session(&token_hash("new-link"), &token_hash("s-other"), now)
        .await
        .unwrap();
    assert!(again.is_none(), "a link opens once");
    // Served while live; not when idle since before its last use; not after revocation.
    let idle_since = Timestamp::from_micros(now.micros() - 1);
    let later = now.saturating_add(Duration::from_secs(1));
    assert!(
        store
            .touch_portal_session(&token_hash("s-new"), later, idle_since)
            .await
            .unwrap()
            .is_some()
    );
    let much_later = now.saturating_add(Duration::from_secs(100));
    assert!(
        store
            .touch_portal_session(&token_hash("s-new"), much_later, much_later)
            .await
            .unwrap()
            .is_none(),
        "idle"
    );
    let other = AccountId::parse("globex").unwrap();
    assert!(
        store
            .revoke_portal_session("ps_new", Some(&other), later)
            .await
            .unwrap()
            .is_none(),
        "another account's session is not revoked"
    );
    let revoked = store
        .revoke_portal_session("ps_new", None, later)
        .await
        .unwrap()
        .expect("revoked");
    assert_eq!(revoked.revoked_at, Some(later));
    assert!(
        store
            .touch_portal_session(&token_hash("s-new"), later, idle_since)
            .await
            .unwrap()
            .is_none()
    );
    let listed = store
        .list_portal_sessions(&AccountId::parse("acme").unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
}
