//! Unit tests of the parent module.

use super::*;
use crate::ids::KeyId;
use crate::scope::ScopeName;

fn key() -> ApiKey {
    test_key()
}

#[test]
fn patch_reports_only_real_changes() {
    let mut k = key();
    let patch = KeyPatch {
        name: Some("n".into()),
        scopes: Some(vec![ScopeName::parse("videos:write").unwrap()]),
        expires_at: Some(Some(Timestamp::from_micros(5))),
        ..KeyPatch::default()
    };
    assert_eq!(patch.apply(&mut k), vec!["scopes", "expires_at"]);
    assert_eq!(k.scopes, vec!["videos:write".to_owned()]);
    assert_eq!(k.expires_at, Some(Timestamp::from_micros(5)));
}

#[test]
fn retiring_a_key_for_rotation() {
    let mut k = key();
    k.expires_at = Some(Timestamp::from_micros(50));
    k.retire(
        &KeyId::trusted("key_new".into()),
        Some(Timestamp::from_micros(100)),
        Timestamp::from_micros(10),
    )
    .unwrap();
    assert_eq!(
        k.expires_at,
        Some(Timestamp::from_micros(50)),
        "never extends the expiry"
    );
    assert_eq!(k.replaced_by.as_deref(), Some("key_new"));
    assert!(
        k.retire(
            &KeyId::trusted("key_other".into()),
            None,
            Timestamp::from_micros(11)
        )
        .is_err(),
        "rotated once only"
    );
    let mut now = key();
    now.retire(
        &KeyId::trusted("key_new".into()),
        None,
        Timestamp::from_micros(10),
    )
    .unwrap();
    assert_eq!(
        now.revoked_at,
        Some(Timestamp::from_micros(10)),
        "no grace: revoked at once"
    );
    let mut expired = key();
    expired.expires_at = Some(Timestamp::from_micros(5));
    assert!(
        expired
            .retire(
                &KeyId::trusted("key_new".into()),
                None,
                Timestamp::from_micros(10)
            )
            .is_err()
    );
}

#[test]
fn retiring_and_expired_keys_cannot_be_extended() {
    let never = KeyPatch {
        expires_at: Some(None),
        ..KeyPatch::default()
    };
    let mut retiring = key();
    retiring
        .retire(
            &KeyId::trusted("key_new".into()),
            Some(Timestamp::from_micros(100)),
            Timestamp::from_micros(10),
        )
        .unwrap();
    assert!(retiring.update(&never, Timestamp::from_micros(20)).is_err());
    let later = KeyPatch {
        expires_at: Some(Some(Timestamp::from_micros(200))),
        ..KeyPatch::default()
    };
    assert!(retiring.update(&later, Timestamp::from_micros(20)).is_err());
    let sooner = KeyPatch {
        expires_at: Some(Some(Timestamp::from_micros(50))),
        ..KeyPatch::default()
    };
    assert_eq!(
        retiring
            .update(&sooner, Timestamp::from_micros(20))
            .unwrap(),
        vec!["expires_at"]
    );
    let rename = KeyPatch {
        name: Some("renamed".into()),
        ..KeyPatch::default()
    };
    assert!(retiring.update(&rename, Timestamp::from_micros(20)).is_ok());

    let mut expired = key();
    expired.expires_at = Some(Timestamp::from_micros(5));
    assert!(expired.update(&never, Timestamp::from_micros(10)).is_err());
    let mut revoked = key();
    revoked.revoked_at = Some(Timestamp::from_micros(1));
    assert!(revoked.update(&rename, Timestamp::from_micros(10)).is_err());
}

#[test]
fn activity() {
    let mut k = key();
    assert!(k.is_active(Timestamp::from_micros(10)));
    k.expires_at = Some(Timestamp::from_micros(10));
    assert!(k.is_expired(Timestamp::from_micros(10)));
    assert!(!k.is_expired(Timestamp::from_micros(9)));
    k.expires_at = None;
    k.revoked_at = Some(Timestamp::from_micros(3));
    assert!(!k.is_active(Timestamp::from_micros(4)));
}
