//! Usage over time: every decision (Verify, `Check`, forward auth) counted per key, minute and
//! outcome, written in batches, answered by GetUsage in one call — exact, also summed over
//! replicas sharing one PostgreSQL and after a graceful stop.

use std::time::Duration;

use keyward::proto::envoy::service::auth::v3::{AttributeContext, CheckRequest, attribute_context};
use keyward::proto::{self, GetUsageRequest, UsageGranularity, VerifyCode, get_usage_request};
use keyward::usage::Granularity;
use tonic::Code;

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    every_decision_counts_per_key_and_outcome,
    usage_questions_are_checked_and_scoped,
    retention_deletes_old_buckets_only,
    the_json_api_answers_usage_in_the_same_shape,
    keys_list_most_used_first,
);

fn hour_ago() -> Option<prost_types::Timestamp> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Some(prost_types::Timestamp {
        seconds: now - 3_600,
        nanos: 0,
    })
}

fn of_key(id: &str) -> GetUsageRequest {
    GetUsageRequest {
        target: Some(get_usage_request::Target::KeyId(id.into())),
        start_time: hour_ago(),
        ..Default::default()
    }
}

fn of_account(id: &str) -> GetUsageRequest {
    GetUsageRequest {
        target: Some(get_usage_request::Target::AccountId(id.into())),
        start_time: hour_ago(),
        ..Default::default()
    }
}

fn no_key_usage() -> GetUsageRequest {
    GetUsageRequest {
        target: Some(get_usage_request::Target::NoKey(true)),
        start_time: hour_ago(),
        ..Default::default()
    }
}

/// Outcome name → count of a series.
fn counts(series: &proto::UsageSeries) -> Vec<(VerifyCode, u64)> {
    series
        .counts
        .iter()
        .map(|c| (VerifyCode::try_from(c.code).unwrap(), c.count))
        .collect()
}

async fn usage(server: &TestServer, request: GetUsageRequest) -> proto::GetUsageResponse {
    server
        .manage()
        .await
        .get_usage(server.root(request))
        .await
        .expect("GetUsage answers")
        .into_inner()
}

/// Polls until the single series GetUsage answers for `request` totals `total`.
async fn total_reaches(
    server: &TestServer,
    request: GetUsageRequest,
    total: u64,
) -> proto::UsageSeries {
    eventually(
        Duration::from_secs(10),
        "the usage counts to be written",
        || {
            let request = request.clone();
            async move {
                let answer = usage(server, request).await;
                let series = answer.series.into_iter().next()?;
                (series.total == total).then_some(series)
            }
        },
    )
    .await
}

