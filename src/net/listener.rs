//! A bound listener serving one tonic router: bind a TCP address (reporting the real address,
//! so port 0 works) or a unix socket file (`unix://host:port` URLs; a stale file is replaced and
//! the socket removed when the listener goes), accept, wrap each connection in [`Conn`], serve
//! until shutdown. The client, peer and metrics listeners are each one of these.
//!
//! The accept loop is ours (`serve_with_incoming_shutdown` over [`Incoming`]) so that TLS and
//! the connection wrapper sit between the socket and the server. With
//! [`ListenerSettings::tls`] set, every accepted socket first completes a TLS handshake in a
//! task of its own (bounded by `TLS_HANDSHAKE_TIMEOUT`); a failed handshake (a plaintext
//! client, no or an untrusted client certificate, an expired one) is logged as etcd logs it,
//! "rejected connection" with the remote address and the reason, and the socket is closed.
//! Under `--cfg madsim` there are no sockets and no TLS: madsim-tonic binds the address itself
//! (`serve_with_shutdown`), and this is the one place that knows it.
//!
//! Invariant: at most `ListenerSettings::connections_max` accepted connections are open at once,
//! handshakes in progress included; further clients wait in the kernel's backlog.
//! Invariant: a failed accept (out of file descriptors, say) or handshake never ends the
//! listener, and a slow handshake never delays the others or the accept loop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::tls::ServerTls;

/// grpc-go's server keepalive defaults, which etcd keeps unless both of its flags are positive.
pub const GRPC_KEEPALIVE_INTERVAL_DEFAULT: Duration = Duration::from_secs(2 * 60 * 60);
pub const GRPC_KEEPALIVE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(20);
/// etcd's `--grpc-keepalive-min-time` default. h2 cannot enforce a minimum client ping
/// interval, so any other value is reported at startup.
pub const GRPC_KEEPALIVE_MIN_TIME_DEFAULT: Duration = Duration::from_secs(5);
/// TCP keepalive idle time and probe interval on accepted sockets (Go's listener default, which
/// etcd's listeners inherit).
pub const TCP_KEEPALIVE_DEFAULT: Duration = Duration::from_secs(15);
/// Open connections per listener. etcd has no limit of its own (only the open-file limit); this
/// one keeps a client that opens connections in a loop from exhausting descriptors that raft
/// and the WAL need.
pub const CONNECTIONS_MAX_DEFAULT: usize = 8192;
/// Pause after a failed accept, so that a persistent failure (EMFILE) does not spin.
#[cfg(not(madsim))]
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// A TLS client that has not finished its handshake by then is disconnected (Go's
/// `tls.Dialer` default on the other side is 10 s as well).
#[cfg(not(madsim))]
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 and TCP settings of one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// Server-to-client HTTP/2 PING period; `None` = never ping.
    pub http2_keepalive_interval: Option<Duration>,
    /// A connection whose PING is not answered within this is closed.
    pub http2_keepalive_timeout: Duration,
    /// SETTINGS_MAX_CONCURRENT_STREAMS; `None` = unlimited.
    pub streams_per_connection_max: Option<u32>,
    /// TCP keepalive idle time and probe interval; `None` = off.
    pub tcp_keepalive: Option<Duration>,
    pub connections_max: usize,
    /// TLS on every accepted connection (an `https://` listen URL); `None` = plaintext.
    pub tls: Option<ServerTls>,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        ListenerSettings {
            http2_keepalive_interval: None,
            http2_keepalive_timeout: GRPC_KEEPALIVE_TIMEOUT_DEFAULT,
            streams_per_connection_max: None,
            tcp_keepalive: Some(TCP_KEEPALIVE_DEFAULT),
            connections_max: CONNECTIONS_MAX_DEFAULT,
            tls: None,
        }
    }
}

