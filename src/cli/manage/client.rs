//! The connection to a running server, the caller's key, and how a command fails.

use super::*;

/// The calling key, from the environment only.
pub(super) fn caller_key() -> Result<String, Failure> {
    std::env::var("KEYWARD_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| {
            Failure::Usage(
                "set KEYWARD_KEY to a key holding keys:read, keys:write or root (never on the \
                 command line: it would land in shell history)"
                    .into(),
            )
        })
}

/// How a command failed: the exit code tells scripts which.
#[derive(Debug)]
pub enum Failure {
    /// Refused by the server or unreachable (exit 1).
    Failed(String),
    /// The command was used wrongly (exit 2).
    Usage(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Failed(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::Failed(message.to_owned())
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Failure::Failed(format!("{:?}: {}", status.code(), status.message()))
    }
}

/// How long an ordinary call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a bulk call may take.
const LONG_CALL_TIMEOUT: Duration = Duration::from_secs(3600);

/// The largest answer the CLI reads (an offboarding of 1,000,000 keys is ≈ 150 MB).
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

pub(super) struct Client {
    pub(super) manage: ManageServiceClient<Channel>,
    pub(super) key: String,
    pub(super) output: Output,
}

impl Client {
    pub(super) async fn connect(args: &ClientArgs) -> Result<Client, Failure> {
        let key = caller_key()?;
        let channel = match &args.tls_ca {
            Some(ca) => {
                let identity = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
                keyward::tls::grpc_channel(&args.server, ca, identity)
                    .await
                    .map_err(Failure::Failed)?
            }
            None => tonic::transport::Endpoint::from_shared(args.server.clone())
                .map_err(|e| Failure::Usage(format!("bad server address {}: {e}", args.server)))?
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
                .map_err(|e| Failure::Failed(format!("cannot reach {}: {e}", args.server)))?,
        };
        Ok(Client {
            // An offboarding answers every key it revoked: 100,000 keys are ≈ 15 MB, past
            // tonic's default 4 MiB.
            manage: ManageServiceClient::new(channel).max_decoding_message_size(MAX_ANSWER_BYTES),
            key,
            output: args.output,
        })
    }

    /// A call that must be answered within 30 seconds (the server ends it then: gRPC's
    /// `grpc-timeout`).
    pub(super) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = self.long_request(message);
        request.set_timeout(CALL_TIMEOUT);
        request
    }

    /// A call that may take minutes (offboarding an account of 100,000 keys): an hour.
    pub(super) fn long_request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(LONG_CALL_TIMEOUT);
        if let Ok(value) = format!("Bearer {}", self.key).parse() {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
}

pub(super) fn duration(text: &str) -> Result<prost_types::Duration, Failure> {
    let d = keyward::duration::parse(text).map_err(Failure::Usage)?;
    Ok(prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    })
}