fn check_request(key: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                time: None,
                http: Some(attribute_context::HttpRequest {
                    method: "GET".into(),
                    path: "/v1/videos".into(),
                    headers: [("authorization".to_owned(), format!("Bearer {key}"))].into(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    }
}

/// Verify, `Check` and forward auth decisions count per key and outcome, denials of found keys
/// too; missing, malformed and unknown keys count for the service only. An account's keys sum
/// up, or come one series per key in pages; after more flushes the counts stay exact.
async fn every_decision_counts_per_key_and_outcome(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.usage_flush_interval = Duration::from_millis(50)
    })
    .await;
    let (a, a_record) = server.create(key_request("acme", &["videos:read"])).await;
    let (b, b_record) = server.create(key_request("acme", &["videos:read"])).await;
    let (other, other_record) = server.create(key_request("globex", &["videos:read"])).await;
    for _ in 0..5 {
        assert_eq!(
            code(&server.verify(&a, &["videos:read"]).await),
            VerifyCode::Valid
        );
    }
    for _ in 0..2 {
        assert_eq!(
            code(&server.verify(&a, &["videos:write"]).await),
            VerifyCode::InsufficientScope
        );
    }
    let check = server
        .ext_authz()
        .await
        .check(check_request(&a))
        .await
        .unwrap();
    assert_eq!(check.into_inner().status.unwrap().code, 0);
    let auth = http(
        server.http_addr,
        "GET",
        "/auth",
        &[
            ("x-api-key", &a),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/v1/videos"),
        ],
    )
    .await;
    assert_eq!(auth.status, 200, "{auth:?}");
    for _ in 0..3 {
        assert_eq!(code(&server.verify(&b, &[]).await), VerifyCode::Valid);
    }
    server
        .manage()
        .await
        .revoke_key(server.root(proto::RevokeKeyRequest {
            id: b_record.id.clone(),
        }))
        .await
        .unwrap();
    assert_eq!(code(&server.verify(&b, &[]).await), VerifyCode::Revoked);
    assert_eq!(code(&server.verify(&other, &[]).await), VerifyCode::Valid);
    let unknown = keyward::key::KeyFormat::default()
        .generate(keyward::key::Environment::Live)
        .secret
        .expose()
        .to_owned();
    assert_eq!(
        code(&server.verify(&unknown, &[]).await),
        VerifyCode::NotFound
    );
    assert_eq!(
        code(&server.verify("kw_live_nonsense", &[]).await),
        VerifyCode::Malformed
    );

    let a_usage = total_reaches(&server, of_key(&a_record.id), 9).await;
    assert_eq!(a_usage.key_id, a_record.id);
    assert_eq!(
        counts(&a_usage),
        vec![(VerifyCode::Valid, 7), (VerifyCode::InsufficientScope, 2)]
    );
    let acme = total_reaches(&server, of_account("acme"), 13).await;
    assert_eq!(acme.key_id, "");
    assert_eq!(
        counts(&acme),
        vec![
            (VerifyCode::Valid, 10),
            (VerifyCode::Revoked, 1),
            (VerifyCode::InsufficientScope, 2)
        ]
    );
    // Every bucket sums to its counts, and the buckets to the series.
    assert!(!acme.buckets.is_empty());
    for bucket in &acme.buckets {
        assert_eq!(
            bucket.total,
            bucket.counts.iter().map(|c| c.count).sum::<u64>()
        );
    }
    assert_eq!(acme.buckets.iter().map(|b| b.total).sum::<u64>(), 13);
    let globex = total_reaches(&server, of_account("globex"), 1).await;
    assert_eq!(counts(&globex), vec![(VerifyCode::Valid, 1)]);
    assert_eq!(
        total_reaches(&server, of_key(&other_record.id), 1)
            .await
            .total,
        1
    );

    // Grouped by key, one key a page: both keys, in id order, then no more.
    let mut grouped = of_account("acme");
    grouped.group_by_key = true;
    grouped.page_size = 1;
    let first = usage(&server, grouped.clone()).await;
    assert_eq!(first.series.len(), 1);
    assert!(!first.next_page_token.is_empty());
    grouped.page_token = first.next_page_token.clone();
    let second = usage(&server, grouped.clone()).await;
    assert_eq!(second.series.len(), 1);
    assert!(second.next_page_token.is_empty());
    let mut by_key: Vec<(String, u64)> = first
        .series
        .iter()
        .chain(&second.series)
        .map(|s| (s.key_id.clone(), s.total))
        .collect();
    let mut expected = vec![(a_record.id.clone(), 9), (b_record.id.clone(), 4)];
    expected.sort();
    assert_eq!(by_key, expected);
    // All at once.
    grouped.page_size = 0;
    grouped.page_token.clear();
    let all = usage(&server, grouped).await;
    by_key = all
        .series
        .iter()
        .map(|s| (s.key_id.clone(), s.total))
        .collect();
    assert_eq!(by_key, expected);
    assert!(all.next_page_token.is_empty());

    // Only some outcomes.
    let mut refused = of_account("acme");
    refused.outcomes = vec![
        VerifyCode::InsufficientScope as i32,
        VerifyCode::Revoked as i32,
    ];
    let refused = usage(&server, refused).await;
    assert_eq!(refused.series[0].total, 3);

    // Exact: flushing again adds nothing; hour and day buckets hold the same counts.
    server.service.flush_usage().await.unwrap();
    assert_eq!(
        usage(&server, of_key(&a_record.id)).await.series[0].total,
        9
    );
    for granularity in [
        UsageGranularity::Minute,
        UsageGranularity::Hour,
        UsageGranularity::Day,
    ] {
        let mut request = of_account("acme");
        request.granularity = granularity as i32;
        let answer = usage(&server, request).await;
        assert_eq!(answer.granularity, granularity as i32);
        assert_eq!(answer.series[0].total, 13, "{granularity:?}");
    }
    // The service-wide decisions without a key (unknown, malformed) are no account's; the
    // operator reads them on their own.
    let no_key = total_reaches(&server, no_key_usage(), 2).await;
    assert_eq!(no_key.key_id, "");
    assert_eq!(
        counts(&no_key),
        vec![(VerifyCode::Malformed, 1), (VerifyCode::NotFound, 1)]
    );
    let decisions: u64 = 16;
    assert_eq!(server.service.usage_counter().written(), decisions);
    // Batched: a handful of statements for all of them.
    assert!(server.service.usage_counter().statements() <= 6 * 3);
    server.stop().await;
}