impl ListenerSettings {
    /// etcd's client listener: `--grpc-keepalive-interval`/`--grpc-keepalive-timeout` apply
    /// when both are positive (otherwise grpc-go's 2h/20s), `--max-concurrent-streams` as
    /// given (u32::MAX, etcd's default, means unlimited).
    pub fn grpc_client(
        keepalive_interval: Duration,
        keepalive_timeout: Duration,
        max_concurrent_streams: u32,
    ) -> Self {
        let (interval, timeout) = if !keepalive_interval.is_zero() && !keepalive_timeout.is_zero() {
            (keepalive_interval, keepalive_timeout)
        } else {
            (
                GRPC_KEEPALIVE_INTERVAL_DEFAULT,
                GRPC_KEEPALIVE_TIMEOUT_DEFAULT,
            )
        };
        ListenerSettings {
            http2_keepalive_interval: Some(interval),
            http2_keepalive_timeout: timeout,
            streams_per_connection_max: (max_concurrent_streams != u32::MAX)
                .then_some(max_concurrent_streams),
            ..ListenerSettings::default()
        }
    }

    /// A tonic server builder with these settings, to add services to.
    pub fn server(&self) -> tonic::transport::Server {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(self.http2_keepalive_interval)
            .http2_keepalive_timeout(Some(self.http2_keepalive_timeout))
            .max_concurrent_streams(self.streams_per_connection_max)
    }
}

/// Where a listener listens: a TCP address, or a unix socket path (a `unix://host:port` or
/// `unixs://` URL: etcd names the socket file `host:port`, relative to the working directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for BindAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindAddr::Tcp(addr) => write!(f, "{addr}"),
            BindAddr::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The bound socket.
#[cfg(not(madsim))]
enum Bound {
    Tcp(tokio::net::TcpListener),
    /// The socket file is removed when the listener is dropped (as etcd removes it on close).
    Unix {
        socket: tokio::net::UnixListener,
        _file: UnixPath,
    },
}

/// A unix socket file, removed on drop.
#[cfg(not(madsim))]
struct UnixPath(PathBuf);

#[cfg(not(madsim))]
impl Drop for UnixPath {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            tracing::debug!(path = %self.0.display(), error = %e, "cannot remove the unix socket");
        }
    }
}

/// A bound listener, ready to serve.
pub struct Listener {
    addr: SocketAddr,
    settings: ListenerSettings,
    #[cfg(not(madsim))]
    socket: Bound,
}

impl Listener {
    /// Binds a TCP address or a unix socket (see [`Listener::bind`], [`Listener::bind_unix`]).
    pub fn bind_to(addr: &BindAddr, settings: ListenerSettings) -> std::io::Result<Self> {
        match addr {
            BindAddr::Tcp(addr) => Listener::bind(*addr, settings),
            BindAddr::Unix(path) => Listener::bind_unix(path.clone(), settings),
        }
    }

    /// Binds a unix socket at `path`, replacing a file left there (a stale socket of a process
    /// that did not close it), as etcd does. [`Listener::local_addr`] is `0.0.0.0:0` for it.
    pub fn bind_unix(path: PathBuf, settings: ListenerSettings) -> std::io::Result<Self> {
        #[cfg(not(madsim))]
        {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let socket = std::os::unix::net::UnixListener::bind(&path)?;
            let guard = UnixPath(path);
            socket.set_nonblocking(true)?;
            let socket = tokio::net::UnixListener::from_std(socket)?;
            Ok(Listener {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                settings,
                socket: Bound::Unix {
                    socket,
                    _file: guard,
                },
            })
        }
        #[cfg(madsim)]
        {
            let _ = (path, settings);
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "no unix sockets in the simulator",
            ))
        }
    }

    /// Binds `addr` now, so that a port conflict is reported at startup. Port 0 picks a free
    /// port; [`Listener::local_addr`] tells which. Must be called inside the runtime.
    pub fn bind(addr: SocketAddr, settings: ListenerSettings) -> std::io::Result<Self> {
        #[cfg(not(madsim))]
        {
            let socket = std::net::TcpListener::bind(addr)?;
            socket.set_nonblocking(true)?;
            let socket = tokio::net::TcpListener::from_std(socket)?;
            let addr = socket.local_addr()?;
            Ok(Listener {
                addr,
                settings,
                socket: Bound::Tcp(socket),
            })
        }
        #[cfg(madsim)]
        {
            Ok(Listener { addr, settings })
        }
    }

    /// The address actually bound (`0.0.0.0:0` for a unix socket).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn settings(&self) -> &ListenerSettings {
        &self.settings
    }

    /// Serves `router` (built from [`ListenerSettings::server`]) until `shutdown` resolves.
    pub async fn serve(
        self,
        router: tonic::transport::server::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        #[cfg(not(madsim))]
        {
            let incoming = accept::Incoming::new(self.socket, &self.settings);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        #[cfg(madsim)]
        {
            router.serve_with_shutdown(self.addr, shutdown).await
        }
    }
}

