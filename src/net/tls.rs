//! TLS settings of the member's sockets, built once at startup from etcd's certificate flags:
//! [`ServerTls`] for a listener (`--cert-file`/`--key-file`/`--trusted-ca-file`/
//! `--client-cert-auth`, or their `--peer-` twins), [`ClientTls`] for the peer dialer (the peer
//! certificate presented as a client certificate, the peer CA to check the other member).
//!
//! The TLS versions and cipher suites are rustls's safe defaults (TLS 1.2 and 1.3, AEAD suites
//! only), which are etcd 3.5's defaults minus the CBC suites Go still enables for TLS 1.2.
//! Listeners offer ALPN `h2` and `http/1.1`: Go gRPC clients refuse a TLS server without `h2`,
//! and HTTP/1.1 clients (curl, the JSON gateway's users) need the other.
//!
//! Errors carry etcd's texts where a client or operator sees them ("open PATH: no such file or
//! directory", "tls: failed to find any PEM data in certificate input").
//!
//! Invariant: a configuration exists only when every file it names was read and parsed, so a
//! member never starts with a listener that would fail every handshake.
//! Invariant: a listener with a CA file requires a client certificate that chains to it (etcd
//! does so even without `--client-cert-auth`); `--client-cert-auth` without a CA file is
//! refused, so client certificates are never accepted unverified.
//! Under `--cfg madsim` there is no TLS: the simulator serves plaintext, and asking for TLS
//! there is an error.

use std::fmt;
use std::path::{Path, PathBuf};
#[cfg(not(madsim))]
use std::sync::Arc;

#[cfg(not(madsim))]
use super::reload::Reloading;
use crate::config::TlsFiles;

/// ALPN protocol ids offered by the listeners, in preference order.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Which side of the member a TLS setting belongs to; it decides the flag names in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Peer,
}

impl Side {
    /// Flag-name prefix: `""` or `"peer-"`.
    pub fn prefix(self) -> &'static str {
        match self {
            Side::Client => "",
            Side::Peer => "peer-",
        }
    }
}

/// Why a TLS configuration could not be built.
#[derive(Debug)]
pub enum TlsError {
    /// `--cert-file`/`--key-file` (or the peer pair) are not both set.
    NoKeyPair,
    /// A file could not be read.
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file holds no PEM block of the kind wanted (`"certificate"` or `"key"`).
    NoPem { what: &'static str, path: PathBuf },
    /// A PEM block that is not valid base64 or not well formed.
    BadPem { path: PathBuf, reason: String },
    /// Client certificates are required but no CA file says which ones to trust.
    CaRequired { side: Side },
    /// A CRL file without client certificates to check.
    CrlWithoutCa { side: Side },
    /// rustls refused the material (a key that does not match its certificate, a CA that is not
    /// a valid trust anchor, ...).
    Rejected { what: String, reason: String },
    /// The simulator has no TLS.
    Unavailable,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::NoKeyPair => f.write_str("KeyFile and CertFile are not presented"),
            TlsError::Read { path, error } => {
                write!(f, "open {}: {}", path.display(), go_io_reason(error))
            }
            TlsError::NoPem { what, .. } => {
                write!(f, "tls: failed to find any PEM data in {what} input")
            }
            TlsError::BadPem { path, reason } => {
                write!(f, "{}: malformed PEM data: {reason}", path.display())
            }
            TlsError::CaRequired { side } => {
                let p = side.prefix();
                write!(
                    f,
                    "--{p}client-cert-auth needs --{p}trusted-ca-file: client certificates are \
                     verified against that CA bundle"
                )
            }
            TlsError::CrlWithoutCa { side } => {
                let p = side.prefix();
                let crl = if p.is_empty() { "client-" } else { p };
                write!(
                    f,
                    "--{crl}crl-file needs --{p}trusted-ca-file: only verified client \
                     certificates are checked against it"
                )
            }
            TlsError::Rejected { what, reason } => write!(f, "{what}: {reason}"),
            TlsError::Unavailable => f.write_str("TLS is not available in the simulator"),
        }
    }
}

