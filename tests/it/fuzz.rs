//! Random and broken bytes as the body of every RPC: never a panic, never INTERNAL, and the
//! server keeps answering.

use keyward::proto::VerifyCode;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;

use crate::helpers::{Backend, RawCodec, TestServer, as_key, code, key_request};

/// Every RPC the server serves, from its protos (so a new one is fuzzed without a list to edit).
const RPCS: &[&str] = keyward::proto::SERVED_RPCS;

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn body(&mut self) -> Vec<u8> {
        let len = (self.next() % 96) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_never_crash_or_answer_internal() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (key, _) = server.create(key_request("acme", &["videos:read"])).await;
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    let mut bodies = Bytes(0x9e37_79b9_7f4a_7c15);
    // Known-bad shapes first: invalid UTF-8 in field 1, a truncated length, a bad wire type.
    let mut fixed: Vec<Vec<u8>> = vec![
        vec![0x0a, 0x02, 0xff, 0xfe],
        vec![0x0a, 0x10, b'k', b'w'],
        vec![0x0f, 0x01],
        vec![0xff; 12],
    ];
    for rpc in RPCS {
        let mut all = std::mem::take(&mut fixed);
        all.extend((0..150).map(|_| bodies.body()));
        for body in &all {
            grpc.ready().await.expect("server ready");
            let request = as_key(&server.root_key, body.clone());
            let result = grpc
                .unary(request, PathAndQuery::from_static(rpc), RawCodec)
                .await;
            if let Err(status) = result {
                assert!(
                    !matches!(status.code(), Code::Internal | Code::Unknown),
                    "{rpc} answered {status:?} to {body:02x?}"
                );
            }
        }
        fixed = all.drain(..4).collect();
    }
    // Undecodable bodies are the client's mistake.
    grpc.ready().await.unwrap();
    let status = grpc
        .unary(
            tonic::Request::new(vec![0x0a, 0x02, 0xff, 0xfe]),
            PathAndQuery::from_static("/keyward.v1.VerifyService/Verify"),
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    // Every RPC was counted under its own labels, none as `other`.
    let metrics = server.metrics().await;
    for rpc in RPCS {
        let (service, method) = rpc[1..].split_once('/').unwrap();
        let labels = format!("grpc_service=\"{service}\",grpc_method=\"{method}\"");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("grpc_server_handled_total") && l.contains(&labels)),
            "{rpc} has no metrics of its own"
        );
    }
    // And the server is alive.
    assert_eq!(
        code(&server.verify(&key, &["videos:read"]).await),
        VerifyCode::Valid
    );
    server.stop().await;
}