#[cfg(not(madsim))]
mod accept {
    //! The stream of accepted, configured, TLS-terminated and wrapped connections.

    use std::future::Future;
    use std::io;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use tokio::sync::{OwnedSemaphorePermit, Semaphore};
    use tokio::task::JoinSet;
    use tokio_rustls::TlsAcceptor;

    use super::{Bound, ListenerSettings, ACCEPT_ERROR_PAUSE, TLS_HANDSHAKE_TIMEOUT};
    use crate::net::conn::Conn;
    use crate::net::tls::ServerTls;
    use crate::net::transport::{Socket, Transport};

    struct Acceptor {
        socket: Bound,
        permits: Arc<Semaphore>,
        tcp_keepalive: Option<Duration>,
    }

    /// A socket accepted and configured, holding its permit.
    struct Accepted {
        stream: Socket,
        /// `None` for a unix socket.
        remote: Option<SocketAddr>,
        permit: OwnedSemaphorePermit,
    }

    type Next = Pin<Box<dyn Future<Output = (Acceptor, io::Result<Accepted>)> + Send>>;

    /// Accepted connections, one permit each.
    pub struct Incoming {
        next: Next,
        tls: Option<ServerTls>,
        /// Handshakes in progress; each yields its connection or `None` after logging why not.
        handshakes: JoinSet<Option<Conn<Transport>>>,
    }

    impl Incoming {
        pub(super) fn new(socket: Bound, settings: &ListenerSettings) -> Self {
            let acceptor = Acceptor {
                socket,
                permits: Arc::new(Semaphore::new(settings.connections_max)),
                tcp_keepalive: settings.tcp_keepalive,
            };
            Incoming {
                next: Box::pin(acceptor.accept()),
                tls: settings.tls.clone(),
                handshakes: JoinSet::new(),
            }
        }
    }

