//! Why an endpoint could not be reached, and what to do about it: when a command fails to
//! talk to its endpoint, etcdctl 3.5 says only `Error: context deadline exceeded`; oxetcdctl
//! prints the same line and exit code, and before it one diagnostic line in the shape of
//! etcdctl's own client log lines (`{"level":"warn","ts":...,"caller":"oxetcdctl","msg":...,
//! "endpoint":...}`) naming the endpoint, what failed and the fix.
//!
//! The diagnosis is a fresh look at the endpoint, made only after a failure: resolve its host,
//! connect over TCP, then a TLS handshake with the command's own TLS settings (for `https://`)
//! or with any certificate accepted (for `http://`, to tell a TLS port), followed by one read
//! of the server's first HTTP/2 bytes (with TLS 1.3 the server judges the client certificate
//! after the client's side of the handshake is done, so its refusal arrives as an alert on
//! that read). The kinds of failure are a closed enum, [`Failure`]; the texts live in
//! [`Failure::message`] alone.
//!
//! Invariant: a diagnosis never writes anything but the HTTP/2 client preface and an empty
//! SETTINGS frame to the server, and ends within twice the dial timeout.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::print::Obj;

/// What went wrong on the way to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The host name does not resolve.
    Unresolved { host: String },
    /// Nothing listens on the port.
    Refused,
    /// No answer to the TCP connect within the dial timeout.
    TimedOut,
    /// The TCP connect failed otherwise (network unreachable...), in Go's words.
    Unreachable { reason: String },
    /// The server's certificate does not chain to the CA bundle (`None`: no `--cacert`).
    UnknownIssuer { cacert: Option<PathBuf> },
    /// The server's certificate does not name the host dialed; `presented` are its SANs.
    NameMismatch {
        host: String,
        presented: Vec<String>,
    },
    /// The server's certificate has expired or is not valid yet.
    ServerCertificateExpired,
    /// The server wants a client certificate and none was given.
    ClientCertificateRequired,
    /// The server refused the client certificate given (its alert, as rustls names it).
    ClientCertificateRefused { cert: PathBuf, alert: String },
    /// An `http://` endpoint whose server speaks TLS.
    PlaintextToTls { address: String },
    /// An `https://` endpoint whose server does not speak TLS.
    TlsToPlaintext { address: String },
    /// The server took the TCP connection but did not answer the handshake in time.
    NoAnswer,
    /// A TLS handshake failure of another kind (rustls's text).
    Handshake { reason: String },
}

impl Failure {
    /// What failed, then the fix.
    pub fn message(&self) -> String {
        match self {
            Failure::Unresolved { host } => format!(
                "cannot resolve host {host:?}: check the host name in --endpoints (or use \
                 the member's IP address)"
            ),
            Failure::Refused => "connection refused: nothing is listening there; is the \
                                 server running? check --endpoints (host and client port)"
                .to_string(),
            Failure::TimedOut => "no answer to the TCP connect within --dial-timeout: check \
                                  --endpoints and any firewall between here and the server"
                .to_string(),
            Failure::Unreachable { reason } => {
                format!("cannot connect: {reason}: check --endpoints and the network")
            }
            Failure::UnknownIssuer { cacert: Some(path) } => format!(
                "TLS handshake failed: server certificate not signed by --cacert {}: pass \
                 the CA bundle that signed the server's certificate",
                path.display()
            ),
            Failure::UnknownIssuer { cacert: None } => "TLS handshake failed: server \
                certificate not signed by a trusted CA: pass its CA bundle with --cacert"
                .to_string(),
            Failure::NameMismatch { host, presented } if presented.is_empty() => format!(
                "TLS handshake failed: server certificate is not valid for {host:?} and \
                 names no host: reissue it with the host or IP in its subject alternative names"
            ),
            Failure::NameMismatch { host, presented } => format!(
                "TLS handshake failed: server certificate is not valid for {host:?}, only \
                 for {}: dial one of those names in --endpoints, or reissue the certificate \
                 with {host:?} among its subject alternative names",
                presented.join(", ")
            ),
            Failure::ServerCertificateExpired => "TLS handshake failed: server certificate \
                has expired or is not valid yet: renew it (or check this machine's clock)"
                .to_string(),
            Failure::ClientCertificateRequired => "TLS handshake failed: the server requires \
                a client certificate: pass --cert and --key"
                .to_string(),
            Failure::ClientCertificateRefused { cert, alert } => format!(
                "TLS handshake failed: the server refused client certificate --cert {} \
                 ({alert}): pass a certificate signed by the CA in the server's \
                 --trusted-ca-file",
                cert.display()
            ),
            Failure::PlaintextToTls { address } => format!(
                "the server speaks TLS but the endpoint was dialed in plaintext: use \
                 https://{address} in --endpoints and pass --cacert (and --cert, --key if it \
                 asks for a client certificate)"
            ),
            Failure::TlsToPlaintext { address } => format!(
                "TLS handshake failed: the server does not speak TLS: use http://{address} \
                 in --endpoints and drop --cacert, --cert and --key"
            ),
            Failure::NoAnswer => "the server took the connection but did not answer within \
                --dial-timeout: is it overloaded or stopped? check its log"
                .to_string(),
            Failure::Handshake { reason } => {
                format!("TLS handshake failed: {reason}: check --cacert, --cert and --key")
            }
        }
    }
}

