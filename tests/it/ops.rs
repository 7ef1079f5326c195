//! Operations: gRPC health per service, server reflection (v1 and v1alpha), and graceful
//! shutdown (NOT_SERVING first, in-flight calls finish).

use std::sync::atomic::Ordering;
use std::time::Duration;

use keyward::proto::VerifyCode;
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::both_backends;
use crate::helpers::{Backend, TestServer, code, eventually, key_request};

const SERVICES: [&str; 3] = ["", "keyward.v1.VerifyService", "keyward.v1.ManageService"];

both_backends!(
    health_is_serving,
    shutdown_reports_not_serving_and_drains,
    metrics_count_verifications_and_cache
);

fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
}

async fn metrics_count_verifications_and_cache(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (secret, _) = server.create(key_request("acme", &["videos:read"])).await;
    for _ in 0..3 {
        assert_eq!(
            code(&server.verify(&secret, &["videos:read"]).await),
            VerifyCode::Valid
        );
    }
    assert_eq!(
        code(&server.verify(&secret, &["billing:write"]).await),
        VerifyCode::InsufficientScope
    );
    assert_eq!(
        code(&server.verify("kw_live_nope", &[]).await),
        VerifyCode::Malformed
    );
    let m = server.metrics().await;
    assert_eq!(
        value(&m, r#"keyward_verifications_total{code="VALID"}"#),
        3.0
    );
    assert_eq!(
        value(
            &m,
            r#"keyward_verifications_total{code="INSUFFICIENT_SCOPE"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&m, r#"keyward_verifications_total{code="MALFORMED"}"#),
        1.0
    );
    assert_eq!(
        value(&m, r#"keyward_verifications_total{code="REVOKED"}"#),
        0.0
    );
    assert_eq!(value(&m, "keyward_verify_duration_seconds_count"), 5.0);
    assert_eq!(
        value(&m, r#"keyward_verify_duration_seconds_bucket{le="+Inf"}"#),
        5.0
    );
    // One lookup for the root key that created the key, one for the key itself.
    assert_eq!(value(&m, "keyward_store_lookups_total"), 2.0);
    assert!(value(&m, "keyward_cache_hits_total") >= 3.0);
    assert_eq!(
        value(&m, "keyward_cache_entries"),
        2.0,
        "the root key and the verified key are cached"
    );
    for series in [
        "keyward_cache_misses_total",
        "keyward_cache_negative_hits_total",
        "keyward_cache_entries",
        "keyward_store_errors_total",
        "keyward_listener_reconnects_total",
    ] {
        value(&m, series);
    }
    // The raw key is nowhere in the metrics.
    assert!(!m.contains(&secret[16..]));
    server.stop().await;
}

async fn health_is_serving(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in SERVICES {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    server.stop().await;
}

async fn shutdown_reports_not_serving_and_drains(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut health = HealthClient::new(server.channel().await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "keyward.v1.VerifyService".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first: HealthCheckResponse = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    let stopping = tokio::spawn(server.stop());
    let next: HealthCheckResponse = watch
        .next()
        .await
        .expect("a status update")
        .expect("status");
    assert_eq!(next.status(), ServingStatus::NotServing);
    drop(watch);
    stopping.await.expect("server stopped cleanly");
}

/// 50 verifies are held inside the server (their store lookup waits on a table lock) when
/// shutdown starts; every one of them is answered before the server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_calls_finish_during_shutdown() {
    use sqlx::Connection;
    let server = TestServer::start(Backend::Postgres).await;
    let (secret, _) = server.create(key_request("acme", &["videos:read"])).await;
    let mut blocker = sqlx::PgConnection::connect(&server.database_url)
        .await
        .unwrap();
    let mut lock = blocker.begin().await.unwrap();
    sqlx::query("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();

    let verifier = server.verifier().await;
    let in_flight: Vec<_> = (0..50)
        .map(|_| {
            let mut v = verifier.clone();
            let request = crate::helpers::verify_request(&secret, &["videos:read"]);
            tokio::spawn(async move { v.verify(request).await })
        })
        .collect();
    let stats = server.service.clone();
    eventually(
        Duration::from_secs(10),
        "50 verifies waiting in the server",
        || {
            let misses = stats.cache().stats().misses.load(Ordering::Relaxed);
            async move { (misses >= 50).then_some(()) }
        },
    )
    .await;

    let mut health = HealthClient::new(server.channel().await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    let stopping = tokio::spawn(server.stop());
    assert_eq!(
        watch.next().await.unwrap().unwrap().status(),
        ServingStatus::NotServing
    );
    drop(watch);
    assert!(
        !stopping.is_finished(),
        "the server must wait for in-flight calls"
    );

    lock.commit().await.unwrap();
    for call in in_flight {
        let response = call.await.unwrap().expect("in-flight call answered");
        assert_eq!(code(&response.into_inner()), VerifyCode::Valid);
    }
    stopping.await.expect("server stopped cleanly");
}

#[tokio::test]
async fn reflection_lists_both_services() {
    use tonic_reflection::pb::{v1, v1alpha};
    let server = TestServer::start(Backend::Sqlite).await;

    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("v1 reflection")
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        stream.next().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "keyward.v1.VerifyService",
        "keyward.v1.ManageService",
        "grpc.health.v1.Health",
        "envoy.service.auth.v3.Authorization",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "v1 lists {service}: {names:?}"
        );
    }

    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "keyward.v1.ManageService".into(),
            ),
        ),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("v1alpha reflection")
        .into_inner();
    let response = stream.next().await.unwrap().unwrap().message_response;
    assert!(
        matches!(
            response,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref f))
                if !f.file_descriptor_proto.is_empty()
        ),
        "v1alpha describes ManageService: {response:?}"
    );
    server.stop().await;
}

/// With `manage_listen`, ManageService answers only on its own port and Verify only on the main
/// one; health answers on both, and one shutdown stops both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_service_on_its_own_listener() {
    use keyward::proto::manage_service_client::ManageServiceClient;
    use keyward::proto::verify_service_client::VerifyServiceClient;

    let (url, _dir) = crate::helpers::fresh_database(Backend::Sqlite).await;
    let app = keyward::server::App::open(&crate::helpers::test_config(&url))
        .await
        .unwrap();
    let (root, _) = app.service().mint_root_key("test").await.unwrap();
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (main_addr, internal_addr) = (main.local_addr().unwrap(), internal.local_addr().unwrap());
    let app = app.with_manage_listener(internal);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.serve(main, async {
        let _ = stopped.await;
    }));
    let channel = |addr: std::net::SocketAddr| async move {
        tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    };
    let (main_channel, internal_channel) = (channel(main_addr).await, channel(internal_addr).await);

    let mut manage = ManageServiceClient::new(internal_channel.clone());
    let created = manage
        .create_key(crate::helpers::as_key(
            root.expose(),
            key_request("acme", &["videos:read"]),
        ))
        .await
        .expect("ManageService on its own port")
        .into_inner();
    let status = ManageServiceClient::new(main_channel.clone())
        .create_key(crate::helpers::as_key(
            root.expose(),
            key_request("acme", &["videos:read"]),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::Unimplemented,
        "not on the main port"
    );

    let mut verifier = VerifyServiceClient::new(main_channel.clone());
    let answer = verifier
        .verify(crate::helpers::verify_request(
            &created.key,
            &["videos:read"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&answer), VerifyCode::Valid);
    let status = VerifyServiceClient::new(internal_channel.clone())
        .verify(crate::helpers::verify_request(&created.key, &[]))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::Unimplemented,
        "not on the internal port"
    );

    for channel in [main_channel, internal_channel] {
        let health = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(health.status, ServingStatus::Serving as i32);
    }
    let _ = stop.send(());
    task.await.unwrap().expect("both listeners stop cleanly");
}

