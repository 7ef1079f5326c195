//! TLS on keyward's listeners, with rustls (ring provider): the certificate and key are PEM
//! files re-read when they change (cert-manager rotates them in place), and an optional client
//! CA turns on mutual TLS: a client without a certificate that CA signed cannot connect.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// ALPN for the gRPC listeners.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN for the HTTP listener.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// How often the certificate files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// The TLS files of the listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) client certificates must chain to; `None`: no client certificates.
    pub client_ca: Option<PathBuf>,
}

/// Server-side TLS: one certificate source for every listener, reloaded when its files change.
pub struct Tls {
    files: TlsFiles,
    certificate: Arc<Reloading>,
    client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .field("mutual", &self.client_verifier.is_some())
            .finish()
    }
}

impl Tls {
    /// Loads the files; the error names the file and what is wrong with it.
    pub fn load(files: &TlsFiles) -> Result<Arc<Tls>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = load_certified_key(&files.cert, &files.key, &provider)?;
        let client_verifier = match &files.client_ca {
            None => None,
            Some(path) => {
                let roots = load_roots(path)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| format!("tls_client_ca {}: {e}", path.display()))?;
                Some(verifier)
            }
        };
        Ok(Arc::new(Tls {
            certificate: Arc::new(Reloading {
                current: RwLock::new(Arc::new(key)),
                stamp: Mutex::new(stamps(&files.cert, &files.key)),
            }),
            files: files.clone(),
            client_verifier,
            provider,
        }))
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.client_verifier.is_some()
    }

    /// An acceptor offering `alpn`, with the current (and every reloaded) certificate.
    pub fn acceptor(&self, alpn: &[&[u8]]) -> Result<TlsAcceptor, String> {
        let builder = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match &self.client_verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.certificate.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Re-reads the certificate and key if either file changed since they were last read.
    /// A pair that does not load is logged and the previous one kept. Returns whether a new
    /// certificate is in use.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamps(&self.files.cert, &self.files.key);
        {
            let mut stamp = self
                .certificate
                .stamp
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if *stamp == now {
                return false;
            }
            *stamp = now;
        }
        match load_certified_key(&self.files.cert, &self.files.key, &self.provider) {
            Ok(key) => {
                *self
                    .certificate
                    .current
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate changed but does not load; keeping the previous one");
                false
            }
        }
    }

    /// Checks the files every [`RELOAD_INTERVAL`] until the task is aborted.
    pub async fn watch(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(RELOAD_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let tls = self.clone();
            // File reads off the async workers.
            let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
        }
    }
}

/// The certificate in use, swapped on reload.
#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification times of the certificate and key files when last read.
    stamp: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn stamps(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (modified(cert), modified(key))
}

fn load_certs(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{setting} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{setting} {}: no certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

fn load_certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let certs = load_certs(cert, "tls_cert")?;
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls_key {}: {e}", key.display()))?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("tls_key {}: {e}", key.display()))?;
    let certified = CertifiedKey::new(certs, signing);
    certified
        .keys_match()
        .map_err(|e| format!("tls_key {} does not match tls_cert: {e}", key.display()))?;
    Ok(certified)
}

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, "tls_client_ca")? {
        roots
            .add(cert)
            .map_err(|e| format!("tls_client_ca {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// Client-side TLS for keyward's own clients (`keyward health`, the tests): trust `ca`, and
/// present `identity` (certificate, key) when the server asks for one.
pub fn connector(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    alpn: &[u8],
) -> Result<TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca, "CA")? {
        roots.add(cert).map_err(|e| format!("CA: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = load_certs(cert, "client certificate")?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("client key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The server name to check a server's certificate against, from a host name or IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
    .map_err(|e| format!("{host}: {e}"))
}

/// A gRPC channel to `server` (`https://host:port`) over TLS, trusting `ca` and presenting
/// `identity` when given: for `keyward health` and the tests.
pub async fn grpc_channel(
    server: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<tonic::transport::Channel, String> {
    let uri: hyper::Uri = server
        .parse()
        .map_err(|e| format!("bad server address {server}: {e}"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("{server}: no host"))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let authority = format!("{}:{port}", host);
    let name = server_name(&host)?;
    let connector = connector(ca, identity, ALPN_H2)?;
    let dial = authority.clone();
    tonic::transport::Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|e| format!("bad server address {server}: {e}"))?
        .connect_timeout(Duration::from_secs(3))
        .connect_with_connector(tower::service_fn(move |_: hyper::Uri| {
            let (connector, name, dial) = (connector.clone(), name.clone(), dial.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(dial).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| format!("cannot reach {server} over TLS: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        std::fs::write(&cert_path, cert.pem()).unwrap();
        (cert_path, key_path)
    }

    fn current_der(tls: &Tls) -> Vec<u8> {
        tls.certificate.current.read().unwrap().cert[0].to_vec()
    }

    #[test]
    fn a_changed_pair_is_taken_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = issue(dir.path(), "first.test");
        let tls = Tls::load(&TlsFiles {
            cert: cert.clone(),
            key,
            client_ca: None,
        })
        .unwrap();
        let first = current_der(&tls);
        assert!(!tls.reload_if_changed(), "unchanged files are not re-read");
        issue(dir.path(), "second.test");
        // Modification times can be coarse: make the change visible.
        let later = SystemTime::now() + Duration::from_secs(2);
        std::fs::File::options()
            .write(true)
            .open(&cert)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(tls.reload_if_changed());
        let second = current_der(&tls);
        assert_ne!(first, second);
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&cert)
            .unwrap()
            .set_modified(later + Duration::from_secs(2))
            .unwrap();
        assert!(!tls.reload_if_changed(), "a broken file is not taken");
        assert_eq!(current_der(&tls), second, "the working certificate stays");
    }
}
