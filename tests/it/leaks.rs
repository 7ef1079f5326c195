//! Leaked keys: strings found in public are checked (format, checksum, store); live keys are
//! revoked with the source in the audit log, and each string gets its own answer.

use keyward::key::{Environment as KeyEnvironment, KeyFormat};
use keyward::proto::{self, LeakOutcome, VerifyCode};
use tonic::Code;

use crate::both_backends;
use crate::helpers::*;

both_backends!(leaked_keys_are_revoked_and_answered_one_by_one);

fn outcome(result: &proto::LeakedKeyResult) -> LeakOutcome {
    LeakOutcome::try_from(result.outcome).expect("known outcome")
}

async fn leaked_keys_are_revoked_and_answered_one_by_one(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut manage = server.manage().await;
    let (live, live_record) = server.create(key_request("acme", &["videos:read"])).await;
    let (old, old_record) = server.create(key_request("acme", &["videos:read"])).await;
    manage
        .revoke_key(server.root(proto::RevokeKeyRequest {
            id: old_record.id.clone(),
        }))
        .await
        .unwrap();
    let unknown = KeyFormat::default().generate(KeyEnvironment::Live);
    // The live key with one character changed: its checksum fails.
    let mut typo: Vec<char> = live.chars().collect();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == 'a' { 'b' } else { 'a' };
    let typo: String = typo.into_iter().collect();
    // A scanner's key: keys:write of its own account, none of acme's.
    let (scanner, _) = server.create(key_request("scanner", &["keys:write"])).await;

    let source = "https://paste.example/abc";
    let results = manage
        .report_leaked_keys(as_key(
            &scanner,
            proto::ReportLeakedKeysRequest {
                keys: vec![
                    live.clone(),
                    old.clone(),
                    unknown.secret.expose().to_owned(),
                    "hello world".into(),
                    typo,
                ],
                source: source.into(),
            },
        ))
        .await
        .expect("report")
        .into_inner()
        .results;
    let outcomes: Vec<LeakOutcome> = results.iter().map(outcome).collect();
    assert_eq!(
        outcomes,
        [
            LeakOutcome::RevokedNow,
            LeakOutcome::AlreadyRevoked,
            LeakOutcome::Unknown,
            LeakOutcome::NotAKey,
            LeakOutcome::NotAKey,
        ]
    );
    assert_eq!(results[0].key_id, live_record.id);
    assert_eq!(results[0].account_id, "acme");
    assert!(live.starts_with(&results[0].prefix));
    assert_eq!(results[1].key_id, old_record.id);
    assert!(results[2].key_id.is_empty() && results[3].key_id.is_empty());
    assert!(
        !format!("{results:?}").contains(&live),
        "never echoes a key"
    );
    assert_eq!(code(&server.verify(&live, &[]).await), VerifyCode::Revoked);

    // The source is in the revocation's audit event.
    let events = server.audit_events("acme").await;
    let revocation = events
        .iter()
        .find(|e| {
            e.action == proto::AuditAction::KeyRevoked as i32 && e.target_key_id == live_record.id
        })
        .expect("the revocation is audited");
    assert!(
        revocation
            .changes
            .iter()
            .any(|c| c.field == "revocation_reason" && c.new_value == format!("leaked: {source}")),
        "{revocation:?}"
    );

    // Reported again: already revoked.
    let again = manage
        .report_leaked_keys(server.root(proto::ReportLeakedKeysRequest {
            keys: vec![live.clone()],
            source: source.into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(outcome(&again[0]), LeakOutcome::AlreadyRevoked);

    // Who may report, and bounded input.
    let (reader, _) = server.create(key_request("scanner", &["keys:read"])).await;
    let status = manage
        .report_leaked_keys(as_key(
            &reader,
            proto::ReportLeakedKeysRequest {
                keys: vec![live.clone()],
                source: source.into(),
            },
        ))
        .await
        .expect_err("keys:read may not report");
    assert_eq!(status.code(), Code::PermissionDenied);
    for (request, field) in [
        (
            proto::ReportLeakedKeysRequest {
                keys: vec!["x".into(); 101],
                source: source.into(),
            },
            "keys",
        ),
        (
            proto::ReportLeakedKeysRequest {
                keys: vec!["x".repeat(513)],
                source: source.into(),
            },
            "keys[0]",
        ),
        (
            proto::ReportLeakedKeysRequest {
                keys: vec!["x".into()],
                source: " ".into(),
            },
            "source",
        ),
        (
            proto::ReportLeakedKeysRequest {
                keys: vec!["x".into()],
                source: format!("found next to {live}"),
            },
            "source",
        ),
    ] {
        let status = manage
            .report_leaked_keys(server.root(request))
            .await
            .expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), [field]);
    }
    // Debug output of a report never shows the strings.
    let debug = format!(
        "{:?}",
        proto::ReportLeakedKeysRequest {
            keys: vec![live.clone()],
            source: source.into(),
        }
    );
    assert!(!debug.contains(&live), "{debug}");
    server.stop().await;
}