impl std::error::Error for TlsError {}

/// An I/O error as Go prints it: the lower-case OS reason without Rust's " (os error N)".
fn go_io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(not(madsim))]
fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// The TLS side of one listener, following its files (see `net::reload`).
#[derive(Clone)]
pub struct ServerTls {
    #[cfg(not(madsim))]
    reloading: Arc<Reloading<rustls::ServerConfig>>,
    /// `--peer-cert-allowed-cn` and `--{client,peer}-cert-allowed-hostname`: when either is set,
    /// a client certificate must match one of them (see [`ServerTls::admits`]).
    #[cfg(not(madsim))]
    allowed: Arc<Allowed>,
}

/// The names a client certificate may carry; both `None` admits every certificate.
#[cfg(not(madsim))]
#[derive(Debug, Default)]
struct Allowed {
    common_name: Option<String>,
    hostname: Option<String>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerTls")
    }
}

/// Two settings are the same when they are the same loaded configuration.
impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        #[cfg(not(madsim))]
        {
            Arc::ptr_eq(&self.reloading, &other.reloading)
        }
        #[cfg(madsim)]
        {
            let _ = other;
            true
        }
    }
}

impl Eq for ServerTls {}

/// The TLS side of the peer dialer, following its files (see `net::reload`).
#[derive(Clone)]
pub struct ClientTls {
    #[cfg(not(madsim))]
    reloading: Arc<Reloading<rustls::ClientConfig>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ServerTls {
    /// Loads a listener's certificate, key and (with client certificate auth) CA bundle.
    pub fn load(files: &TlsFiles, side: Side) -> Result<ServerTls, TlsError> {
        #[cfg(not(madsim))]
        {
            Reloading::load(files, side, real::server_config).map(|r| ServerTls {
                reloading: Arc::new(r),
                allowed: Arc::new(Allowed {
                    common_name: files.allowed_cn.clone(),
                    hostname: files.allowed_hostname.clone(),
                }),
            })
        }
        #[cfg(madsim)]
        {
            let _ = (files, side);
            Err(TlsError::Unavailable)
        }
    }
}

impl ClientTls {
    /// A client that accepts any server certificate (etcdctl's `--insecure-skip-tls-verify`);
    /// the handshake's signatures are still checked, and the client certificate is presented
    /// when both files are given. Testing only, as etcdctl warns.
    #[cfg(not(madsim))]
    pub fn load_unverified(files: &TlsFiles) -> Result<ClientTls, TlsError> {
        Reloading::load(files, Side::Client, real::unverified_client_config).map(|r| ClientTls {
            reloading: Arc::new(r),
        })
    }

    /// Loads the dialer's CA bundle and, when both files are given, its client certificate.
    pub fn load(files: &TlsFiles, side: Side) -> Result<ClientTls, TlsError> {
        #[cfg(not(madsim))]
        {
            Reloading::load(files, side, real::client_config).map(|r| ClientTls {
                reloading: Arc::new(r),
            })
        }
        #[cfg(madsim)]
        {
            let _ = (files, side);
            Err(TlsError::Unavailable)
        }
    }
}

#[cfg(not(madsim))]
impl ServerTls {
    /// The configuration for the next handshake (re-read if a file changed).
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.reloading.current()
    }

    /// Whether a connection with this verified client certificate (DER) is admitted: always
    /// when no name is required; otherwise its subject CN must be the allowed CN or its SANs
    /// must match the allowed host name (etcd's rule: either suffices).
    pub fn admits(&self, client_certificate: Option<&[u8]>) -> bool {
        let Allowed {
            common_name,
            hostname,
        } = self.allowed.as_ref();
        if common_name.is_none() && hostname.is_none() {
            return true;
        }
        let Some(der) = client_certificate else {
            return false;
        };
        let cn_ok = common_name
            .as_deref()
            .is_some_and(|cn| super::x509::common_name(der).as_deref() == Some(cn));
        let host_ok = hostname
            .as_deref()
            .is_some_and(|host| super::x509::matches_host(der, host));
        cn_ok || host_ok
    }
}

