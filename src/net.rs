//! Accepting connections without letting them exhaust the server: at most `max_connections`
//! open at once (past that, accepting waits for one to close), a connection that has sent
//! nothing within `handshake_timeout` or that has been silent for `idle_timeout` is closed,
//! and accept errors (out of file descriptors) back off instead of spinning.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

/// Bounds on the connections one listener keeps.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long a new connection may take to send its first byte.
    pub handshake_timeout: Duration,
    /// How long an established connection may send nothing (HTTP/2 keepalive pings, which the
    /// server sends every `idle_timeout / 3`, count: a live client answers them).
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Most listeners one server binds (gRPC, gRPC management, HTTP, HTTP management, metrics,
/// with room for one more): each gets an equal share of the descriptors.
const MAX_LISTENERS: u64 = 6;

impl ConnectionLimits {
    /// These limits within the process's descriptor limit: the soft `RLIMIT_NOFILE` is raised
    /// to the hard one, a quarter of it (at least 32) is kept for the database pool, files and
    /// the runtime, and each listener may hold at most an equal share of the rest, so idle
    /// connections to one listener can never starve the others, the pool or the files of
    /// descriptors.
    pub fn within_descriptors(self) -> Self {
        let limit = match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => limit,
            Err(error) => {
                tracing::warn!(%error, "the descriptor limit could not be read; connections are not capped by it");
                return self;
            }
        };
        let share = usize::try_from(descriptor_share(limit)).unwrap_or(usize::MAX);
        if share < self.max_connections {
            tracing::info!(
                descriptors = limit,
                per_listener = share,
                "max_connections lowered to fit the descriptor limit (RLIMIT_NOFILE)"
            );
        }
        ConnectionLimits {
            max_connections: self.max_connections.min(share).max(1),
            ..self
        }
    }
}

/// Connections one listener may hold out of `limit` descriptors.
fn descriptor_share(limit: u64) -> u64 {
    let reserve = (limit / 4).max(32);
    limit.saturating_sub(reserve) / MAX_LISTENERS
}

/// Connections open right now, per listener, for metrics and tests.
#[derive(Debug, Default)]
pub struct ConnectionGauge(AtomicU64);

impl ConnectionGauge {
    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Accepts connections from `listener` within `limits`, completing a TLS handshake first when
/// given an acceptor (within the handshake timeout, off the accept loop); the stream ends when
/// it is dropped.
pub fn incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
    gauge: Arc<ConnectionGauge>,
    tls: Option<TlsAcceptor>,
) -> ReceiverStream<io::Result<Stream>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(accept_loop(listener, limits, gauge, tls, tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    limits: ConnectionLimits,
    gauge: Arc<ConnectionGauge>,
    tls: Option<TlsAcceptor>,
    tx: mpsc::Sender<io::Result<Stream>>,
) {
    const MIN_BACKOFF: Duration = Duration::from_millis(10);
    const MAX_BACKOFF: Duration = Duration::from_secs(1);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = MIN_BACKOFF;
    loop {
        let permit = tokio::select! {
            () = tx.closed() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return, // the semaphore is never closed
            },
        };
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                backoff = MIN_BACKOFF;
                let _ = stream.set_nodelay(true);
                let conn = Conn::new(stream, remote, limits, permit, gauge.clone());
                match &tls {
                    None => {
                        if tx.send(Ok(Stream::Plain(conn))).await.is_err() {
                            return;
                        }
                    }
                    Some(acceptor) => {
                        let (acceptor, tx) = (acceptor.clone(), tx.clone());
                        tokio::spawn(async move {
                            let handshake = tokio::time::timeout(
                                limits.handshake_timeout,
                                acceptor.accept(conn),
                            );
                            match handshake.await {
                                Ok(Ok(tls)) => {
                                    let _ = tx.send(Ok(Stream::Tls(Box::new(tls)))).await;
                                }
                                // A plaintext client, a certificate the client CA did not
                                // sign, none when one is required, or too slow: closed.
                                Ok(Err(e)) => {
                                    tracing::debug!(peer = %remote, error = %e, "TLS handshake refused");
                                }
                                Err(_) => {
                                    tracing::debug!(peer = %remote, "TLS handshake timed out");
                                }
                            }
                        });
                    }
                }
            }
            Err(e) => {
                // Out of descriptors (or a transient error): wait instead of spinning.
                tracing::warn!(error = %e, retry_in = ?backoff, "accept failed");
                tokio::select! {
                    () = tx.closed() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// An accepted connection: closed when it stays silent too long; holds its slot until dropped.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    remote: SocketAddr,
    idle_timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
    gauge: Arc<ConnectionGauge>,
}

impl Conn {
    fn new(
        stream: TcpStream,
        remote: SocketAddr,
        limits: ConnectionLimits,
        slot: OwnedSemaphorePermit,
        gauge: Arc<ConnectionGauge>,
    ) -> Self {
        gauge.0.fetch_add(1, Ordering::Relaxed);
        Conn {
            stream,
            remote,
            idle_timeout: limits.idle_timeout,
            deadline: Box::pin(tokio::time::sleep(limits.handshake_timeout)),
            _slot: slot,
            gauge,
        }
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.gauge.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + self.idle_timeout;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                ready!(self.deadline.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection sent nothing for too long",
                )))
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    /// Reported as not vectored, on purpose: h2 then copies DATA frames of up to 1 KiB into its
    /// write buffer instead of chaining those of 256 bytes or more, and a chained frame ends
    /// the batch. keyward's answers are a few hundred bytes (an ext_authz `CheckResponse` with
    /// its headers is ~270), so copying lets the answers to many streams leave in one write
    /// instead of one write each (measured: half the `writev` calls for `Check` under load).
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// An accepted connection, in the clear or over TLS.
#[derive(Debug)]
pub enum Stream {
    /// Plaintext.
    Plain(Conn),
    /// TLS, the handshake done.
    Tls(Box<TlsStream<Conn>>),
}

/// Who is at the other end of a connection: on every request it carries (gRPC request
/// extensions; the HTTP listener's requests too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// The TCP peer.
    pub remote_addr: SocketAddr,
    /// Whether the peer presented a client certificate the configured client CA signed
    /// (mutual TLS); always false without TLS.
    pub verified_client_certificate: bool,
}

impl Stream {
    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.conn().remote
    }

    fn conn(&self) -> &Conn {
        match self {
            Stream::Plain(conn) => conn,
            Stream::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Who the peer is.
    pub fn peer_info(&self) -> PeerInfo {
        PeerInfo {
            remote_addr: self.remote_addr(),
            verified_client_certificate: match self {
                Stream::Plain(_) => false,
                // A client certificate reaches here only if the verifier accepted it.
                Stream::Tls(tls) => tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|certs| !certs.is_empty()),
            },
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(conn) => Pin::new(conn).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(conn) => Pin::new(conn).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(conn) => Pin::new(conn).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(conn) => Pin::new(conn).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }

    /// Not vectored, for the reason given on [`Conn`]'s implementation.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl Connected for Stream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_together_leave_a_reserve_of_descriptors() {
        for limit in [64, 256, 1024, 65_536, 1 << 20] {
            let share = descriptor_share(limit);
            let reserve = limit - share * MAX_LISTENERS;
            assert!(share >= 1, "{limit}");
            assert!(reserve >= (limit / 4).max(32), "{limit}: {reserve}");
        }
        assert_eq!(descriptor_share(1024), 128);
        assert_eq!(descriptor_share(16), 0);
    }
}
