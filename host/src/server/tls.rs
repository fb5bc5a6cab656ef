//! `wasmtx serve` over TLS: a listener that completes handshakes off the accept path (a
//! slow or silent client holds up nobody) and hands axum finished connections, and the
//! reloading of the certificate, key and client CA without a restart — when a file's size
//! or modification time changes (looked at every two seconds) or on SIGHUP. A reload that
//! fails keeps the configuration in use and says why in the log; connections already open
//! keep the certificate they were made with. Each connection's client certificate, if it
//! presented one, reaches the requests on it (`PeerCertificate`) as a way to authenticate.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::auth::PeerCertificate;
use crate::tls::TlsFiles;

/// How long a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the files are looked at.
const RELOAD_POLL: Duration = Duration::from_secs(2);

/// A bound TLS listener; its accept and reload tasks stop when it is dropped.
pub struct TlsListener {
    addr: SocketAddr,
    connections: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    tasks: Vec<JoinHandle<()>>,
}

impl TlsListener {
    /// Serves TLS on `tcp` with `config`, loaded from `files`, which are watched for changes.
    pub fn new(tcp: TcpListener, files: TlsFiles, config: ServerConfig) -> io::Result<TlsListener> {
        let addr = tcp.local_addr()?;
        let current = Arc::new(RwLock::new(Arc::new(config)));
        let (sender, connections) = mpsc::channel(64);
        let accepting = tokio::spawn(accept_loop(tcp, current.clone(), sender));
        let reloading = tokio::spawn(reload_loop(files, current));
        Ok(TlsListener {
            addr,
            connections,
            tasks: vec![accepting, reloading],
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accept loop never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// Each connection's client certificate, for [`super::auth::require`].
impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for PeerCertificate
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        let (_, session) = stream.io().get_ref();
        PeerCertificate(
            session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| Sha256::digest(leaf.as_ref()).into()),
        )
    }
}

/// Accepts TCP connections and completes each one's handshake on a task of its own.
async fn accept_loop(
    tcp: TcpListener,
    current: Arc<RwLock<Arc<ServerConfig>>>,
    connections: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors and the like: wait instead of spinning.
                tracing::warn!("cannot accept a connection: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = TlsAcceptor::from(current.read().expect("TLS config lock").clone());
        let connections = connections.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = connections.send((tls, peer)).await;
                }
                Ok(Err(err)) => tracing::debug!(%peer, "TLS handshake failed: {err}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Loads the files again when they change or on SIGHUP.
async fn reload_loop(files: TlsFiles, current: Arc<RwLock<Arc<ServerConfig>>>) {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = files.stamp();
    let mut poll = tokio::time::interval(RELOAD_POLL);
    loop {
        let signalled = tokio::select! {
            _ = poll.tick() => false,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        let stamp = files.stamp();
        if !signalled && stamp == seen {
            continue;
        }
        seen = stamp;
        match files.load() {
            Ok(config) => {
                *current.write().expect("TLS config lock") = Arc::new(config);
                tracing::info!(
                    cert = %files.cert.display(),
                    "TLS certificate reloaded{}",
                    if signalled { " (SIGHUP)" } else { "" }
                );
            }
            Err(err) => {
                tracing::warn!("TLS files not reloaded, the ones in use stay: {err}");
            }
        }
    }
}