/// What the diagnosis needs to know about one endpoint and the command's TLS settings.
pub struct Target {
    /// `host:port`.
    pub address: String,
    /// The endpoint dialed over TLS.
    pub https: bool,
    /// The command's TLS settings (for `https://`); `None` for plaintext endpoints.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// A config accepting any server certificate (to tell a TLS port from a plaintext one).
    pub any_server: Option<Arc<rustls::ClientConfig>>,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub dial_timeout: Duration,
}

impl Target {
    /// The host part of `address` (brackets of an IPv6 literal removed).
    fn host(&self) -> &str {
        let host = match self.address.rsplit_once(':') {
            Some((host, _)) => host,
            None => self.address.as_str(),
        };
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// Why `target` cannot be reached, or `None` when it can (the failure was elsewhere).
pub async fn diagnose(target: &Target) -> Option<Failure> {
    let stream = match connect(target).await {
        Ok(stream) => stream,
        Err(failure) => return Some(failure),
    };
    if target.https {
        let config = target.tls.clone()?;
        return tls_failure(target, stream, config).await;
    }
    let any_server = target.any_server.clone()?;
    speaks_tls(target, stream, any_server)
        .await
        .then(|| Failure::PlaintextToTls {
            address: target.address.clone(),
        })
}

/// Resolves the host and opens a TCP connection, each within the dial timeout.
pub async fn connect(target: &Target) -> Result<tokio::net::TcpStream, Failure> {
    let resolved = tokio::time::timeout(
        target.dial_timeout,
        tokio::net::lookup_host(target.address.as_str()),
    )
    .await;
    let addresses: Vec<std::net::SocketAddr> = match resolved {
        Ok(Ok(addresses)) => addresses.collect(),
        Ok(Err(_)) => {
            return Err(Failure::Unresolved {
                host: target.host().to_string(),
            })
        }
        Err(_) => return Err(Failure::TimedOut),
    };
    if addresses.is_empty() {
        return Err(Failure::Unresolved {
            host: target.host().to_string(),
        });
    }
    let connected = tokio::time::timeout(
        target.dial_timeout,
        tokio::net::TcpStream::connect(addresses.as_slice()),
    )
    .await;
    match connected {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(Failure::Refused),
        Ok(Err(e)) => Err(Failure::Unreachable {
            reason: super::client::go_io(&e),
        }),
        Err(_) => Err(Failure::TimedOut),
    }
}

/// The HTTP/2 client preface and an empty SETTINGS frame: what a gRPC client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// A TLS handshake with the command's settings, then one exchange of HTTP/2 bytes.
async fn tls_failure(
    target: &Target,
    stream: tokio::net::TcpStream,
    config: Arc<rustls::ClientConfig>,
) -> Option<Failure> {
    let name = match rustls_pki_types::ServerName::try_from(target.host().to_string()) {
        Ok(name) => name,
        Err(e) => {
            return Some(Failure::Handshake {
                reason: format!("{:?} is not a valid server name: {e}", target.host()),
            })
        }
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    let exchange = async {
        let mut tls = connector.connect(name, stream).await?;
        tls.write_all(H2_PREFACE).await?;
        tls.flush().await?;
        let mut first = [0u8; 64];
        tls.read(&mut first).await
    };
    match tokio::time::timeout(target.dial_timeout, exchange).await {
        Ok(Ok(read)) if read > 0 => None,
        // Closed without a word after the handshake: the server dropped this client.
        Ok(Ok(_)) => Some(match &target.cert {
            None => Failure::ClientCertificateRequired,
            Some(cert) => Failure::ClientCertificateRefused {
                cert: cert.clone(),
                alert: "connection closed".to_string(),
            },
        }),
        Ok(Err(e)) => Some(classify(target, &e)),
        Err(_) => Some(Failure::NoAnswer),
    }
}

/// A failed handshake or read, from rustls's error.
fn classify(target: &Target, e: &std::io::Error) -> Failure {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error};
    let plaintext = || Failure::TlsToPlaintext {
        address: target.address.clone(),
    };
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) else {
        return match e.kind() {
            // The other side closed or reset the connection on seeing a ClientHello.
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => plaintext(),
            _ => Failure::Handshake {
                reason: super::client::go_io(e),
            },
        };
    };
    match tls {
        Error::InvalidCertificate(Cert::UnknownIssuer) => Failure::UnknownIssuer {
            cacert: target.cacert.clone(),
        },
        Error::InvalidCertificate(Cert::NotValidForNameContext { presented, .. }) => {
            Failure::NameMismatch {
                host: target.host().to_string(),
                presented: presented.iter().map(|name| plain_name(name)).collect(),
            }
        }
        Error::InvalidCertificate(Cert::NotValidForName) => Failure::NameMismatch {
            host: target.host().to_string(),
            presented: Vec::new(),
        },
        Error::InvalidCertificate(
            Cert::Expired
            | Cert::ExpiredContext { .. }
            | Cert::NotValidYet
            | Cert::NotValidYetContext { .. },
        ) => Failure::ServerCertificateExpired,
        Error::InvalidMessage(_) => plaintext(),
        Error::AlertReceived(Alert::CertificateRequired) => Failure::ClientCertificateRequired,
        Error::AlertReceived(
            alert @ (Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::UnsupportedCertificate
            | Alert::AccessDenied
            | Alert::HandshakeFailure),
        ) => match &target.cert {
            None => Failure::ClientCertificateRequired,
            Some(cert) => Failure::ClientCertificateRefused {
                cert: cert.clone(),
                alert: format!("{alert:?}"),
            },
        },
        other => Failure::Handshake {
            reason: other.to_string(),
        },
    }
}

/// A subject name as rustls presents it (`DnsName("a.example")`, `IpAddress(10.0.0.1)`),
/// without the wrapper.
fn plain_name(presented: &str) -> String {
    let inner = presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(presented);
    inner.trim_matches('"').to_string()
}

/// Whether the server at the other end of `stream` answers a ClientHello as TLS does.
async fn speaks_tls(
    target: &Target,
    stream: tokio::net::TcpStream,
    any_server: Arc<rustls::ClientConfig>,
) -> bool {
    let Ok(name) = rustls_pki_types::ServerName::try_from(target.host().to_string()) else {
        return false;
    };
    let connector = tokio_rustls::TlsConnector::from(any_server);
    match tokio::time::timeout(target.dial_timeout, connector.connect(name, stream)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .is_some_and(|tls| matches!(tls, rustls::Error::AlertReceived(_))),
        Err(_) => false,
    }
}

/// The diagnostic line: etcdctl's client log line shape, `caller` oxetcdctl.
pub fn warn_line(endpoint: &str, message: &str) -> String {
    Obj::new()
        .str("level", "warn")
        .str("ts", &timestamp(std::time::SystemTime::now()))
        .str("caller", "oxetcdctl")
        .str("msg", message)
        .str("endpoint", endpoint)
        .finish()
}

/// Prints the diagnostic line on stderr.
pub fn warn(endpoint: &str, message: &str) {
    eprintln!("{}", warn_line(endpoint, message));
}

/// `2026-01-02T03:04:05.678Z`, as etcdctl's client logger writes times.
fn timestamp(now: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(now);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_has_etcdctls_log_shape_and_names_the_endpoint() {
        let line = warn_line("127.0.0.1:1", &Failure::Refused.message());
        assert!(line.starts_with("{\"level\":\"warn\",\"ts\":\""), "{line}");
        assert!(line.contains("\"caller\":\"oxetcdctl\""), "{line}");
        assert!(line.ends_with("\"endpoint\":\"127.0.0.1:1\"}"), "{line}");
        assert!(
            line.contains("is the server running? check --endpoints"),
            "{line}"
        );
        let parsed: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => panic!("not JSON: {e}: {line}"),
        };
        assert_eq!(parsed["endpoint"], "127.0.0.1:1");
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(1_767_323_045_678);
        assert_eq!(timestamp(t), "2026-01-02T03:04:05.678Z");
    }