#[cfg(not(madsim))]
impl ClientTls {
    /// The configuration for the next connection (re-read if a file changed).
    pub fn current(&self) -> Arc<rustls::ClientConfig> {
        self.reloading.current()
    }
}

/// etcd's `--auto-tls` key pair in `dir` (`cert.pem`, `key.pem`): the files already there, or a
/// new self-signed ECDSA P-256 certificate for `hosts` (IP addresses as IP SANs, names as DNS
/// SANs; organization "etcd"), valid for `validity_years` years, usable as server and client
/// certificate. The key file is written readable by the owner only.
pub fn self_signed(
    dir: &Path,
    hosts: &[String],
    validity_years: u64,
) -> Result<(PathBuf, PathBuf), TlsError> {
    #[cfg(not(madsim))]
    {
        real::self_signed(dir, hosts, validity_years)
    }
    #[cfg(madsim)]
    {
        let _ = (dir, hosts, validity_years);
        Err(TlsError::Unavailable)
    }
}

/// Whether `files` name a certificate and a key (etcd's `TLSInfo.Empty` negated).
pub fn has_key_pair(files: &TlsFiles) -> bool {
    files.cert_file.is_some() && files.key_file.is_some()
}

#[cfg(not(madsim))]
mod real {
    //! The rustls side: PEM files to rustls configurations.

    use std::path::Path;
    use std::sync::Arc;

    use rustls::crypto::CryptoProvider;
    use rustls::server::WebPkiClientVerifier;
    use rustls::RootCertStore;
    use rustls_pki_types::pem::{self, PemObject};
    use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

    use super::{read_file, Side, TlsError, TlsFiles, ALPN_H2, ALPN_HTTP1};

    /// ring's suites; with `--cipher-suites`, TLS 1.2 keeps only the named ones (TLS 1.3's are
    /// not configurable, as in Go).
    fn provider(files: &TlsFiles) -> Result<Arc<CryptoProvider>, TlsError> {
        let mut provider = rustls::crypto::ring::default_provider();
        if !files.cipher_suites.is_empty() {
            let wanted = super::suites::tls12_suites(&files.cipher_suites)?;
            provider.cipher_suites.retain(|s| match s {
                rustls::SupportedCipherSuite::Tls13(_) => true,
                rustls::SupportedCipherSuite::Tls12(_) => wanted.contains(&s.suite()),
            });
        }
        Ok(Arc::new(provider))
    }

    fn rejected(what: impl Into<String>, e: impl std::fmt::Display) -> TlsError {
        TlsError::Rejected {
            what: what.into(),
            reason: e.to_string(),
        }
    }

    fn bad_pem(path: &Path, e: pem::Error) -> TlsError {
        TlsError::BadPem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }

    /// Every certificate in a PEM file; at least one.
    fn certificates(
        path: &Path,
        what: &'static str,
    ) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let bytes = read_file(path)?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_pem(path, e))?;
        if certs.is_empty() {
            return Err(TlsError::NoPem {
                what,
                path: path.to_path_buf(),
            });
        }
        Ok(certs)
    }

    /// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
    fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
        let bytes = read_file(path)?;
        match PrivateKeyDer::from_pem_slice(&bytes) {
            Ok(key) => Ok(key),
            Err(pem::Error::NoItemsFound) => Err(TlsError::NoPem {
                what: "key",
                path: path.to_path_buf(),
            }),
            Err(e) => Err(bad_pem(path, e)),
        }
    }

    /// The certificate chain and key named by `files` (both must be set).
    fn key_pair(
        files: &TlsFiles,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let (Some(cert), Some(key)) = (&files.cert_file, &files.key_file) else {
            return Err(TlsError::NoKeyPair);
        };
        Ok((certificates(cert, "certificate")?, private_key(key)?))
    }

    /// Every CRL in a PEM file; at least one.
    fn revocation_lists(
        path: &Path,
    ) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
        let bytes = read_file(path)?;
        let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_pem(path, e))?;
        if crls.is_empty() {
            return Err(TlsError::NoPem {
                what: "CRL",
                path: path.to_path_buf(),
            });
        }
        Ok(crls)
    }

    fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
        let mut store = RootCertStore::empty();
        for cert in certificates(path, "certificate")? {
            store
                .add(cert)
                .map_err(|e| rejected(format!("{}", path.display()), e))?;
        }
        Ok(Arc::new(store))
    }

    pub fn server_config(files: &TlsFiles, side: Side) -> Result<rustls::ServerConfig, TlsError> {
        let (certs, key) = key_pair(files)?;
        let provider = provider(files)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| rejected("TLS versions", e))?;
        // etcd requires a verified client certificate as soon as a CA bundle is given, with or
        // without `--client-cert-auth`.
        let builder = if files.client_cert_auth || files.trusted_ca_file.is_some() {
            let Some(ca) = &files.trusted_ca_file else {
                return Err(TlsError::CaRequired { side });
            };
            let mut verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider);
            if let Some(crl) = &files.crl_file {
                verifier = verifier.with_crls(revocation_lists(crl)?);
            }
            let verifier = verifier
                .build()
                .map_err(|e| rejected(format!("{}", ca.display()), e))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            if files.crl_file.is_some() {
                return Err(TlsError::CrlWithoutCa { side });
            }
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| rejected("tls: certificate and key", e))?;
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        Ok(config)
    }

    pub fn client_config(files: &TlsFiles, side: Side) -> Result<rustls::ClientConfig, TlsError> {
        if files.auto_tls {
            return auto_client_config(files);
        }
        let Some(ca) = &files.trusted_ca_file else {
            return Err(TlsError::Rejected {
                what: format!("--{}trusted-ca-file", side.prefix()),
                reason: "needed to verify the other members' certificates (system CAs are \
                         not consulted)"
                    .into(),
            });
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider(files)?)
            .with_safe_default_protocol_versions()
            .map_err(|e| rejected("TLS versions", e))?
            .with_root_certificates(roots(ca)?);
        let mut config = if files.cert_file.is_some() || files.key_file.is_some() {
            let (certs, key) = key_pair(files)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| rejected("tls: certificate and key", e))?
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(config)
    }

    /// A dialer that does not verify the server's certificate (`--insecure-skip-tls-verify`).
    pub fn unverified_client_config(
        files: &TlsFiles,
        _side: Side,
    ) -> Result<rustls::ClientConfig, TlsError> {
        let provider = provider(files)?;
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| rejected("TLS versions", e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(super::auto::AcceptAnyServer(provider)));
        let mut config = if files.cert_file.is_some() || files.key_file.is_some() {
            let (certs, key) = key_pair(files)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| rejected("tls: certificate and key", e))?
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(config)
    }

    /// The dialer of an auto-TLS member: its own key pair as client certificate, the other
    /// side's certificate not verified.
    fn auto_client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, TlsError> {
        let provider = provider(files)?;
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| rejected("TLS versions", e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(super::auto::AcceptAnyServer(provider)));
        let (certs, key) = key_pair(files)?;
        let mut config = builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| rejected("tls: certificate and key", e))?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(config)
    }

    pub use super::auto::self_signed;
}