/// Bad questions name the field; an account key reads its own account's usage only.
async fn usage_questions_are_checked_and_scoped(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, acme_key) = server.create(key_request("acme", &["videos:read"])).await;
    let (reader, _) = server.create(key_request("globex", &["keys:read"])).await;
    let mut manage = server.manage().await;
    let refused = |request: GetUsageRequest| {
        let mut manage = manage.clone();
        let root = server.root(request);
        async move { manage.get_usage(root).await.unwrap_err() }
    };
    let mut no_start = of_key(&acme_key.id);
    no_start.start_time = None;
    let e = refused(no_start).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&e), vec!["start_time"]);
    let e = refused(GetUsageRequest {
        start_time: hour_ago(),
        ..Default::default()
    })
    .await;
    assert_eq!(violated_fields(&e), vec!["account_id"]);
    let mut bad = of_account("acme");
    bad.granularity = 9;
    bad.outcomes = vec![99];
    let e = refused(bad).await;
    assert_eq!(violated_fields(&e), vec!["granularity", "outcomes"]);
    let mut too_fine = of_account("acme");
    too_fine.start_time = Some(prost_types::Timestamp {
        seconds: 0,
        nanos: 0,
    });
    too_fine.granularity = UsageGranularity::Minute as i32;
    let e = refused(too_fine).await;
    assert_eq!(violated_fields(&e), vec!["start_time"]);
    assert!(e.message().contains("buckets"), "{e:?}");
    let mut grouped_key = of_key(&acme_key.id);
    grouped_key.group_by_key = true;
    assert_eq!(
        violated_fields(&refused(grouped_key).await),
        vec!["group_by_key"]
    );
    let mut backwards = of_account("acme");
    backwards.end_time = Some(prost_types::Timestamp {
        seconds: 10,
        nanos: 0,
    });
    assert_eq!(violated_fields(&refused(backwards).await), vec!["end_time"]);
    // Decisions about no stored key: alone.
    let mut no_key_false = no_key_usage();
    no_key_false.target = Some(get_usage_request::Target::NoKey(false));
    assert_eq!(
        violated_fields(&refused(no_key_false).await),
        vec!["account_id"]
    );
    let mut no_key_grouped = no_key_usage();
    no_key_grouped.group_by_key = true;
    assert_eq!(
        violated_fields(&refused(no_key_grouped).await),
        vec!["group_by_key"]
    );

    // globex's reader: its own account yes, acme's key and account no.
    let own = manage
        .get_usage(as_key(&reader, of_account("globex")))
        .await
        .expect("own account");
    assert_eq!(own.into_inner().series[0].total, 0);
    for request in [of_account("acme"), of_key(&acme_key.id)] {
        let e = manage
            .get_usage(as_key(&reader, request))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    // Decisions about no stored key: root only.
    let e = manage
        .get_usage(as_key(&reader, no_key_usage()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = manage
        .get_usage(server.root(of_key("key_0000000000000000000000")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    server.stop().await;
}

/// Rows past their width's retention are deleted; wider buckets kept longer still answer.
async fn retention_deletes_old_buckets_only(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.usage_flush_interval = Duration::from_secs(3_600)
    })
    .await;
    let (a, a_record) = server.create(key_request("acme", &["videos:read"])).await;
    for _ in 0..4 {
        assert_eq!(code(&server.verify(&a, &[]).await), VerifyCode::Valid);
    }
    assert_eq!(server.service.flush_usage().await.unwrap(), 4);
    let retention = vec![
        (Granularity::Minute, Duration::from_secs(3_600)),
        (Granularity::Hour, Duration::from_secs(90 * 86_400)),
        (Granularity::Day, Duration::from_secs(730 * 86_400)),
    ];
    // Now: nothing is old.
    let now = keyward::time::Timestamp::now();
    assert_eq!(
        server.service.prune_usage(now, &retention).await.unwrap(),
        0
    );
    // Three hours on: the minute rows go, the hour and day rows stay.
    let later = now.saturating_add(Duration::from_secs(3 * 3_600));
    assert!(server.service.prune_usage(later, &retention).await.unwrap() >= 1);
    let mut minutes = of_key(&a_record.id);
    minutes.granularity = UsageGranularity::Minute as i32;
    assert_eq!(usage(&server, minutes).await.series[0].total, 0);
    let mut hours = of_key(&a_record.id);
    hours.granularity = UsageGranularity::Hour as i32;
    assert_eq!(usage(&server, hours).await.series[0].total, 4);
    server.stop().await;
}

/// Three replicas on one PostgreSQL count the same key; each writes its counts when it stops
/// gracefully (the flush interval is far away), and the stored counts are their sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_sum_exactly_after_a_graceful_stop() {
    let (url, _) = fresh_database(Backend::Postgres).await;
    let config = || {
        let mut c = test_config(&url);
        c.usage_flush_interval = Duration::from_secs(3_600);
        c
    };
    let replicas = vec![
        TestServer::start_on(config()).await,
        TestServer::start_on(config()).await,
        TestServer::start_on(config()).await,
    ];
    let (key, record) = replicas[0]
        .create(key_request("acme", &["videos:read"]))
        .await;
    let mut expected = 0;
    for (i, replica) in replicas.iter().enumerate() {
        for _ in 0..(i + 1) * 7 {
            assert_eq!(code(&replica.verify(&key, &[]).await), VerifyCode::Valid);
            expected += 1;
        }
    }
    // Nothing written before the stop.
    assert_eq!(
        usage(&replicas[0], of_key(&record.id)).await.series[0].total,
        0
    );
    for replica in replicas {
        replica.stop().await;
    }
    let reader = TestServer::start_on(config()).await;
    let series = usage(&reader, of_key(&record.id)).await.series.remove(0);
    assert_eq!(series.total, expected);
    assert_eq!(counts(&series), vec![(VerifyCode::Valid, expected)]);
    reader.stop().await;
}

/// `GET /v1/api-keys/{id}/usage` and `GET /v1/usage?…` answer what GetUsage answers, camelCase;
/// `GET /v1/usage` without a query string stays the calling key's own check; bad parameters
/// are named.
async fn the_json_api_answers_usage_in_the_same_shape(backend: Backend) {
    // Written when the test says (a background write could still be on its way otherwise).
    let server = TestServer::start_with(backend, |c| {
        c.usage_flush_interval = Duration::from_secs(3_600)
    })
    .await;
    let (a, a_record) = server.create(key_request("acme", &["videos:read"])).await;
    let (reader, _) = server.create(key_request("acme", &["keys:read"])).await;
    for _ in 0..3 {
        assert_eq!(
            code(&server.verify(&a, &["videos:read"]).await),
            VerifyCode::Valid
        );
    }
    assert_eq!(
        code(&server.verify(&a, &["videos:write"]).await),
        VerifyCode::InsufficientScope
    );
    server.service.flush_usage().await.unwrap();
    let get = |target: String, key: String| {
        let addr = server.http_addr;
        async move {
            let bearer = format!("Bearer {key}");
            http(addr, "GET", &target, &[("authorization", &bearer)]).await
        }
    };
    let answer = get(
        format!(
            "/v1/api-keys/{}/usage?startTime=1h&granularity=hour",
            a_record.id
        ),
        reader.clone(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["data"]["granularity"], "hour");
    let series = &body["data"]["series"][0];
    assert_eq!(series["keyId"], a_record.id.as_str());
    assert_eq!(series["total"], 4);
    assert_eq!(
        series["counts"],
        serde_json::json!([{"code": "VALID", "count": 3}, {"code": "INSUFFICIENT_SCOPE", "count": 1}])
    );
    assert!(body["nextPageToken"].is_null());
    // The reader's own account by default; grouped by key.
    let grouped = get(
        "/v1/usage?startTime=1h&groupByKey=true".into(),
        reader.clone(),
    )
    .await;
    assert_eq!(grouped.status, 200, "{}", grouped.body);
    let grouped = grouped.json();
    let series = grouped["data"]["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "only the verified key had decisions");
    assert_eq!(series[0]["keyId"], a_record.id.as_str());
    // Only refusals.
    let refused = get(
        "/v1/usage?accountId=acme&startTime=1h&outcomes=INSUFFICIENT_SCOPE,REVOKED".into(),
        reader.clone(),
    )
    .await
    .json();
    assert_eq!(refused["data"]["series"][0]["total"], 1);
    assert!(refused["data"]["series"][0]["keyId"].is_null());
    // Bad parameters, each named.
    let bad = get(
        "/v1/usage?startTime=yesterday&granularity=week".into(),
        reader.clone(),
    )
    .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    let fields: Vec<String> = bad.json()["fieldViolations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, vec!["startTime", "granularity"]);
    let unknown = get("/v1/usage?startTime=1h&bogus=1".into(), reader.clone()).await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    // Another account's usage is not the reader's.
    let other = get(
        "/v1/usage?accountId=globex&startTime=1h".into(),
        reader.clone(),
    )
    .await;
    assert_eq!(other.status, 403, "{}", other.body);
    // Decisions about no stored key: the operator's, not an account key's; never with a key.
    assert_eq!(
        code(&server.verify("kw_live_nonsense", &[]).await),
        VerifyCode::Malformed
    );
    server.service.flush_usage().await.unwrap();
    let no_key = get(
        "/v1/usage?noKey=true&startTime=1h".into(),
        server.root_key.clone(),
    )
    .await;
    assert_eq!(no_key.status, 200, "{}", no_key.body);
    assert_eq!(
        no_key.json()["data"]["series"][0]["counts"],
        serde_json::json!([{"code": "MALFORMED", "count": 1}])
    );
    let not_yours = get("/v1/usage?noKey=true&startTime=1h".into(), reader.clone()).await;
    assert_eq!(not_yours.status, 403, "{}", not_yours.body);
    let both = get(
        format!("/v1/api-keys/{}/usage?noKey=true&startTime=1h", a_record.id),
        server.root_key.clone(),
    )
    .await;
    assert_eq!(both.status, 422, "{}", both.body);
    // Without a query string: the key checks itself, as before.
    let own = get("/v1/usage".into(), a.clone()).await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.json()["data"]["apiKey"]["id"], a_record.id.as_str());
    server.stop().await;
}

/// ListKeys with `order_by: "usage desc"`: the most used keys first with their counts, page by
/// page, unused keys last; a bad order is named. The JSON API the same.
async fn keys_list_most_used_first(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.usage_flush_interval = Duration::from_secs(3_600)
    })
    .await;
    let mut ids = Vec::new();
    for uses in [1, 5, 3, 0] {
        let (key, record) = server.create(key_request("acme", &["videos:read"])).await;
        for _ in 0..uses {
            assert_eq!(code(&server.verify(&key, &[]).await), VerifyCode::Valid);
        }
        ids.push(record.id);
    }
    server.service.flush_usage().await.unwrap();
    let mut manage = server.manage().await;
    let list = |page_token: String| proto::ListKeysRequest {
        account_id: "acme".into(),
        page_size: 2,
        page_token,
        order_by: "usage desc".into(),
        ..Default::default()
    };
    let first = manage
        .list_keys(server.root(list(String::new())))
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<&str> = first.api_keys.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(listed, vec![ids[1].as_str(), ids[2].as_str()]);
    assert_eq!(first.usage[&ids[1]], 5);
    assert_eq!(first.usage[&ids[2]], 3);
    assert!(!first.next_page_token.is_empty());
    let second = manage
        .list_keys(server.root(list(first.next_page_token)))
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<&str> = second.api_keys.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(listed, vec![ids[0].as_str(), ids[3].as_str()]);
    assert_eq!(second.usage[&ids[0]], 1);
    assert_eq!(second.usage[&ids[3]], 0);
    assert!(second.next_page_token.is_empty());
    // Oldest first without an order: no counts.
    let plain = manage
        .list_keys(server.root(proto::ListKeysRequest {
            account_id: "acme".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plain.api_keys[0].id, ids[0]);
    assert!(plain.usage.is_empty());
    // A bad order, and a usage period without an order, are named.
    let e = manage
        .list_keys(server.root(proto::ListKeysRequest {
            account_id: "acme".into(),
            order_by: "popularity".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), vec!["order_by"]);
    let e = manage
        .list_keys(server.root(proto::ListKeysRequest {
            account_id: "acme".into(),
            usage_since: hour_ago(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), vec!["usage_since"]);
    // The JSON API: the single most used key of the last day.
    let bearer = format!("Bearer {}", server.root_key);
    let top = http(
        server.http_addr,
        "GET",
        "/v1/api-keys?accountId=acme&orderBy=usage%20desc&usageSince=1d&pageSize=1",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(top.status, 200, "{}", top.body);
    let top = top.json();
    assert_eq!(top["data"][0]["id"], ids[1].as_str());
    assert_eq!(top["usage"][&ids[1]], 5);
    assert!(top["nextPageToken"].is_string());
    server.stop().await;
}