    #[test]
    fn a_name_mismatch_suggests_the_names_the_certificate_has() {
        let failure = Failure::NameMismatch {
            host: "10.0.0.9".to_string(),
            presented: vec!["127.0.0.1".to_string(), "localhost".to_string()],
        };
        let text = failure.message();
        assert!(text.contains("only for 127.0.0.1, localhost"), "{text}");
        assert!(text.contains("\"10.0.0.9\""), "{text}");
    }

    #[test]
    fn presented_names_lose_rustls_wrappers() {
        assert_eq!(plain_name("DnsName(\"elsewhere.test\")"), "elsewhere.test");
        assert_eq!(plain_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(plain_name("plain.example"), "plain.example");
    }

    fn any_server() -> Arc<rustls::ClientConfig> {
        let files = oxetcd::config::TlsFiles::default();
        match oxetcd::net::tls::ClientTls::load_unverified(&files) {
            Ok(tls) => tls.current(),
            Err(e) => panic!("a TLS client config: {e}"),
        }
    }

    fn target_at(address: String, https: bool) -> Target {
        Target {
            address,
            https,
            tls: https.then(any_server),
            any_server: (!https).then(any_server),
            cacert: None,
            cert: None,
            dial_timeout: Duration::from_millis(300),
        }
    }

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(future),
            Err(e) => panic!("a runtime: {e}"),
        }
    }

    /// A listener that never calls accept: the kernel completes the TCP handshake, nobody
    /// answers (a stopped or overloaded server).
    fn silent_listener() -> std::net::TcpListener {
        match std::net::TcpListener::bind("127.0.0.1:0") {
            Ok(listener) => listener,
            Err(e) => panic!("a loopback listener: {e}"),
        }
    }

    #[test]
    fn a_closed_port_is_refused() {
        let address = match silent_listener().local_addr() {
            Ok(address) => address.to_string(),
            Err(e) => panic!("{e}"),
        };
        // The listener is gone: nothing listens on the port any more.
        assert_eq!(
            run(diagnose(&target_at(address, false))),
            Some(Failure::Refused)
        );
    }

    #[test]
    fn a_silent_tls_server_is_named_as_not_answering() {
        let listener = silent_listener();
        let address = match listener.local_addr() {
            Ok(address) => address.to_string(),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            run(diagnose(&target_at(address, true))),
            Some(Failure::NoAnswer)
        );
    }

    #[test]
    fn a_silent_plaintext_server_is_not_taken_for_tls() {
        let listener = silent_listener();
        let address = match listener.local_addr() {
            Ok(address) => address.to_string(),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(run(diagnose(&target_at(address, false))), None);
    }

    #[test]
    fn the_host_of_an_ipv6_address_loses_its_brackets() {
        let target = Target {
            address: "[::1]:2379".to_string(),
            https: false,
            tls: None,
            any_server: None,
            cacert: None,
            cert: None,
            dial_timeout: Duration::from_secs(1),
        };
        assert_eq!(target.host(), "::1");
    }
}
