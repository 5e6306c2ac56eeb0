//! The dialing side: lazily connected gRPC channels to other members' peer URLs, in plaintext
//! (`http://`) or over TLS (`https://`, with the peer certificate presented as the client
//! certificate and the other member's certificate checked against the peer CA and the URL's
//! host, an IP SAN for IP URLs), or to a unix socket for `unix://host:port`/`unixs://` (the
//! socket file `host:port`, as etcd names it; TLS on it for `unixs://`). `raft::network` keeps
//! one channel per peer URL from here.
//!
//! Invariant: an `https://` or `unixs://` URL is never dialed in plaintext, and an `http://`
//! or `unix://` URL never with TLS (etcd's transport decides by the scheme the same way).
//! Invariant: every connect is bounded by the caller's timeout (TCP connect and TLS handshake
//! together).
//! Under `--cfg madsim` channels are madsim-tonic's simulated ones and TLS does not exist.

use std::fmt;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::tls::ClientTls;

/// Why a channel could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialError {
    /// Not a URL tonic can dial.
    BadUrl(String),
    /// An `https://` URL while this member has no peer TLS settings.
    TlsNotConfigured(String),
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::BadUrl(u) => write!(f, "bad peer URL {u:?}"),
            DialError::TlsNotConfigured(u) => write!(
                f,
                "cannot dial {u}: peer TLS is not configured (--peer-trusted-ca-file, \
                 --peer-cert-file, --peer-key-file)"
            ),
        }
    }
}

impl std::error::Error for DialError {}

/// Makes channels to peer URLs.
#[derive(Clone, Debug, Default)]
pub struct Dialer {
    // Under madsim there is no TLS dial, and a TLS setting cannot be built.
    #[cfg_attr(madsim, allow(dead_code))]
    tls: Option<ClientTls>,
    /// HTTP/2 keep-alive pings: (interval without traffic, answer deadline), sent only while a
    /// call is open (gRPC's keep-alive without `PermitWithoutStream`).
    #[cfg_attr(madsim, allow(dead_code))]
    keepalive: Option<(Duration, Duration)>,
}

impl Dialer {
    /// A dialer for `http://` URLs only.
    pub fn plaintext() -> Dialer {
        Dialer {
            tls: None,
            keepalive: None,
        }
    }

    /// A dialer that speaks TLS to `https://` URLs (and plaintext to `http://` ones).
    pub fn with_tls(tls: ClientTls) -> Dialer {
        Dialer {
            tls: Some(tls),
            keepalive: None,
        }
    }

    /// Pings the other side after `interval` without traffic on a connection with an open
    /// call, and drops the connection when the ping is not answered within `timeout`.
    pub fn with_keepalive(mut self, interval: Duration, timeout: Duration) -> Dialer {
        self.keepalive = Some((interval, timeout));
        self
    }

    /// A channel to `url` that connects on first use, each connect bounded by
    /// `connect_timeout`.
    pub fn lazy_channel(&self, url: &str, connect_timeout: Duration) -> Result<Channel, DialError> {
        #[cfg(not(madsim))]
        if let Some((secure, socket)) = unix_socket(url) {
            // The URI only names the HTTP/2 authority; the connector dials the socket file.
            let endpoint = Endpoint::from_shared(format!("http://{socket}"))
                .map_err(|_| DialError::BadUrl(url.to_string()))?
                .connect_timeout(connect_timeout);
            let tls = match (secure, &self.tls) {
                (false, _) => None,
                (true, Some(tls)) => Some(tls.clone()),
                (true, None) => return Err(DialError::TlsNotConfigured(url.to_string())),
            };
            let connector = real::UnixConnector::new(socket.into(), tls);
            return Ok(endpoint.connect_with_connector_lazy(connector));
        }
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|_| DialError::BadUrl(url.to_string()))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true);
        #[cfg(not(madsim))]
        let endpoint = match self.keepalive {
            Some((interval, timeout)) => endpoint
                .http2_keep_alive_interval(interval)
                .keep_alive_timeout(timeout)
                .keep_alive_while_idle(false),
            None => endpoint,
        };
        let https = url.starts_with("https://");
        if !https {
            return Ok(endpoint.connect_lazy());
        }
        #[cfg(not(madsim))]
        {
            let Some(tls) = &self.tls else {
                return Err(DialError::TlsNotConfigured(url.to_string()));
            };
            let connector = real::TlsConnector::new(tls);
            Ok(endpoint.connect_with_connector_lazy(connector))
        }
        #[cfg(madsim)]
        {
            Err(DialError::TlsNotConfigured(url.to_string()))
        }
    }
}

