//! MQTT over TLS: our own listener in front of rumqttd.
//!
//! rumqttd runs TLS handshakes inside its serial accept loop with no
//! timeout, so one idle TCP connection on its TLS port blocks every other
//! TLS client. Here each handshake runs in its own task under
//! `handshake_timeout`; a finished handshake is relayed, decrypted, to the
//! broker's plain listener on loopback, where the [`guard`](crate::guard)
//! authenticates and authorizes it like any other connection.
//!
//! The certificate and key are re-read by [`TlsFront::reload`] (the binary
//! calls it on SIGHUP) and when either file's modification time changes;
//! a broken new pair is reported and the old one kept.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util_free::CancelOnDrop;

use crate::config::TlsConfig;

/// Why the TLS listener could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate file {path} (key mqtt.tls.cert_file): {detail}")]
    Cert { path: PathBuf, detail: String },
    #[error("cannot read the TLS private key file {path} (key mqtt.tls.key_file): {detail}")]
    Key { path: PathBuf, detail: String },
    #[error("the TLS certificate and key do not make a usable server identity: {0}")]
    Config(String),
    #[error("cannot listen for TLS clients on {addr} (key mqtt.tls.listen): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The running TLS listener; its task stops when this is dropped.
pub struct TlsFront {
    pub addr: SocketAddr,
    acceptor: Arc<RwLock<TlsAcceptor>>,
    cert_file: PathBuf,
    key_file: PathBuf,
    _tasks: CancelOnDrop,
}

impl std::fmt::Debug for TlsFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFront")
            .field("addr", &self.addr)
            .field("cert_file", &self.cert_file)
            .finish_non_exhaustive()
    }
}

impl TlsFront {
    /// Loads the certificate, binds `config.listen` and starts relaying
    /// finished handshakes to `upstream` (the broker's plain listener).
    /// Must be called inside a tokio runtime.
    pub async fn start(config: &TlsConfig, upstream: SocketAddr) -> Result<TlsFront, TlsError> {
        let acceptor = Arc::new(RwLock::new(load_acceptor(
            &config.cert_file,
            &config.key_file,
        )?));
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| TlsError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| TlsError::Bind {
            addr: config.listen,
            source,
        })?;
        let accept = tokio::spawn(accept_loop(
            listener,
            acceptor.clone(),
            upstream,
            config.handshake_timeout,
        ));
        let watch = tokio::spawn(watch_files(
            acceptor.clone(),
            config.cert_file.clone(),
            config.key_file.clone(),
            config.reload_check_interval,
        ));
        tracing::info!(listen = %addr, "MQTT over TLS accepting devices");
        Ok(TlsFront {
            addr,
            acceptor,
            cert_file: config.cert_file.clone(),
            key_file: config.key_file.clone(),
            _tasks: CancelOnDrop(vec![accept, watch]),
        })
    }

    /// Re-reads the certificate and key; new handshakes use them. On error
    /// the previous pair stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_acceptor(&self.cert_file, &self.key_file)?;
        if let Ok(mut current) = self.acceptor.write() {
            *current = fresh;
        }
        tracing::info!("TLS certificate reloaded");
        Ok(())
    }
}

/// Aborts the listener's tasks when the front is dropped.
mod tokio_util_free {
    #[derive(Debug)]
    pub struct CancelOnDrop(pub Vec<tokio::task::JoinHandle<()>>);

    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            for task in &self.0 {
                task.abort();
            }
        }
    }
}

fn load_acceptor(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert_file.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert_file.to_path_buf(),
            detail: "no PEM certificate in it".into(),
        });
    }
    // The error names the file only: a key's bytes never reach a message.
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError::Key {
        path: key_file.to_path_buf(),
        detail: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Arc<RwLock<TlsAcceptor>>,
    upstream: SocketAddr,
    handshake_timeout: Duration,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off briefly
                // instead of spinning.
                tracing::warn!(error = %error, "TLS accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(acceptor) = acceptor.read().map(|a| a.clone()) else {
            continue;
        };
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let mut tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(peer = %peer, error = %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            };
            let mut broker = match TcpStream::connect(upstream).await {
                Ok(broker) => broker,
                Err(error) => {
                    tracing::error!(error = %error, "cannot reach the embedded broker from the TLS listener");
                    return;
                }
            };
            let _ = broker.set_nodelay(true);
            // Ends when either side closes (the broker closes refused clients).
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
        });
    }
}

/// What tells a file changed: its modification time, length and (on Unix)
/// inode, since certificate tools usually replace the file by a rename.
fn modified(path: &Path) -> Option<(SystemTime, u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok()?, meta.len(), inode))
}

async fn watch_files(
    acceptor: Arc<RwLock<TlsAcceptor>>,
    cert_file: PathBuf,
    key_file: PathBuf,
    every: Duration,
) {
    let mut seen = (modified(&cert_file), modified(&key_file));
    loop {
        tokio::time::sleep(every).await;
        let now = (modified(&cert_file), modified(&key_file));
        if now == seen {
            continue;
        }
        match load_acceptor(&cert_file, &key_file) {
            Ok(fresh) => {
                if let Ok(mut current) = acceptor.write() {
                    *current = fresh;
                }
                seen = now;
                tracing::info!("TLS certificate files changed; reloaded");
            }
            // Perhaps half-written: try again at the next check.
            Err(error) => {
                tracing::warn!(error = %error, "TLS certificate files changed but cannot be loaded; keeping the previous ones")
            }
        }
    }
}
