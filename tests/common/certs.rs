//! Test certificates written as PEM files: a CA, a server/peer certificate for 127.0.0.1 (IP
//! SAN, usable as server and as client certificate, as etcd's peer certificates are), a client
//! certificate, an expired client certificate, a client certificate from another CA, and a
//! revoked client certificate with the CA's CRL listing it.
//!
//! Invariant: every certificate here except `expired` is valid now and for days to come; only
//! `other` chains to `other_ca`, every other leaf to `ca`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// Serial number of the revoked client certificate.
const REVOKED_SERIAL: u64 = 0x0123_4567;

/// A certificate and its key on disk.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The files of one test PKI.
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server: Pair,
    pub client: Pair,
    pub expired: Pair,
    pub other: Pair,
    /// A client certificate of `ca` listed in `crl`.
    pub revoked: Pair,
    /// A CRL signed by `ca` revoking `revoked`.
    pub crl: PathBuf,
}

struct Issuer {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn named(common_name: &str, sans: &[&str]) -> CertificateParams {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = match CertificateParams::new(sans) {
        Ok(params) => params,
        Err(e) => panic!("certificate parameters for {common_name}: {e}"),
    };
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params
}

fn key_pair() -> KeyPair {
    match KeyPair::generate() {
        Ok(key) => key,
        Err(e) => panic!("cannot generate a key: {e}"),
    }
}

fn ca(common_name: &str) -> Issuer {
    let mut params = named(common_name, &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = key_pair();
    match params.self_signed(&key) {
        Ok(cert) => Issuer { cert, key },
        Err(e) => panic!("cannot sign CA {common_name}: {e}"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Err(e) = std::fs::write(&path, text) {
        panic!("cannot write {}: {e}", path.display());
    }
    path
}

fn leaf(dir: &Path, name: &str, params: CertificateParams, issuer: &Issuer) -> Pair {
    let key = key_pair();
    let cert = match params.signed_by(&key, &issuer.cert, &issuer.key) {
        Ok(cert) => cert,
        Err(e) => panic!("cannot sign {name}: {e}"),
    };
    Pair {
        cert: write(dir, &format!("{name}.pem"), &cert.pem()),
        key: write(dir, &format!("{name}-key.pem"), &key.serialize_pem()),
    }
}

impl Certs {
    pub fn generate() -> Certs {
        let dir = match tempfile::Builder::new().prefix("oxetcd-certs-").tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("cannot create a temp dir: {e}"),
        };
        let root = ca("oxetcd test CA");
        let other_root = ca("another CA");
        let d = dir.path().to_path_buf();

        let mut server = named("127.0.0.1", &["127.0.0.1", "localhost"]);
        server.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let mut client = named("root", &[]);
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let mut expired = named("root", &[]);
        expired.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        expired.not_before = rcgen::date_time_ymd(2000, 1, 1);
        expired.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let mut other = named("root", &[]);
        other.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let mut revoked = named("root", &[]);
        revoked.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        revoked.serial_number = Some(rcgen::SerialNumber::from(REVOKED_SERIAL));
        let crl = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2090, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(REVOKED_SERIAL),
                revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = match crl.signed_by(&root.cert, &root.key) {
            Ok(crl) => crl,
            Err(e) => panic!("cannot sign the CRL: {e}"),
        };
        let crl_pem = match crl.pem() {
            Ok(pem) => pem,
            Err(e) => panic!("cannot encode the CRL: {e}"),
        };

        Certs {
            ca: write(&d, "ca.pem", &root.cert.pem()),
            other_ca: write(&d, "other-ca.pem", &other_root.cert.pem()),
            server: leaf(&d, "server", server, &root),
            client: leaf(&d, "client", client, &root),
            expired: leaf(&d, "expired", expired, &root),
            other: leaf(&d, "other", other, &other_root),
            revoked: leaf(&d, "revoked", revoked, &root),
            crl: write(&d, "crl.pem", &crl_pem),
            dir,
        }
    }
}