    impl futures_core::Stream for Incoming {
        type Item = io::Result<Conn<Transport>>;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            loop {
                while let Poll::Ready(Some(done)) = self.handshakes.poll_join_next(cx) {
                    // A panicked or aborted handshake task has nothing to hand out either.
                    if let Ok(Some(conn)) = done {
                        return Poll::Ready(Some(Ok(conn)));
                    }
                }
                let (acceptor, result) = match self.next.as_mut().poll(cx) {
                    Poll::Ready(done) => done,
                    Poll::Pending => return Poll::Pending,
                };
                self.next = Box::pin(acceptor.accept());
                let accepted = match result {
                    Ok(accepted) => accepted,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                };
                let Some(tls) = self.tls.clone() else {
                    let conn = Conn::new(Transport::Plain(accepted.stream), Some(accepted.permit));
                    return Poll::Ready(Some(Ok(conn)));
                };
                self.handshakes.spawn(handshake(tls, accepted));
            }
        }
    }

    /// Completes the server side of a TLS handshake; a failure is logged (etcd's "rejected
    /// connection" line) and the socket dropped.
    async fn handshake(tls: ServerTls, accepted: Accepted) -> Option<Conn<Transport>> {
        let Accepted {
            stream,
            remote,
            permit,
        } = accepted;
        // The files are looked at for every handshake: a rotated certificate is used at once.
        let acceptor = TlsAcceptor::from(tls.current());
        let handshake = acceptor.accept(stream);
        let error = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(session)) => {
                let transport = Transport::Tls(Box::new(session));
                if tls.admits(transport.client_certificate()) {
                    return Some(Conn::new(transport, Some(permit)));
                }
                "client certificate authentication failed".to_string()
            }
            Ok(Err(e)) => crate::net::tls::handshake_failure(&e),
            Err(_) => format!("TLS handshake not finished within {TLS_HANDSHAKE_TIMEOUT:?}"),
        };
        let remote = remote.map_or_else(|| "unix socket".to_string(), |a| a.to_string());
        tracing::warn!(remote_addr = %remote, error = %error, "rejected connection");
        None
    }

    impl Acceptor {
        async fn accept(self) -> (Self, io::Result<Accepted>) {
            let permit = match self.permits.clone().acquire_owned().await {
                Ok(permit) => permit,
                // The semaphore is never closed.
                Err(e) => return (self, Err(io::Error::other(e))),
            };
            let accepted = match &self.socket {
                Bound::Tcp(socket) => socket.accept().await.map(|(stream, remote)| {
                    configure(&stream, self.tcp_keepalive);
                    (Socket::Tcp(stream), Some(remote))
                }),
                Bound::Unix { socket, .. } => socket
                    .accept()
                    .await
                    .map(|(stream, _)| (Socket::Unix(stream), None)),
            };
            match accepted {
                Ok((stream, remote)) => {
                    let accepted = Accepted {
                        stream,
                        remote,
                        permit,
                    };
                    (self, Ok(accepted))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    (self, Err(e))
                }
            }
        }
    }

    /// Socket options of an accepted connection; a failure is logged, not fatal.
    fn configure(stream: &tokio::net::TcpStream, tcp_keepalive: Option<Duration>) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        if let Some(period) = tcp_keepalive {
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(period)
                .with_interval(period);
            if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
                tracing::debug!(error = %e, "cannot enable TCP keepalive");
            }
        }
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use std::pin::Pin;
    use std::time::Duration;

    use futures_core::Stream;
    use tokio::net::TcpStream;

    use super::accept::Incoming;
    use super::{Listener, ListenerSettings};
    use crate::net::conn::Conn;
    use crate::net::transport::Transport;

    async fn accept_one(incoming: &mut Incoming) -> Option<Conn<Transport>> {
        std::future::poll_fn(|cx| Pin::new(&mut *incoming).poll_next(cx))
            .await
            .and_then(Result::ok)
    }

    /// A client opening connections in a loop gets at most `connections_max` of them served;
    /// the next one is accepted as soon as one closes.
    #[test]
    fn connections_beyond_the_bound_wait_for_a_free_slot() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let Ok(rt) = rt else {
            panic!("cannot build a runtime");
        };
        rt.block_on(async {
            let settings = ListenerSettings {
                connections_max: 1,
                ..ListenerSettings::default()
            };
            let Ok(listener) = Listener::bind(([127, 0, 0, 1], 0).into(), settings) else {
                panic!("cannot bind");
            };
            let addr = listener.local_addr();
            assert_ne!(addr.port(), 0, "the real port is reported");
            let mut incoming = Incoming::new(listener.socket, &listener.settings);
            let _client1 = TcpStream::connect(addr).await;
            let first = accept_one(&mut incoming).await;
            assert!(first.is_some(), "first connection accepted");
            let _client2 = TcpStream::connect(addr).await;
            let early = tokio::time::timeout(Duration::from_millis(200), accept_one(&mut incoming));
            assert!(
                early.await.is_err(),
                "a second connection was served while the first held the only slot"
            );
            drop(first);
            let later = tokio::time::timeout(Duration::from_secs(10), accept_one(&mut incoming));
            assert!(matches!(later.await, Ok(Some(_))), "the freed slot is used");
        });
    }
}