/// The exposition parses line by line, and carries what operators expect: per-RPC counters by
/// method and gRPC code and latency histograms under the common middleware names, process
/// metrics and the build info. A made-up method is counted as `other`, so clients cannot grow
/// the label set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_per_rpc_process_and_build_series() {
    use crate::helpers::{key_request, verify_request};
    let server = TestServer::start(Backend::Sqlite).await;
    let (secret, _) = server.create(key_request("acme", &["videos:read"])).await;
    server
        .verifier()
        .await
        .verify(verify_request(&secret, &[]))
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    let made_up = grpc
        .unary::<(), (), _>(
            tonic::Request::new(()),
            tonic::codegen::http::uri::PathAndQuery::from_static("/keyward.v1.VerifyService/Nope"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect_err("no such method");
    assert_eq!(made_up.code(), tonic::Code::Unimplemented);

    let text = eventually(
        Duration::from_secs(5),
        "the calls to be counted",
        || async {
            let text = crate::helpers::http(server.http_addr, "GET", "/metrics", &[])
                .await
                .body;
            text.contains("grpc_service=\"other\"").then_some(text)
        },
    )
    .await;
    let mut samples = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
        samples.insert(series.to_owned(), value);
    }
    let find = |prefix: &str, parts: &[&str]| {
        samples
            .iter()
            .find(|(s, _)| s.starts_with(prefix) && parts.iter().all(|p| s.contains(p)))
            .map(|(_, v)| *v)
    };
    assert!(
        find(
            "grpc_server_handled_total{",
            &[
                "grpc_service=\"keyward.v1.VerifyService\"",
                "grpc_method=\"Verify\"",
                "grpc_code=\"OK\""
            ]
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(
        find(
            "grpc_server_handled_total{",
            &["grpc_method=\"CreateKey\"", "grpc_code=\"OK\""]
        )
        .is_some()
    );
    assert!(
        find(
            "grpc_server_handled_total{",
            &["grpc_service=\"other\"", "grpc_code=\"Unimplemented\""]
        )
        .is_some(),
        "a made-up method counts as other"
    );
    assert!(
        !text.contains("Nope"),
        "no label from a client's made-up path"
    );
    assert!(
        find(
            "grpc_server_handling_seconds_count{",
            &["grpc_method=\"Verify\""]
        )
        .is_some_and(|v| v >= 1.0)
    );
    assert!(
        find(
            "grpc_server_handling_seconds_bucket{",
            &["grpc_method=\"Verify\"", "le=\"+Inf\""]
        )
        .is_some()
    );
    assert!(find("process_resident_memory_bytes", &[]).is_some_and(|v| v > 1e6));
    assert!(find("process_cpu_seconds_total", &[]).is_some_and(|v| v > 0.0));
    assert!(find("process_open_fds", &[]).is_some_and(|v| v >= 3.0));
    assert!(find("process_max_fds", &[]).is_some());
    assert_eq!(
        samples.get(&format!(
            "keyward_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        Some(&1.0)
    );
    server.stop().await;
}