/// Why a server-side handshake failed, in the words Go's TLS stack (and so etcd's log) uses for
/// the common cases; rustls's own text otherwise.
#[cfg(not(madsim))]
pub fn handshake_failure(e: &std::io::Error) -> String {
    use rustls::{CertificateError, Error, InvalidMessage};
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) else {
        return e.to_string();
    };
    let verify = |why: &str| format!("tls: failed to verify client certificate: x509: {why}");
    match tls {
        Error::NoCertificatesPresented => "tls: client didn't provide a certificate".into(),
        Error::InvalidMessage(InvalidMessage::InvalidContentType) => {
            "tls: first record does not look like a TLS handshake".into()
        }
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            verify("certificate signed by unknown authority")
        }
        Error::InvalidCertificate(CertificateError::Revoked) => verify("certificate is revoked"),
        Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => verify("certificate has expired or is not yet valid"),
        other => format!("tls: {other}"),
    }
}

#[cfg(not(madsim))]
mod suites {
    //! `--cipher-suites`: Go's suite names (as etcd takes them) to rustls's TLS 1.2 suites.

    use rustls::CipherSuite;

    use super::TlsError;

    /// Go names of the AEAD suites rustls has, with the alias Go also accepts.
    const SUPPORTED: &[(&str, CipherSuite)] = &[
        (
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ];

    /// Suites etcd (Go) knows that rustls does not implement: CBC, RC4, 3DES, RSA key exchange.
    const GO_ONLY: &[&str] = &[
        "TLS_RSA_WITH_RC4_128_SHA",
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA256",
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    ];

    /// The rustls suites for Go names; an unknown name is etcd's error, a Go-only one says so.
    pub fn tls12_suites(names: &[String]) -> Result<Vec<CipherSuite>, TlsError> {
        names
            .iter()
            .map(|name| {
                if let Some((_, suite)) = SUPPORTED.iter().find(|(n, _)| n == name) {
                    return Ok(*suite);
                }
                let reason = if GO_ONLY.contains(&name.as_str()) {
                    "not supported here: only ECDHE suites with AES-GCM or ChaCha20-Poly1305 are"
                        .to_string()
                } else {
                    format!("unexpected TLS cipher suite {name:?}")
                };
                Err(TlsError::Rejected {
                    what: format!("--cipher-suites {name}"),
                    reason,
                })
            })
            .collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn go_names_map_to_rustls_suites_or_are_refused_clearly() {
            let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let ok = tls12_suites(&names(&[
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            ]));
            assert_eq!(
                ok.ok(),
                Some(vec![
                    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                ])
            );
            let cbc = tls12_suites(&names(&["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"]));
            assert!(cbc
                .err()
                .is_some_and(|e| e.to_string().contains("not supported here")));
            let junk = tls12_suites(&names(&["NOPE"]));
            assert!(junk.err().is_some_and(|e| e
                .to_string()
                .contains("unexpected TLS cipher suite \"NOPE\"")));
        }
    }
}

#[cfg(not(madsim))]
mod auto {
    //! `--auto-tls`: self-signed key pairs, and a dialer that does not verify the other side's
    //! certificate (etcd's `InsecureSkipVerify` for auto-TLS peers; every member has its own
    //! self-signed certificate, so there is nothing to verify against).

    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Duration;

    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
        KeyUsagePurpose,
    };
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    use super::TlsError;

    fn rejected(what: &str, e: impl std::fmt::Display) -> TlsError {
        TlsError::Rejected {
            what: what.into(),
            reason: e.to_string(),
        }
    }

