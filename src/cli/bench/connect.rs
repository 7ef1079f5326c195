//! Connections to the server under test: gRPC channels (one TCP write per frame) and HTTP/1.1 pools.

use super::*;

pub(super) fn authed<T>(root: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = format!("Bearer {root}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// A channel to `addr` over a transport h2 batches like the server's (see `net::Conn`): so
/// every phase's client spends as little as it can, and the figures are keyward's.
pub(super) async fn connect(addr: &str) -> Result<Channel, String> {
    let endpoint =
        Endpoint::from_shared(addr.to_owned()).map_err(|e| format!("bad address {addr}: {e}"))?;
    let connector = tower::service_fn(|uri: hyper::Uri| async move {
        let authority = uri
            .authority()
            .map(|a| a.to_string())
            .ok_or_else(|| std::io::Error::other("no host in the address"))?;
        let stream = tokio::net::TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(TokioIo::new(Unvectored(stream)))
    });
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))
}

/// A TCP stream that does not offer vectored writes, so h2 copies small frames into one buffer.
pub(super) struct Unvectored(tokio::net::TcpStream);

impl tokio::io::AsyncRead for Unvectored {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Unvectored {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// An HTTP URL to drive: where to connect and what to ask.
#[derive(Debug, Clone)]
pub(super) struct HttpTarget {
    pub(super) authority: String,
    pub(super) path: String,
}

impl HttpTarget {
    pub(super) fn parse(url: &str) -> Result<Self, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("{url}: only http:// URLs"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url}: no host"))?
            .to_string();
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.to_string());
        Ok(HttpTarget { authority, path })
    }
}

/// One HTTP/1.1 connection's sending half.
pub(super) type Sender = SendRequest<Empty<Bytes>>;

/// One HTTP/1.1 keep-alive connection per worker (worker `w` uses `i % workers == w`, so no
/// two workers share one); a broken connection is replaced on the next request.
#[derive(Clone)]
pub(super) struct HttpPool {
    pub(super) target: Arc<HttpTarget>,
    pub(super) connections: Arc<Vec<Mutex<Option<Sender>>>>,
}

impl HttpPool {
    pub(super) async fn connect(target: &HttpTarget, workers: usize) -> Result<Self, String> {
        let mut connections = Vec::with_capacity(workers);
        for _ in 0..workers {
            connections.push(Mutex::new(Some(http_connect(&target.authority).await?)));
        }
        Ok(HttpPool {
            target: Arc::new(target.clone()),
            connections: Arc::new(connections),
        })
    }

    /// Sends one GET with `key`; true on a 2xx answer.
    pub(super) async fn get(&self, i: u64, key: &str) -> bool {
        let slot = &self.connections[(i as usize) % self.connections.len()];
        let mut slot = slot.lock().await;
        let sender = match slot.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => match http_connect(&self.target.authority).await {
                Ok(sender) => sender,
                Err(_) => return false,
            },
        };
        let mut sender = sender;
        let request = hyper::Request::get(self.target.path.as_str())
            .header("host", self.target.authority.as_str())
            .header("x-api-key", key)
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-uri", "/v1/videos/42?page=2")
            .body(Empty::<Bytes>::new());
        let Ok(request) = request else { return false };
        let ok = match sender.send_request(request).await {
            Ok(response) => {
                let ok = response.status().is_success();
                // Read the body so the connection can carry the next request.
                ok && response.into_body().collect().await.is_ok()
            }
            Err(_) => false,
        };
        *slot = Some(sender);
        ok
    }
}

pub(super) async fn http_connect(authority: &str) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {authority}: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}