/// `unix://host:port` (or `unixs://`, the bool): the socket file `host:port`, as etcd names it.
#[cfg(not(madsim))]
fn unix_socket(url: &str) -> Option<(bool, &str)> {
    if let Some(socket) = url.strip_prefix("unixs://") {
        return Some((true, socket));
    }
    url.strip_prefix("unix://").map(|socket| (false, socket))
}

#[cfg(not(madsim))]
mod real {
    //! A tower connector: TCP connect, then the client side of a TLS handshake.

    use std::future::Future;
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use std::path::PathBuf;

    use hyper_util::rt::TokioIo;
    use rustls_pki_types::ServerName;
    use tokio::net::{TcpStream, UnixStream};
    use tokio_rustls::client::TlsStream;

    use crate::net::tls::ClientTls;

    /// A tower connector to a unix socket file, with TLS for a `unixs://` URL (the server name
    /// checked is the URL's host, as etcd's transport does).
    #[derive(Clone)]
    pub struct UnixConnector {
        path: PathBuf,
        tls: Option<ClientTls>,
    }

    impl UnixConnector {
        pub fn new(path: PathBuf, tls: Option<ClientTls>) -> Self {
            UnixConnector { path, tls }
        }
    }

    /// A unix socket, plain or under TLS.
    pub enum UnixIo {
        Plain(UnixStream),
        Tls(Box<TlsStream<UnixStream>>),
    }

    impl tokio::io::AsyncRead for UnixIo {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.get_mut() {
                UnixIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
                UnixIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            }
        }
    }

    impl tokio::io::AsyncWrite for UnixIo {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            match self.get_mut() {
                UnixIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
                UnixIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            }
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            match self.get_mut() {
                UnixIo::Plain(s) => Pin::new(s).poll_flush(cx),
                UnixIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            }
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            match self.get_mut() {
                UnixIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
                UnixIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            }
        }
    }

    type UnixConnecting = Pin<Box<dyn Future<Output = io::Result<TokioIo<UnixIo>>> + Send>>;

    impl tower_service::Service<http::Uri> for UnixConnector {
        type Response = TokioIo<UnixIo>;
        type Error = io::Error;
        type Future = UnixConnecting;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, uri: http::Uri) -> Self::Future {
            let path = self.path.clone();
            let tls = self.tls.as_ref().map(|t| t.current());
            Box::pin(async move {
                let socket = UnixStream::connect(&path).await?;
                let Some(tls) = tls else {
                    return Ok(TokioIo::new(UnixIo::Plain(socket)));
                };
                let host = uri.host().unwrap_or("localhost").to_string();
                let name = ServerName::try_from(host).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "host is not a DNS name or IP")
                })?;
                let session = tokio_rustls::TlsConnector::from(tls)
                    .connect(name, socket)
                    .await?;
                Ok(TokioIo::new(UnixIo::Tls(Box::new(session))))
            })
        }
    }

    #[derive(Clone)]
    pub struct TlsConnector {
        tls: ClientTls,
    }

    impl TlsConnector {
        pub fn new(tls: &ClientTls) -> Self {
            TlsConnector { tls: tls.clone() }
        }
    }

    type Connecting =
        Pin<Box<dyn Future<Output = io::Result<TokioIo<TlsStream<TcpStream>>>> + Send>>;

    impl tower_service::Service<http::Uri> for TlsConnector {
        type Response = TokioIo<TlsStream<TcpStream>>;
        type Error = io::Error;
        type Future = Connecting;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, uri: http::Uri) -> Self::Future {
            // The files are looked at for every connect: a rotated certificate is used at once.
            let tls = tokio_rustls::TlsConnector::from(self.tls.current());
            Box::pin(async move {
                let invalid =
                    |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
                let host = uri.host().ok_or_else(|| invalid("URL without a host"))?;
                // `[::1]` in a URI is `::1` to the resolver and to the certificate check.
                let host = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let port = uri.port_u16().unwrap_or(443);
                let name = ServerName::try_from(host.clone())
                    .map_err(|_| invalid("host is neither an IP address nor a DNS name"))?;
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                let session = tls.connect(name, tcp).await?;
                Ok(TokioIo::new(session))
            })
        }
    }
}