    fn write(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .map_err(|error| TlsError::Read {
                path: path.to_path_buf(),
                error,
            })?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|error| TlsError::Read {
                path: path.to_path_buf(),
                error,
            })
    }

    pub fn self_signed(
        dir: &Path,
        hosts: &[String],
        validity_years: u64,
    ) -> Result<(PathBuf, PathBuf), TlsError> {
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        if cert_path.exists() && key_path.exists() {
            return Ok((cert_path, key_path));
        }
        std::fs::create_dir_all(dir).map_err(|error| TlsError::Read {
            path: dir.to_path_buf(),
            error,
        })?;
        let names: Vec<String> = hosts
            .iter()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
            .collect();
        let mut params =
            CertificateParams::new(names).map_err(|e| rejected("self-signed certificate", e))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "etcd");
        params.distinguished_name = dn;
        let now = time::OffsetDateTime::now_utc();
        let days = validity_years.max(1).saturating_mul(365);
        params.not_before = now;
        params.not_after = now + Duration::from_secs(days.saturating_mul(24 * 3600));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(|e| rejected("self-signed key", e))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| rejected("self-signed certificate", e))?;
        write(&key_path, &key.serialize_pem(), 0o600)?;
        write(&cert_path, &cert.pem(), 0o644)?;
        tracing::info!(dir = %dir.display(), "generated a self-signed TLS certificate");
        Ok((cert_path, key_path))
    }

    /// Accepts any server certificate; handshake signatures are still checked.
    #[derive(Debug)]
    pub struct AcceptAnyServer(pub Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAnyServer {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algorithms = &self.0.signature_verification_algorithms;
            rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algorithms = &self.0.signature_verification_algorithms;
            rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_as_go_prints_them() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(go_io_reason(&e), "no such file or directory");
        let e = std::io::Error::from_raw_os_error(13);
        assert_eq!(go_io_reason(&e), "permission denied");
    }

    #[test]
    fn a_missing_certificate_file_is_reported_with_etcds_text() {
        let files = TlsFiles {
            cert_file: Some("/nonexistent/server.pem".into()),
            key_file: Some("/nonexistent/server-key.pem".into()),
            ..TlsFiles::default()
        };
        let err = ServerTls::load(&files, Side::Client)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("open /nonexistent/server.pem: no such file or directory")
        );
    }

    #[test]
    fn a_file_without_pem_data_is_reported_with_gos_text() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bad.pem");
        std::fs::write(&path, b"not a certificate\n").expect("write");
        let files = TlsFiles {
            cert_file: Some(path.clone()),
            key_file: Some(path),
            ..TlsFiles::default()
        };
        let err = ServerTls::load(&files, Side::Client)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("tls: failed to find any PEM data in certificate input")
        );
    }

    #[test]
    fn client_cert_auth_without_a_ca_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cert =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("certificate");
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&c, cert.cert.pem()).expect("write");
        std::fs::write(&k, cert.key_pair.serialize_pem()).expect("write");
        let mut files = TlsFiles {
            cert_file: Some(c),
            key_file: Some(k),
            trusted_ca_file: None,
            client_cert_auth: true,
            auto_tls: false,
            allowed_cn: None,
            allowed_hostname: None,
            crl_file: None,
            cipher_suites: Vec::new(),
        };
        let err = ServerTls::load(&files, Side::Peer)
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("--peer-client-cert-auth needs")),
            "{err:?}"
        );
        files.client_cert_auth = false;
        let loaded = ServerTls::load(&files, Side::Client);
        assert!(loaded.is_ok(), "{:?}", loaded.err().map(|e| e.to_string()));
        files.cipher_suites = vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()];
        let restricted = ServerTls::load(&files, Side::Client).map(|t| {
            let config = t.current();
            let suites = &config.crypto_provider().cipher_suites;
            suites.iter().map(|s| s.suite()).collect::<Vec<_>>()
        });
        let tls12: Vec<_> = restricted
            .unwrap_or_default()
            .into_iter()
            .filter(|s| !format!("{s:?}").starts_with("TLS13"))
            .collect();
        assert_eq!(
            tls12,
            vec![rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256],
            "--cipher-suites keeps only the named TLS 1.2 suites"
        );
        files.cipher_suites.clear();
        let alpn = loaded
            .map(|t| t.current().alpn_protocols.clone())
            .unwrap_or_default();
        assert_eq!(alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }
}
